"""Finding each student's submission in a folder, an nbgrader ``submitted/`` tree or an LMS zip,
and taking the snapshot that is graded.

Layouts understood:
- ``SUBMISSIONS/<student>/...`` (one folder per student holding the notebook and its files);
- nbgrader's ``submitted/<student>/<assignment>/...`` (SUBMISSIONS may be ``submitted`` itself or
  the folder holding it);
- a flat folder or an LMS zip of ``<student>_<anything>.ipynb`` files, or a zip of
  per-student folders, as Canvas, Moodle and Blackboard export them
  (:mod:`~mlmcourse.grading.inputs.lms` reads whose each is, makes its id safe and maps it
  through the roster).
The notebook must be named ``<assignment>.ipynb`` inside a student folder; a single differently
named notebook is reported as misnamed. In nbgrader's tree (a folder named ``submitted``), a
student folder without this assignment's folder is not a submission of it; elsewhere each
student's folder is read on its own (``<student>/<assignment>/`` if there is one), so that no
student's layout changes how the others' are read. One filter (:func:`_entries`) lists every folder:
symbolic links are never followed, hidden and system entries are skipped. Nothing here modifies
the originals.

**The snapshot.** Students may still be able to write to their folders while the class is
graded, so each submission is copied once, at discovery, into a folder only root can read
(:class:`Snapshot`), and hashed while it is copied: workers read only the copy, never the
student's folder, so the hash, the graded bytes and the stored result always agree. The copy is
walked from the submissions folder down with ``openat``-style opens that never follow a link at
any depth; only regular files are copied (named pipes, devices and sockets are left out, opened,
if at all, without blocking and checked with ``fstat`` before any read), with limits on the
number of entries, the depth and the total size. Anything of one submission that cannot be read,
copied or named (a file name that is not valid UTF-8, a zip entry whose name is too long for the
file system) makes that submission ``failed`` with the reason; the others are unaffected.

When a student handed in: in nbgrader's own ``submitted/`` tree, the ``timestamp.txt`` that
``nbgrader submit``/``collect`` write, read strictly in nbgrader's format (:func:`parse_timestamp`);
in an LMS zip, the time of the notebook's zip entry (read as UTC), whatever the student's folder
holds; otherwise it is unknown (never late).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mlmcourse.grading.inputs import lms
from mlmcourse.grading.inputs.lms import SAFE_ID

MAX_SUBMISSION_BYTES = 50 * 1024 * 1024
MAX_SUBMISSION_ENTRIES = 1000
"""Files and folders one submission may hold (each one is listed, opened and copied)."""
MAX_DEPTH = 16
"""Folders nested in a submission, at most."""
MAX_ZIP_BYTES = 2 * 1024**3
MAX_TIMESTAMP_BYTES = 200
FIRST_YEAR, LAST_YEAR = 1970, 9998
"""Years a submission time may have (nothing later computes with a time near the ends of
``datetime``'s range)."""
SKIPPED_PARTS = {".ipynb_checkpoints", "__MACOSX", "__pycache__"}
TIMESTAMP_NAME = "timestamp.txt"
_CHUNK = 1 << 20
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(?: ?(?:(UTC|GMT|Z)|([+-])(\d{2}):?(\d{2})))?", re.ASCII)
"""What nbgrader writes: ``nbgrader submit`` ``%Y-%m-%d %H:%M:%S.%f %Z`` (its default time zone
is UTC), ``nbgrader zip_collect`` an ISO time (``isoformat(' ')``, with or without an offset)."""

class UsageError(Exception):
    """The submissions argument cannot be used (exit code 2)."""


class Refused(Exception):
    """Part of one submission cannot be taken into the snapshot (it becomes its ``problem``)."""


@dataclass
class Submission:
    """One student's submission: its files (in the snapshot) and where its notebook is."""

    student_id: str
    notebook: Path | None
    files: list[tuple[str, str]] = field(default_factory=list)  # (snapshot path, relative name)
    problem: str | None = None
    sha256: str = ""
    submitted_at: dt.datetime | None = None  # naive UTC, as nbgrader's gradebook stores it
    lms_id: str = ""  # what the folder or file name calls the student (see lms.Entry)
    flat: bool = False  # one notebook among everyone's in one folder (no timestamp.txt of its own)
    notebook_time: dt.datetime | None = None  # the notebook's modification time (naive UTC)
    timestamp: bytes | None = None  # its ``timestamp.txt``, as read at discovery


def shown(name: str, width: int = 80) -> str:
    """A name from a submission as it may appear in a message: quoted, with control characters
    and bytes that are not UTF-8 escaped, at most ``width`` characters of it."""
    return repr(name[:width]) + ("…" if len(name) > width else "")


def parse_timestamp(text: str) -> dt.datetime:
    """A ``timestamp.txt`` in nbgrader's format as naive UTC; anything else raises
    ``ValueError``. A zone is ``UTC``, ``GMT``, ``Z`` or a numeric offset: never a name looked
    up in the time-zone database, since the file's text is the student's to choose."""
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"unreadable {TIMESTAMP_NAME} {text[:60]!r} (expected nbgrader's "
                         "format, e.g. 2026-11-30 18:30:00.000000 UTC)")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match[7] or "0").ljust(6, "0"))
    try:
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise ValueError(f"the year is not between {FIRST_YEAR} and {LAST_YEAR}")
        when = dt.datetime(year, month, day, hour, minute, second, micro)
        if match[9]:
            hours, minutes = int(match[10]), int(match[11])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = dt.timedelta(hours=hours, minutes=minutes)
            when = when - offset if match[9] == "+" else when + offset
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"unreadable {TIMESTAMP_NAME} {text[:60]!r} ({exc})") from None
    return when


def _time(seconds: float) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return None


class Snapshot:
    """The root-only folder (0700) holding the copy of every submission that is graded."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        self.folder = folder
        self.taken = 0

    def new_folder(self) -> Path:
        """An empty folder for the next submission."""
        self.taken += 1
        path = self.folder / str(self.taken)
        path.mkdir(mode=0o700)
        return path


class _Copy:
    """One submission being copied into the snapshot: its files, their digests and budgets."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.files: dict[str, tuple[str, bytes, float]] = {}  # relative: (copy, sha256, mtime)
        self.entries_left = MAX_SUBMISSION_ENTRIES
        self.bytes_left = MAX_SUBMISSION_BYTES
        self.timestamp: bytes | None = None

    def entry(self) -> None:
        """Count one more file or folder against :data:`MAX_SUBMISSION_ENTRIES`."""
        self.entries_left -= 1
        if self.entries_left < 0:
            raise Refused(f"the submission holds more than {MAX_SUBMISSION_ENTRIES} files "
                          "and folders")

    def folder(self, fd: int, relative: tuple[str, ...]) -> None:
        """Copy the folder open as ``fd`` (it stays open) and everything under it."""
        if len(relative) > MAX_DEPTH:
            raise Refused(f"folders nested more than {MAX_DEPTH} deep")
        for name in sorted(os.listdir(fd)):
            if name in SKIPPED_PARTS or name.startswith("."):
                continue
            self.entry()
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                child = os.open(name, _OPEN_FOLDER, dir_fd=fd)
                try:
                    self.folder(child, (*relative, name))
                finally:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode):
                if not relative and name == TIMESTAMP_NAME:
                    self.timestamp = _read_small(fd, name, MAX_TIMESTAMP_BYTES)
                else:
                    self.file(fd, name, (*relative, name))
            # links, named pipes, devices and sockets are never opened

    def file(self, dir_fd: int, name: str, relative: tuple[str, ...]) -> None:
        """Copy one regular file, hashing it on the way."""
        text = "/".join(relative)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused(f"the file name {shown(text)} is not valid UTF-8") from None
        fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return  # swapped for something else since it was listed
            if info.st_size > self.bytes_left:
                raise Refused(f"the submission is larger than {MAX_SUBMISSION_BYTES // 1024**2} "
                              "MB")
            copy = self.target.joinpath(*relative)
            copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            digest = hashlib.sha256()
            out = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600)
            try:
                while chunk := os.read(fd, _CHUNK):
                    self.bytes_left -= len(chunk)
                    if self.bytes_left < 0:  # it grew while being read
                        raise Refused(f"the submission is larger than "
                                      f"{MAX_SUBMISSION_BYTES // 1024**2} MB")
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
            finally:
                os.close(out)
            self.files[text] = (str(copy), digest.digest(), info.st_mtime)
        finally:
            os.close(fd)


def _read_small(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The first ``limit`` bytes of a regular file (``None`` if it is not one any more)."""
    fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    try:
        return os.read(fd, limit) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def _open_under(top: Path, relative: tuple[str, ...], flags: int = _OPEN_FOLDER) -> int:
    """Open ``top/relative`` without following a link below ``top`` (the path the instructor
    gave, which is trusted)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for i, part in enumerate(relative):
        try:
            fd_next = os.open(part, flags if i == len(relative) - 1 else _OPEN_FOLDER, dir_fd=fd)
        finally:
            os.close(fd)
        fd = fd_next
    return fd


def _digest(files: dict[str, tuple[str, bytes, float]], problem: str | None) -> str:
    digest = hashlib.sha256((problem or "").encode("utf-8", "surrogateescape"))
    for relative in sorted(files):
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0" + files[relative][1])
    return digest.hexdigest()


def _problem_only(student_id: str, problem: str) -> Submission:
    return Submission(student_id, None, [], problem, _digest({}, problem))


def _entries(folder: Path) -> list[Path]:
    """The entries of a folder a submission may consist of: no symbolic links (to files or
    folders), nothing hidden, no system folders."""
    return [p for p in sorted(folder.iterdir()) if p.name not in SKIPPED_PARTS
            and not p.name.startswith(".") and not p.is_symlink()]


def from_student_folder(student_id: str, top: Path, relative: tuple[str, ...], assignment: str,
                        snapshot: Snapshot) -> Submission:
    """A submission from the folder ``top/relative`` holding one student's files, copied into
    the snapshot."""
    copy = _Copy(snapshot.new_folder())
    try:
        fd = _open_under(top, relative)
        try:
            copy.folder(fd, ())
        finally:
            os.close(fd)
    except Refused as exc:
        return _problem_only(student_id, str(exc))
    except OSError as exc:
        return _problem_only(student_id, f"the submission cannot be read ({exc.strerror})")
    expected = f"{assignment}.ipynb"
    notebooks = sorted(r for r in copy.files if r.endswith(".ipynb"))
    problem = None
    if expected not in copy.files:
        if len(notebooks) == 1:
            problem = f"notebook misnamed: found {shown(notebooks[0])}, expected {expected}"
        elif notebooks:
            names = ", ".join(map(shown, notebooks))
            problem = f"no {expected} among the {len(notebooks)} notebooks ({names})"
        else:
            problem = f"no notebook {expected} in the submission"
    pairs = [(path, relative) for relative, (path, _, _) in sorted(copy.files.items())]
    notebook = copy.files.get(expected) if problem is None else None
    return Submission(student_id, Path(notebook[0]) if notebook else None, pairs, problem,
                      _digest(copy.files, problem),
                      notebook_time=_time(notebook[2]) if notebook else None,
                      timestamp=copy.timestamp)


def _flat(top: Path, notebooks: list[Path], assignment: str, snapshot: Snapshot,
          others: list[Path]) -> list[Submission]:
    """One notebook per student, whose it is read from its name (:func:`lms.parse_file`); a
    student of an LMS export who handed in other files (``others``) but no notebook is a
    submission too, which cannot be graded."""
    by_student: dict[str, list[Path]] = {}
    lms_ids: dict[str, str] = {}
    for path in notebooks:
        entry = lms.parse_file(path.name)
        by_student.setdefault(entry.student_id, []).append(path)
        lms_ids[entry.student_id] = entry.lms_id
    without: dict[str, list[str]] = {}
    for path in others:
        entry = lms.parse_file(path.name)
        if entry.system and entry.notebook and entry.student_id not in by_student:
            without.setdefault(entry.student_id, []).append(shown(entry.file))
            lms_ids[entry.student_id] = entry.lms_id
    found = []
    for student_id, names in sorted(without.items()):
        found.append(_problem_only(student_id, f"no notebook {assignment}.ipynb in the "
                                               f"submission: {', '.join(names)}"))
    for student_id, paths in sorted(by_student.items()):
        if len(paths) > 1:
            names_shown = ", ".join(shown(p.name) for p in paths)
            found.append(_problem_only(student_id,
                                       f"several notebooks for this student: {names_shown}"))
            continue
        copy = _Copy(snapshot.new_folder())
        relative = paths[0].relative_to(top).parts
        try:
            fd = _open_under(top, relative[:-1])
            try:
                copy.file(fd, relative[-1], (f"{assignment}.ipynb",))
            finally:
                os.close(fd)
        except Refused as exc:
            found.append(_problem_only(student_id, str(exc)))
            continue
        except OSError as exc:
            found.append(_problem_only(student_id, f"the notebook cannot be read ({exc.strerror})"))
            continue
        if not copy.files:  # no longer a regular file
            found.append(_problem_only(student_id, f"no notebook {assignment}.ipynb"))
            continue
        ((name, (path, _, mtime)),) = copy.files.items()
        found.append(Submission(student_id, Path(path), [(path, name)], None,
                                _digest(copy.files, None), flat=True, notebook_time=_time(mtime)))
    for submission in found:
        submission.lms_id = lms_ids[submission.student_id]
    return found


def extract_zip(archive: Path, target: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """Extract an LMS zip safely (no absolute paths, no ``..``, bounded size) into ``target``.
    Returns ``target`` and the entries that could not be extracted (a name too long for the file
    system, a file where a folder is, a damaged entry): where each would have gone and why, so
    that the submission it belongs to fails with the reason and the others are graded."""
    failed: list[tuple[Path, str]] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            # not ZipInfo.is_dir(), which fails on an empty name (a name that began with a NUL)
            members = [m for m in zf.infolist() if not m.filename.endswith("/")]
            if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
                raise UsageError(f"{archive}: the zip expands to more than 2 GB")
            for member in members:
                parts = Path(member.filename).parts
                if member.filename.startswith("/") or ".." in parts or not parts:
                    continue
                destination = target.joinpath(*parts)
                try:
                    _extract(zf, member, destination)
                except Exception as exc:  # any entry's problem stays that entry's
                    reason = getattr(exc, "strerror", None) or type(exc).__name__
                    failed.append((destination, f"the zip entry {shown(member.filename)} cannot "
                                                f"be extracted ({reason})"))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UsageError(f"cannot read the zip {archive}: {exc}") from None
    return target, failed


def _extract(zf: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path) -> None:
    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with zf.open(member) as src, open(destination, "wb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
    # the entry's time (zips store no zone: read as UTC) is when it was handed in
    try:
        stamp = dt.datetime(*member.date_time, tzinfo=dt.UTC).timestamp()
        os.utime(destination, (stamp, stamp))
    except (ValueError, OverflowError, OSError):
        pass


def discover(root: Path, assignment: str, staging: Path, roster: dict[str, str] | None = None,
             ) -> tuple[list[Submission], list[str]]:
    """All submissions under ``root`` (a folder or a zip), copied into ``staging/snapshot``,
    under the student ids ``roster`` maps their LMS ids to (when given); returns (submissions,
    warnings)."""
    given = root
    if not root.exists():
        raise UsageError(f"submissions not found: {root}")
    from_zip = root.is_file()
    snapshot = Snapshot(staging / "snapshot")
    failed_entries: list[tuple[Path, str]] = []
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise UsageError(f"{root} is neither a folder nor a readable zip file")
        root, failed_entries = extract_zip(root, staging / "zip")
        root.mkdir(mode=0o700, exist_ok=True)
    top = root
    submitted = root / "submitted"
    nbgrader_tree = submitted.is_dir() and not submitted.is_symlink()
    if nbgrader_tree:
        root = submitted
    # nbgrader's own folder, given as it is: it is a tree even when nobody handed this one in
    nbgrader_tree = nbgrader_tree or (root.name == "submitted" and not from_zip)
    # only nbgrader's own tree holds a timestamp.txt the grader trusts (nbgrader wrote it)
    trusted_times = nbgrader_tree and not from_zip
    entries = _entries(root)
    while len(entries) == 1 and entries[0].is_dir() and not _looks_like_student(entries[0],
                                                                               assignment):
        root = entries[0]  # a zip that wraps everything in one folder
        entries = _entries(root)
    warnings: list[str] = []
    notebooks = [p for p in entries if p.is_file() and p.suffix == ".ipynb"]
    folders = [p for p in entries if p.is_dir()]
    others = [p for p in entries if p.is_file() and p.suffix != ".ipynb"]
    found = _flat(top, notebooks, assignment, snapshot, others)
    for folder in folders:
        nested = _assignment_folder(folder, assignment)
        if nested is None and nbgrader_tree:
            continue  # this student handed in other assignments, not this one
        entry = lms.parse_folder(folder.name)
        if not entry.notebook:
            warnings.append(f"ignored {shown(folder.name)}: the LMS's online text, not a "
                            "notebook")
            continue
        relative = (nested or folder).relative_to(top).parts
        found.append(from_student_folder(entry.student_id, top, relative, assignment, snapshot))
        found[-1].lms_id = entry.lms_id
    found = _with_failed_entries(found, failed_entries, root, warnings)
    for submission in found:
        _set_time(submission, from_zip, trusted_times, warnings)
    if roster is not None:
        found = [_on_roster(s, roster) for s in found]
    if not found and not nbgrader_tree:
        raise UsageError(f"no submissions found in {given}")
    ids = [s.student_id for s in found]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UsageError("several submissions for the same student: " + ", ".join(duplicates))
    return found, warnings


def _on_roster(submission: Submission, roster: dict[str, str]) -> Submission:
    """The submission under the student id the roster gives its LMS id; one whose LMS id is
    not on the roster keeps its own id and cannot be graded (a failed row, never dropped)."""
    if submission.lms_id in roster:
        submission.student_id = roster[submission.lms_id]
    else:
        submission.problem = f"the LMS id {shown(submission.lms_id)} is not in the roster"
        submission.notebook, submission.files = None, []
        submission.sha256 = _digest({}, submission.problem)
    return submission


def _with_failed_entries(found: list[Submission], failed: list[tuple[Path, str]], root: Path,
                         warnings: list[str]) -> list[Submission]:
    """The submissions, each one with a zip entry of its own that could not be extracted made
    ``failed`` with the reason (a student whose only notebook could not be extracted too)."""
    found = list(found)
    for destination, reason in failed:
        parts = destination.relative_to(root).parts if destination.is_relative_to(root) else ()
        entry = (lms.parse_folder(parts[0]) if len(parts) > 1
                 else lms.parse_file(parts[0]) if parts and parts[0].endswith(".ipynb")
                 else None)
        student_id = entry.student_id if entry is not None else ""
        if not SAFE_ID.fullmatch(student_id):
            warnings.append(reason)
            continue
        owners = [i for i, s in enumerate(found) if s.student_id == student_id]
        for i in owners:
            found[i] = _problem_only(student_id, reason)
        if not owners:
            found.append(_problem_only(student_id, reason))
    return found


def _set_time(submission: Submission, from_zip: bool, trusted_times: bool,
              warnings: list[str]) -> None:
    """When the submission was handed in: its zip entry's time in a zip, its ``timestamp.txt``
    in nbgrader's tree, otherwise unknown."""
    if submission.notebook is None:
        return
    if from_zip:
        submission.submitted_at = submission.notebook_time
    elif trusted_times and submission.timestamp is not None:
        text = submission.timestamp.decode("utf-8", "replace")
        if text.strip():
            try:
                submission.submitted_at = parse_timestamp(text)
            except ValueError as exc:
                warnings.append(f"{submission.student_id}: {exc}; its submission time is "
                                "unknown")


def _assignment_folder(folder: Path, assignment: str) -> Path | None:
    """``folder/<assignment>`` if it is a real folder (not a link)."""
    nested = folder / assignment
    return nested if nested.is_dir() and not nested.is_symlink() else None


def _looks_like_student(folder: Path, assignment: str) -> bool:
    notebook = folder / f"{assignment}.ipynb"
    return (notebook.is_file() and not notebook.is_symlink()) or \
        _assignment_folder(folder, assignment) is not None
