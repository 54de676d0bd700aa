"""The course folder ``mlmcourse init`` creates, from the copy of the course the package carries.

A wheel carries ``mlmcourse/course_template/``: ``nbgrader_config.py`` and ``README.md`` (with
``__COURSE_ID__`` to fill in) and ``source/<assignment>/<assignment>.ipynb``, the exercises as the
instructor writes them (copied from ``autograder/source`` when the wheel is built, see
``setup.py``). Run from a checkout, the exercises are read from ``autograder/source`` directly.

Each exercise is written rendered with the parameters drawn from the course's seed
(:mod:`mlmcourse.grading.authoring.variants`; the default seed gives the published exercises),
without the templates, and the drawn values are recorded in ``parameters.json`` (the seed
itself never is).

The folder holds the solutions and hidden tests: it is created private (folders ``0700``, files
``0600``), or shared with one group (``2750`` and ``0640``: the group may read, new files get the
group). The exchange students fetch from and submit to is never inside it: the hub's global
configuration sets it, or ``exchange`` does, outside the folder.
"""

from __future__ import annotations

import grp
import json
import os
import re
from pathlib import Path

import nbformat

from mlmcourse.grading.authoring import variants
from mlmcourse.grading.course import CONFIG_NAME, source_path

PACKAGE = Path(__file__).resolve().parents[2]
"""The ``mlmcourse`` package folder."""
TEMPLATE = PACKAGE / "course_template"
CHECKOUT_SOURCES = PACKAGE.parent / "autograder" / "source"
PLACEHOLDER = "__COURSE_ID__"
PARAMETERS_NAME = "parameters.json"
COURSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


class InitError(Exception):
    """The course folder cannot be created as asked (exit code 2)."""


def exercise_sources() -> Path:
    """The folder holding the built-in exercises' ``<assignment>/<assignment>.ipynb``."""
    packaged = TEMPLATE / "source"
    return packaged if packaged.is_dir() else CHECKOUT_SOURCES


def builtin_assignments() -> list[str]:
    """The names of the exercises the package carries."""
    folder = exercise_sources()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / f"{p.name}.ipynb").is_file())


def group_id(name: str) -> int:
    """The id of the Unix group ``name``, which the course's files can be given to (root, or a
    member of the group)."""
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        raise InitError(f"there is no group {name!r} on this machine") from None
    if os.geteuid() != 0 and gid not in (os.getegid(), *os.getgroups()):
        raise InitError(f"you are not a member of the group {name!r}, so the course cannot be "
                        "given to it")
    return gid


def exchange_line(folder: Path, exchange: Path) -> str:
    """The configuration line setting the exchange to ``exchange``, which must lie outside the
    course ``folder`` (students cannot reach into it)."""
    exchange = exchange.resolve()
    if exchange == folder or folder in exchange.parents:
        raise InitError(f"the exchange {exchange} is inside the course folder, which students "
                        "cannot read: choose a folder outside it (e.g. /srv/nbgrader/exchange)")
    return f"\nc.Exchange.root = {str(exchange)!r}\n"


def make_private(folder: Path, gid: int | None) -> None:
    """Give everything under ``folder`` the course's permissions: only the owner (``gid`` None)
    or the owner and group ``gid`` (read-only, set-group-id folders) can read it."""
    folder_mode, file_mode = (0o700, 0o600) if gid is None else (0o2750, 0o640)
    for path in [folder, *sorted(folder.rglob("*"))]:
        if gid is not None:
            os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, folder_mode if path.is_dir() else file_mode)


def create_course(folder: Path, course_id: str | None = None,
                  seed: str = variants.DEFAULT_SEED, group: str | None = None,
                  exchange: Path | None = None) -> list[str]:
    """Create an nbgrader course folder at ``folder`` holding every built-in exercise, its numbers
    and option orders drawn from ``seed``, readable only by its owner (and ``group``), with its
    exchange set to ``exchange`` (else left to the global configuration); returns the
    assignments written. Refuses a folder that is not empty (a course already, or files of
    yours that would become private)."""
    folder = folder.resolve()
    course_id = course_id or folder.name
    if not COURSE_ID.match(course_id):
        raise InitError(f"{course_id!r} is not a usable course id (letters, digits, '_.-'); "
                        "pass --course-id")
    if not seed.strip():
        raise InitError("the seed is empty: pass a secret phrase of your own (--seed or "
                        "--seed-file)")
    if (folder / CONFIG_NAME).exists():
        raise InitError(f"{folder} already holds {CONFIG_NAME}: it is a course folder already")
    gid = None if group is None else group_id(group)
    settings = "" if exchange is None else exchange_line(folder, exchange)
    names = builtin_assignments()
    if not names:
        raise InitError("this installation of mlmcourse carries no exercises")
    if folder.exists() and any(folder.iterdir()):
        raise InitError(f"{folder} is not empty: give a new folder for the course")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # before anything is written in it
    for name in (CONFIG_NAME, "README.md"):
        text = (TEMPLATE / name).read_text(encoding="utf-8").replace(PLACEHOLDER, course_id)
        (folder / name).write_text(text + settings * (name == CONFIG_NAME), encoding="utf-8")
    drawn = {}
    for name in names:
        nb = nbformat.read(exercise_sources() / name / f"{name}.ipynb", as_version=4)
        drawn[name] = variants.draw(variants.parameters(nb), seed, name)
        target = source_path(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(variants.render_notebook(nb, drawn[name]), target)
    record = {"published": seed == variants.DEFAULT_SEED, "assignments": drawn}
    (folder / PARAMETERS_NAME).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    make_private(folder, gid)
    return names
