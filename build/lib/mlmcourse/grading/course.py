"""Where the nbgrader course folder is and which assignments it holds.

A course folder holds ``nbgrader_config.py`` and ``source/<assignment>/<assignment>.ipynb``. The
commands act on the folder given by ``--course``, else on the nearest folder upward from the
working directory that holds ``nbgrader_config.py``, else on ``./autograder``.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_NAME = "nbgrader_config.py"


def find_course(given: Path | None = None, start: Path | None = None) -> Path:
    """The course folder to act on (absolute; it may not exist, callers say so)."""
    if given is not None:
        return given.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return here / "autograder"


def source_path(course: Path, assignment: str) -> Path:
    """The instructor's notebook of ``assignment``."""
    return course / "source" / assignment / f"{assignment}.ipynb"


def release_path(course: Path, assignment: str) -> Path:
    """The student notebook that ``mlmcourse release`` writes for ``assignment``."""
    return course / "release" / assignment / f"{assignment}.ipynb"


def assignments(course: Path) -> list[str]:
    """Every assignment of the course: the folders of ``source/`` holding their notebook."""
    folder = course / "source"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.is_symlink() and source_path(course, p.name).is_file())
