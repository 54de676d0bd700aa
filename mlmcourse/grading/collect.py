"""Finding each student's submission in a folder, an nbgrader ``submitted/`` tree or an LMS zip.

Layouts understood:
- ``SUBMISSIONS/<student>/...`` (one folder per student holding the notebook and its files);
- nbgrader's ``submitted/<student>/<assignment>/...`` (SUBMISSIONS may be ``submitted`` itself or
  the folder holding it);
- a flat folder or an LMS zip of ``<student>_<anything>.ipynb`` files, or a zip of
  per-student folders, as Canvas, Moodle and Blackboard export them (:mod:`~mlmcourse.grading.lms`
  reads whose each is, makes its id safe and maps it through the roster).
The notebook must be named ``<assignment>.ipynb`` inside a student folder; a single differently
named notebook is reported as misnamed. In an nbgrader tree, a student folder without this
assignment's folder is not a submission of it. One filter (:func:`_entries`) lists every folder:
symbolic links are never followed, hidden and system entries are skipped. Nothing here modifies
the originals.

When a student handed in is read as nbgrader does: ``timestamp.txt`` in the submission folder
(what ``nbgrader submit``/``collect`` write), else, for an LMS zip, the time of the notebook's zip
entry (read as UTC); otherwise it is unknown (never late).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mlmcourse.grading import lms

MAX_SUBMISSION_BYTES = 50 * 1024 * 1024
MAX_ZIP_BYTES = 2 * 1024**3
SKIPPED_PARTS = {".ipynb_checkpoints", "__MACOSX", "__pycache__"}
TIMESTAMP_NAME = "timestamp.txt"


class UsageError(Exception):
    """The submissions argument cannot be used (exit code 2)."""


@dataclass
class Submission:
    """One student's submission: files to copy into the sandbox and where the notebook is."""

    student_id: str
    notebook: Path | None
    files: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, relative name)
    problem: str | None = None
    sha256: str = ""
    submitted_at: dt.datetime | None = None  # naive UTC, as nbgrader's gradebook stores it
    flat: bool = False  # one notebook among everyone's in one folder (no timestamp.txt of its own)
    lms_id: str = ""  # what the folder or file name calls the student (see lms.Entry)


def read_timestamp(folder: Path) -> dt.datetime | None:
    """The time in ``folder/timestamp.txt`` (nbgrader's format, any time zone) as naive UTC;
    ``None`` when there is none. An unreadable one raises ``ValueError``."""
    path = folder / TIMESTAMP_NAME
    if not path.is_file() or path.is_symlink():
        return None
    text = path.read_text(encoding="utf-8", errors="replace").strip()[:100]
    if not text:
        return None
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"unreadable {TIMESTAMP_NAME} {text!r}") from exc


def file_time(path: Path) -> dt.datetime:
    """A file's modification time as naive UTC (a zip entry's time, once extracted)."""
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)


def _hash(files: list[tuple[str, str]], problem: str | None) -> str:
    digest = hashlib.sha256((problem or "").encode())
    for path, relative in sorted(files, key=lambda f: f[1]):
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def _entries(folder: Path) -> list[Path]:
    """The entries of a folder a submission may consist of: no symbolic links (to files or
    folders), nothing hidden, no system folders."""
    return [p for p in sorted(folder.iterdir()) if p.name not in SKIPPED_PARTS
            and not p.name.startswith(".") and not p.is_symlink()]


def _visible_files(folder: Path) -> list[Path]:
    """Regular files under ``folder``, found with :func:`_entries` at every level."""
    found, pending = [], [folder]
    while pending:
        for path in _entries(pending.pop()):
            if path.is_dir():
                pending.append(path)
            elif path.is_file():
                found.append(path)
    return sorted(found)


def from_student_folder(student_id: str, folder: Path, assignment: str) -> Submission:
    """A submission from a folder holding one student's files."""
    files = [p for p in _visible_files(folder) if p != folder / TIMESTAMP_NAME]
    expected = folder / f"{assignment}.ipynb"
    notebooks = [p for p in files if p.suffix == ".ipynb"]
    problem = None
    if expected not in files:
        if len(notebooks) == 1:
            problem = (f"notebook misnamed: found {notebooks[0].relative_to(folder)}, "
                       f"expected {assignment}.ipynb")
        elif notebooks:
            names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
            problem = f"no {assignment}.ipynb among the {len(notebooks)} notebooks ({names})"
        else:
            problem = f"no notebook {assignment}.ipynb in the submission"
    if sum(p.stat().st_size for p in files) > MAX_SUBMISSION_BYTES:
        problem = f"the submission is larger than {MAX_SUBMISSION_BYTES // 1024**2} MB"
        files = [expected] if expected in files else []
    pairs = [(str(p), str(p.relative_to(folder))) for p in files]
    return Submission(student_id, expected if problem is None else None, pairs, problem,
                      _hash(pairs, problem))


def _flat(notebooks: list[Path], assignment: str,
          others: list[Path] | None = None) -> list[Submission]:
    """One notebook per student, whose it is read from its name (:func:`lms.parse_file`); a
    student of an LMS export who handed in other files but no notebook is a submission too,
    which cannot be graded."""
    by_student: dict[str, list[Path]] = {}
    lms_ids: dict[str, str] = {}
    for path in notebooks:
        entry = lms.parse_file(path.name)
        by_student.setdefault(entry.student_id, []).append(path)
        lms_ids[entry.student_id] = entry.lms_id
    without: dict[str, list[str]] = {}
    for path in others or []:
        entry = lms.parse_file(path.name)
        if entry.system and entry.notebook and entry.student_id not in by_student:
            without.setdefault(entry.student_id, []).append(entry.file)
            lms_ids[entry.student_id] = entry.lms_id
    found = []
    for student_id, names in sorted(without.items()):
        problem = f"no notebook {assignment}.ipynb in the submission: {', '.join(names)}"
        found.append(Submission(student_id, None, [], problem, _hash([], problem),
                                lms_id=lms_ids[student_id]))
    for student_id, paths in sorted(by_student.items()):
        if len(paths) > 1:
            problem = "several notebooks for this student: " + ", ".join(p.name for p in paths)
            found.append(Submission(student_id, None, [], problem, _hash([], problem),
                                    lms_id=lms_ids[student_id]))
            continue
        pairs = [(str(paths[0]), f"{assignment}.ipynb")]
        found.append(Submission(student_id, paths[0], pairs, None, _hash(pairs, None),
                                flat=True, lms_id=lms_ids[student_id]))
    return found


def extract_zip(archive: Path, target: Path) -> Path:
    """Extract an LMS zip safely (no absolute paths, no ``..``, bounded size) into ``target``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise UsageError(f"{archive}: the zip expands to more than 2 GB")
            for member in members:
                parts = Path(member.filename).parts
                if member.filename.startswith("/") or ".." in parts:
                    continue
                destination = target.joinpath(*parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src:
                    destination.write_bytes(src.read())
                # the entry's time (zips store no zone: read as UTC) is when it was handed in
                try:
                    stamp = dt.datetime(*member.date_time, tzinfo=dt.UTC).timestamp()
                    os.utime(destination, (stamp, stamp))
                except (ValueError, OverflowError, OSError):
                    pass
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"cannot read the zip {archive}: {exc}") from None
    return target


def discover(root: Path, assignment: str, staging: Path, roster: dict[str, str] | None = None,
             ) -> tuple[list[Submission], list[str]]:
    """All submissions under ``root`` (a folder or a zip), under the student ids ``roster`` maps
    their LMS ids to (when given); returns (submissions, warnings)."""
    given = root
    if not root.exists():
        raise UsageError(f"submissions not found: {root}")
    from_zip = root.is_file()
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise UsageError(f"{root} is neither a folder nor a readable zip file")
        root = extract_zip(root, staging / "zip")
    submitted = root / "submitted"
    nbgrader_tree = submitted.is_dir() and not submitted.is_symlink()
    if nbgrader_tree:
        root = submitted
    # nbgrader's own folder, given as it is: it is a tree even when nobody handed this one in
    nbgrader_tree = nbgrader_tree or (root.name == "submitted" and not from_zip)
    entries = _entries(root)
    while len(entries) == 1 and entries[0].is_dir() and not _looks_like_student(entries[0],
                                                                               assignment):
        root = entries[0]  # a zip that wraps everything in one folder
        entries = _entries(root)
    warnings: list[str] = []
    notebooks = [p for p in entries if p.is_file() and p.suffix == ".ipynb"]
    folders = [p for p in entries if p.is_dir()]
    nbgrader_tree = nbgrader_tree or any(_assignment_folder(f, assignment) for f in folders)
    others = [p for p in entries if p.is_file() and p.suffix != ".ipynb"]
    found = _flat(notebooks, assignment, others)
    for folder in folders:
        nested = _assignment_folder(folder, assignment)
        if nested is None and nbgrader_tree:
            continue  # this student handed in other assignments, not this one
        entry = lms.parse_folder(folder.name)
        if not entry.notebook:
            warnings.append(f"ignored {folder.name}: the LMS's online text, not a notebook")
            continue
        found.append(from_student_folder(entry.student_id, nested or folder, assignment))
        found[-1].lms_id = entry.lms_id
    for submission in found:
        _set_time(submission, from_zip, warnings)
    kept = [_on_roster(s, roster) for s in found] if roster is not None else found
    if not kept and not nbgrader_tree:
        raise UsageError(f"no submissions found in {given}")
    ids = [s.student_id for s in kept]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UsageError("several submissions for the same student: " + ", ".join(duplicates))
    return kept, warnings


def _on_roster(submission: Submission, roster: dict[str, str]) -> Submission:
    """The submission under the student id the roster gives its LMS id; one whose LMS id is
    not on the roster keeps its own id and cannot be graded (a failed row, never dropped)."""
    if submission.lms_id in roster:
        submission.student_id = roster[submission.lms_id]
    else:
        submission.problem = f"the LMS id {submission.lms_id!r} is not in the roster"
        submission.notebook, submission.files = None, []
        submission.sha256 = _hash([], submission.problem)
    return submission


def _set_time(submission: Submission, from_zip: bool, warnings: list[str]) -> None:
    """When the submission was handed in: its ``timestamp.txt``, else its zip entry's time."""
    notebook = submission.notebook
    if notebook is None:
        return
    if not submission.flat:
        try:
            submission.submitted_at = read_timestamp(notebook.parent)
        except ValueError as exc:
            warnings.append(f"{submission.student_id}: {exc}; its submission time is unknown")
    if submission.submitted_at is None and from_zip:
        submission.submitted_at = file_time(notebook)


def _assignment_folder(folder: Path, assignment: str) -> Path | None:
    """``folder/<assignment>`` if it is a real folder (not a link)."""
    nested = folder / assignment
    return nested if nested.is_dir() and not nested.is_symlink() else None


def _looks_like_student(folder: Path, assignment: str) -> bool:
    notebook = folder / f"{assignment}.ipynb"
    return (notebook.is_file() and not notebook.is_symlink()) or \
        _assignment_folder(folder, assignment) is not None
