"""What grading writes belongs to the course: the course folder's owner, group and permissions.

``mlmcourse grade`` runs as root (the sandbox needs it), but the course folder belongs to the
instructor's account, whose formgrader must read the autograded notebooks and the gradebook, and
whose teaching assistants (the folder's group) may read the grades. When a run ends, every file
and folder it wrote gets the course folder's owner and group; folders get the course folder's
mode, files the same without execute bits, and neither ever anything for others (the autograded
notebooks hold the hidden tests and the gradebook every student's grades), but the feedback pages
``nbgrader release_feedback`` hands to students.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

_FOLDER_BITS = stat.S_ISGID | 0o770  # never others' bits, nor set-user-id or sticky
_FILE_BITS = 0o660


@dataclass(frozen=True)
class Owner:
    """Owner, group and modes that what a run writes gets."""

    uid: int
    gid: int
    folder_mode: int
    file_mode: int


def course_owner(course: Path) -> Owner:
    """The :class:`Owner` of what is written for ``course`` (read from the folder itself)."""
    info = course.stat()
    folder_mode = stat.S_IMODE(info.st_mode) & _FOLDER_BITS
    return Owner(info.st_uid, info.st_gid, folder_mode, folder_mode & _FILE_BITS)


def _apply(path: Path, owner: Owner) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return  # a link is never followed
    if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
    mode = owner.folder_mode if stat.S_ISDIR(info.st_mode) else owner.file_mode
    if info.st_uid == os.geteuid() or os.geteuid() == 0:
        os.chmod(path, mode)


def hand_over(owner: Owner, path: Path, whole: bool = True) -> None:
    """Give ``path`` (if it exists), and with ``whole`` everything under it, to ``owner``."""
    if not path.exists() or path.is_symlink():
        return
    _apply(path, owner)
    if not whole or not path.is_dir():
        return
    for folder, folders, files in os.walk(path):  # links to folders are not entered
        for name in folders + files:
            _apply(Path(folder) / name, owner)


STUDENT_PAGES = "feedback/*/*/*.html"
"""The pages ``nbgrader release_feedback`` copies into the exchange with their permissions: each
is readable by all, to be read by its student (the private course folder hides them here)."""

OUTPUTS = ("grades.csv", "report.html", "*.svg", "feedback", "results")
"""What a run writes in its output folder (nothing else there is touched)."""


def hand_over_run(course: Path, out: Path) -> None:
    """Give what a run wrote to the course folder's owner: the outputs in ``out`` (and ``out``
    with the folders made for it, when inside the course), the autograded notebooks, the pages
    for ``nbgrader release_feedback``, the gradebook and its backup."""
    course, out = course.resolve(), out.resolve()
    owner = course_owner(course)
    for folder in reversed([p for p in [out, *out.parents] if course in p.parents]):
        hand_over(owner, folder, whole=False)
    for pattern in OUTPUTS:
        for path in sorted(out.glob(pattern)):
            hand_over(owner, path)
    for name in ("autograded", "feedback", "gradebook.db", "gradebook.db.bak"):
        hand_over(owner, course / name)
    for page in course.glob(STUDENT_PAGES):
        if not page.is_symlink():
            os.chmod(page, owner.file_mode | 0o444)
