"""Whose submission a file or folder of a learning-management system's zip is, and the student id
it is graded under.

The names the systems give when they export every submission of an assignment:

- Canvas, one flat folder: ``<name>_<user id>_<submission id>_<file>`` (``<name>_late_...`` when
  late), the name being the student's, lower case, without spaces;
- Moodle, in one folder per student ``<Full Name>_<participant id>_assignsubmission_file_/<file>``
  or flat ``<Full Name>_<participant id>_assignsubmission_file_<file>`` (``onlinetext`` folders
  hold online text, never a notebook);
- Blackboard, flat: ``<assignment>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file>``, beside an
  ``..._attempt_<time>.txt`` of the attempt's details;
- anything else: ``<student>_<anything>.ipynb`` files or ``<student>/`` folders.

The LMS id is what the system knows the student by (Canvas's user id, Moodle's participant id,
Blackboard's username, else the name as given). Without a roster, the student id is made from the
name and the LMS id, deterministically and safely: accents dropped (``José Müller`` ->
``jose-muller``), spaces and other characters as ``-``. A roster maps LMS ids to the ids of
nbgrader's gradebook: the CSV file of students given to ``nbgrader db student import`` (columns
``id`` and ``lms_user_id``, nbgrader's names), or one with the columns ``student_id`` and
``lms_id``.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
"""A student id names folders and spreadsheet rows: it starts with a letter or digit (never
``=``, ``+``, ``-`` or ``@``, which spreadsheets read as a formula). Always matched whole
(``fullmatch``): ``$`` would let a trailing newline through."""

_CANVAS = re.compile(r"^(?P<name>[^_]+)(?:_late)?_(?P<id>\d+)_\d+_(?P<file>.+)$", re.I)
_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?P<kind>[a-z]+)_(?P<file>.*)$")
_BLACKBOARD = re.compile(
    r"^.+?_(?P<id>[^_]+)_attempt_\d{4}(?:-\d\d){5}(?:_(?P<file>.+))?$")
_ROSTER_COLUMNS = (("id", "lms_user_id"), ("student_id", "lms_id"))  # nbgrader's, or plain


class RosterError(ValueError):
    """The roster file cannot be used (the message says where and why)."""


@dataclass(frozen=True)
class Entry:
    """Who a file or folder of an export belongs to."""

    system: str  # "canvas", "moodle", "blackboard" or "" (a name of the student's own)
    lms_id: str
    name: str  # as the system writes it
    file: str  # the name the student gave the file ("" for a folder, or an attempt's details)
    notebook: bool = True  # False: a part of the export that never holds the notebook

    @property
    def student_id(self) -> str:
        """The id graded under when no roster maps :attr:`lms_id`."""
        if self.system in ("canvas", "moodle"):
            return safe_id(f"{self.name}-{self.lms_id}")
        if self.system or SAFE_ID.fullmatch(self.lms_id):
            return safe_id(self.lms_id)
        # a name of the student's own that is not an id as it stands ("ana\n", "José"): its
        # safe form and a digest of it, so that it can never look like another student's id
        return safe_id(self.lms_id, marked=True)


def safe_id(text: str, marked: bool = False) -> str:
    """``text`` as a usable student id, the same for the same text: itself when it is one,
    else lower case without accents, runs of other characters as ``-``, and a short hash of
    ``text`` when too little is left, it was cut to length, or ``marked`` asks for one."""
    if SAFE_ID.fullmatch(text):
        return text
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    plain = re.sub(r"[^a-z0-9._@+]+", "-", plain).strip("-._@+")
    if marked or len(plain) < 2 or len(plain) > 100:
        digest = _digest(text)
        plain = f"{plain[:100]}-{digest}".strip("-") if plain else f"s-{digest}"
    return plain


def _digest(text: str) -> str:
    """A short digest of ``text`` (any string, names that are not UTF-8 included)."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def parse_file(filename: str) -> Entry:
    """Whose is a file found flat in the export (its name, extension included)."""
    if m := _MOODLE.match(filename):
        return Entry("moodle", m["id"], m["name"], m["file"], m["kind"] == "file")
    if m := _BLACKBOARD.match(Path(filename).stem if filename.endswith(".txt") else filename):
        return Entry("blackboard", m["id"], m["id"], m["file"] or "", bool(m["file"]))
    if m := _CANVAS.match(filename):
        return Entry("canvas", m["id"], m["name"], m["file"])
    name = Path(filename).stem.split("_", 1)[0]
    return Entry("", name, name, filename)


def parse_folder(folder: str) -> Entry:
    """Whose is a folder found in the export (Moodle's, else the folder names the student)."""
    if m := _MOODLE.match(folder):
        return Entry("moodle", m["id"], m["name"], "", m["kind"] == "file")
    return Entry("", folder, folder, "")


def read_roster(path: Path) -> dict[str, str]:
    """LMS id -> student id, from a CSV file whose header names the columns ``id`` and
    ``lms_user_id`` (as ``nbgrader db student import`` reads them) or ``student_id`` and
    ``lms_id``; other columns, and students without an LMS id, are ignored."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RosterError(f"cannot read the roster {path}: {exc}") from None
    columns = next((pair for pair in _ROSTER_COLUMNS if rows and all(c in rows[0] for c in pair)),
                   None)
    if columns is None:
        raise RosterError(f"the roster {path} needs a header line naming the columns id and "
                          "lms_user_id (nbgrader's), or student_id and lms_id")
    roster: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        student, lms_id = ((row[c] or "").strip() for c in columns)
        if not lms_id:
            continue
        if not SAFE_ID.fullmatch(student):
            raise RosterError(f"{path}, line {line}: {student!r} is not a usable student id "
                              "(letters, digits and ._@+-, starting with a letter or digit)")
        if roster.get(lms_id, student) != student:
            raise RosterError(f"{path}, line {line}: the LMS id {lms_id!r} is listed twice")
        roster[lms_id] = student
    return roster
