"""Where the course's gradebook database is and whether it can be reached (light: no nbgrader).

The gradebook is the database ``c.CourseDirectory.db_url`` of the course's ``nbgrader_config.py``
names, as nbgrader reads it: SQLite (nbgrader's default, ``<course>/gradebook.db``) or a server
database such as PostgreSQL (``postgresql+psycopg://user:password@host/database``, with the
``postgres`` extra installed) for a course with several graders.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def db_url(course: Path) -> str:
    """The SQLAlchemy URL of the course's gradebook: ``c.CourseDirectory.db_url`` of its
    ``nbgrader_config.py`` (SQLite or a server database such as PostgreSQL, as nbgrader reads
    it), else nbgrader's default, ``<course>/gradebook.db``."""
    value = _course_config(course).get("db_url")
    if isinstance(value, str) and value:
        return value
    return f"sqlite:///{course / 'gradebook.db'}"


def shown_url(url: str) -> str:
    """``url`` as it may be printed: its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: say so without echoing it
        return "(a db_url SQLAlchemy cannot read)"


class GradebookUnreachable(Exception):
    """The course's gradebook database cannot be opened: the message names its URL (password
    hidden), the reason and what to do."""


def check_reachable(course: Path) -> None:
    """Connect once to the course's gradebook database, before anything is graded or recorded;
    :class:`GradebookUnreachable` if that fails (a server that is down, a wrong password, a
    driver that is not installed)."""
    from sqlalchemy import create_engine, text

    url = db_url(course)
    fix = (f"check c.CourseDirectory.db_url in {course / 'nbgrader_config.py'}, that the "
           "database server runs and accepts this user, and that its driver is installed "
           "(pip install 'mlmcourse[postgres]' for PostgreSQL); nothing was recorded")
    try:
        engine = create_engine(url)
    except Exception as exc:
        raise GradebookUnreachable(f"the gradebook database {shown_url(url)} cannot be used "
                                   f"({type(exc).__name__}: {_reason(exc)}): {fix}") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise GradebookUnreachable(f"the gradebook database {shown_url(url)} cannot be reached "
                                   f"({type(exc).__name__}: {_reason(exc)}): {fix}") from None
    finally:
        engine.dispose()


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the database itself failed (connection lost, server gone, database
    locked or read-only): a failure of the gradebook, not of the student being recorded."""
    from sqlalchemy import exc as sql

    return isinstance(exc, sql.DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, (sql.OperationalError, sql.InterfaceError)))


def lost_message(course: Path, out: Path, exc: Exception) -> str:
    """What to say when the database is lost during a run (see :func:`lost`)."""
    return (f"the gradebook database {shown_url(db_url(course))} failed during the run "
            f"({type(exc).__name__}: {_reason(exc)}): every student is either recorded whole "
            f"or not at all; the results graded so far are kept in {out.resolve() / 'results'}: "
            "once the database is back, run the same command again to record the rest")


def _reason(exc: Exception) -> str:
    """The first line of what the driver said (drivers never print the password)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0][:300] if lines else "no reason given"


def sqlite_file(course: Path) -> Path | None:
    """The file of the course's gradebook when it is a SQLite database (else ``None``)."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url(course))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def backup(course: Path) -> Path | None:
    """Copy a SQLite gradebook to ``<file>.bak`` (SQLite's online backup) before a run; a
    server database is backed up by its server (``None``)."""
    source = sqlite_file(course)
    if source is None or not source.exists():
        return None
    target = source.with_name(source.name + ".bak")
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target


def course_id(course: Path) -> str:
    """``CourseDirectory.course_id`` of the course's ``nbgrader_config.py`` (nbgrader's default
    otherwise), so that assignments created here belong to the same course as nbgrader's."""
    value = _course_config(course).get("course_id")
    if isinstance(value, str) and value:
        return value
    return "default_course"


def _course_config(course: Path) -> Any:
    """The ``CourseDirectory`` section of the course's ``nbgrader_config.py`` (empty without
    one)."""
    config_file = course / "nbgrader_config.py"
    if not config_file.exists():
        return {}
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader(config_file.name, str(course)).load_config()
    return config.get("CourseDirectory", {})
