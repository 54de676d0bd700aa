"""The course folder ``mlmcourse init`` creates, from the copy of the course the package carries.

A wheel carries ``mlmcourse/course_template/``: ``nbgrader_config.py`` and ``README.md`` (with
``__COURSE_ID__`` to fill in) and ``source/<assignment>/<assignment>.ipynb``, the exercises as the
instructor writes them (copied from ``autograder/source`` when the wheel is built, see
``setup.py``). Run from a checkout, the exercises are read from ``autograder/source`` directly.

Each exercise is written rendered with the parameters drawn from the course's seed
(:mod:`mlmcourse.grading.authoring.variants`; the default seed gives the published exercises),
without the templates, and the drawn values are recorded in ``parameters.json`` (the seed
itself never is).
"""

from __future__ import annotations

import json
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


def create_course(folder: Path, course_id: str | None = None,
                  seed: str = variants.DEFAULT_SEED) -> list[str]:
    """Create an nbgrader course folder at ``folder`` holding every built-in exercise, its numbers
    and option orders drawn from ``seed``; returns the assignments written. Refuses a folder that
    already holds ``nbgrader_config.py``."""
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
    names = builtin_assignments()
    if not names:
        raise InitError("this installation of mlmcourse carries no exercises")
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, "README.md"):
        text = (TEMPLATE / name).read_text(encoding="utf-8")
        (folder / name).write_text(text.replace(PLACEHOLDER, course_id), encoding="utf-8")
    drawn = {}
    for name in names:
        nb = nbformat.read(exercise_sources() / name / f"{name}.ipynb", as_version=4)
        drawn[name] = variants.draw(variants.parameters(nb), seed, name)
        target = source_path(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(variants.render_notebook(nb, drawn[name]), target)
    record = {"published": seed == variants.DEFAULT_SEED, "assignments": drawn}
    (folder / PARAMETERS_NAME).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return names
