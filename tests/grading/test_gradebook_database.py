"""The gradebook database a course names (``c.CourseDirectory.db_url``), and one that cannot be
reached: exit 2 before anything is graded or recorded, naming the database without its password."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

import pytest

from mlmcourse.grading.cli import grade as grade_cli
from mlmcourse.grading.outputs import database

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    grade_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def _closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _course_with(tmp_path: Path, url: str | None) -> Path:
    course = corpus.write_course(tmp_path / "course")
    lines = ["c = get_config()", "c.CourseDirectory.course_id = 'mlm101'"]
    if url is not None:
        lines.append(f"c.CourseDirectory.db_url = {url!r}")
    (course / "nbgrader_config.py").write_text("\n".join(lines) + "\n")
    return course


def test_the_gradebook_is_the_database_the_course_names(tmp_path: Path) -> None:
    course = _course_with(tmp_path, None)
    assert database.db_url(course) == f"sqlite:///{course / 'gradebook.db'}"
    assert database.course_id(course) == "mlm101"
    elsewhere = tmp_path / "shared" / "grades.sqlite"
    course = _course_with(tmp_path, f"sqlite:///{elsewhere}")
    assert database.sqlite_file(course) == elsewhere
    course = _course_with(tmp_path, "postgresql+psycopg://grader:s3cret@db.example:5432/mlm")
    assert database.sqlite_file(course) is None
    assert database.backup(course) is None  # the server keeps its own backups
    assert (database.shown_url(database.db_url(course))
            == "postgresql+psycopg://grader:***@db.example:5432/mlm")


def test_a_sqlite_gradebook_elsewhere_is_backed_up_beside_itself(tmp_path: Path) -> None:
    import sqlite3

    elsewhere = tmp_path / "shared" / "grades.sqlite"
    elsewhere.parent.mkdir()
    with sqlite3.connect(elsewhere) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (7)")
    db.close()
    course = _course_with(tmp_path, f"sqlite:///{elsewhere}")
    copy = database.backup(course)
    assert copy == elsewhere.with_name("grades.sqlite.bak")
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(7,)]
    db.close()


def test_an_unreachable_database_exits_2_naming_it_and_records_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    course = _course_with(tmp_path, f"postgresql+psycopg://grader:s3cret@127.0.0.1:{port}/mlm")
    nb = corpus.solved(corpus.source_notebook())
    (tmp_path / "subs" / "ana").mkdir(parents=True)
    (tmp_path / "subs" / "ana" / "softmax.ipynb").write_text(json.dumps(nb))
    out = tmp_path / "out"

    code = grade_cli.run(_args("softmax", str(tmp_path / "subs"), "--out", str(out),
                               "--course", str(course), "--jobs", "1", "--no-sandbox"))

    err = capsys.readouterr().err
    assert code == 2
    assert f"postgresql+psycopg://grader:***@127.0.0.1:{port}/mlm cannot be reached" in err
    assert "s3cret" not in err
    assert "c.CourseDirectory.db_url" in err and "mlmcourse[postgres]" in err
    assert not out.exists()  # nothing graded, stored or recorded
    assert sorted(p.name for p in course.iterdir()) == ["nbgrader_config.py", "source"]


def _export(course: Path) -> list[dict[str, str]]:
    """``nbgrader export`` of the course (run where an instructor runs it), as CSV rows."""
    import csv
    import subprocess

    subprocess.run([sys.executable, "-m", "nbgrader", "export"], cwd=course, check=True,
                   capture_output=True, timeout=300)
    with open(course / "grades.csv", newline="") as table:
        return list(csv.DictReader(table))


@pytest.mark.slow
@pytest.mark.usefixtures("needs_root")
def test_the_same_class_on_postgresql_and_sqlite_gives_the_same_numbers(
        tmp_path: Path, postgres_url: str) -> None:
    from nbgrader.api import Gradebook

    subs = tmp_path / "subs"
    for student, answer in (("ana", "Subtracting the maximum keeps exp from overflowing."),
                            ("ben", None)):
        nb = corpus.solved(corpus.source_notebook())
        if answer:
            next(c for c in nb["cells"]
                 if c["metadata"]["nbgrader"].get("grade_id") == "why")["source"] = answer
        (subs / student).mkdir(parents=True)
        (subs / student / "softmax.ipynb").write_text(json.dumps(nb))
    exported, csvs = {}, {}
    for name, url in (("sqlite", None), ("postgres", postgres_url)):
        course = _course_with(tmp_path / name, url)
        argv = ("softmax", str(subs), "--out", str(tmp_path / name / "out"),
                "--course", str(course), "--jobs", "2")
        assert grade_cli.run(_args(*argv)) == 0
        with Gradebook(database.db_url(course), course_id="mlm101") as gb:  # formgrader's way
            grade = gb.find_grade("why", "softmax", "softmax", "ana")
            grade.manual_score = 0.5
            grade.needs_manual_grade = False
            gb.db.commit()
        assert grade_cli.run(_args(*argv)) == 0  # the hand grade reaches grades.csv
        csvs[name] = (tmp_path / name / "out" / "grades.csv").read_text()
        exported[name] = [{key: row[key] for key in ("assignment", "student_id", "raw_score",
                                                     "late_submission_penalty", "score",
                                                     "max_score")}
                          for row in sorted(_export(course),  # (row order is the database's)
                                            key=lambda row: row["student_id"])]
    assert not (tmp_path / "postgres" / "course" / "gradebook.db").exists()
    assert csvs["postgres"] == csvs["sqlite"]
    assert "ana,graded,,3.5,4," in csvs["postgres"]
    assert exported["postgres"] == exported["sqlite"]
    assert {r["student_id"]: float(r["score"]) for r in exported["postgres"]}["ana"] == 3.5


@pytest.mark.usefixtures("needs_root")
def test_a_database_lost_mid_run_stops_with_whole_students_only(
        tmp_path: Path, postgres_url: str) -> None:
    """The server drops the grader's connection between two batches: the run stops
    (:class:`GradebookLost`, exit code 2) with the batch in progress rolled back, nobody
    half-recorded, and every result kept in the store for the rerun that records the rest."""
    from nbgrader.api import Gradebook
    from sqlalchemy import create_engine, text

    from mlmcourse.grading import pipeline
    from mlmcourse.grading.model import CellResult, Graded, Result, Status
    from mlmcourse.grading.outputs import gradebook

    def graded(student: str) -> Graded:
        return Graded(Result(student, "softmax", 1.0, status=Status.GRADED, score=1.0,
                             cells={"test_softmax": CellResult("test", 1.0, 1.0, True)}))

    url = postgres_url.replace("/gradebook", "/postgres")  # a database of its own
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(text("CREATE DATABASE midrun"))
    course = _course_with(tmp_path, postgres_url.replace("/gradebook", "/midrun"))
    settings = pipeline.Settings("softmax", tmp_path / "subs", tmp_path / "out", course, 1,
                                 60.0, sandbox=False)
    (tmp_path / "subs").mkdir()
    run = pipeline.prepare(settings)
    try:
        gb = gradebook.open_gradebook(course)
        gradebook.ensure_assignment(gb, course, "softmax", run.source_path)
        run.layout = gradebook.layout(gb, "softmax")
        assert [r.status for r in pipeline.record(run, gb, [graded("ana")])] == [Status.GRADED]
        with admin.connect() as db:  # what a server restart does to the grader's connection
            db.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = 'midrun' AND pid <> pg_backend_pid()"))
        with pytest.raises(pipeline.GradebookLost, match="run the same command again"):
            pipeline.record(run, gb, [graded("bea"), graded("cem")])
        gb.close()
    finally:
        pipeline.finish(run)
    admin.dispose()
    with Gradebook(database.db_url(course), course_id="mlm101") as book:
        assert [s.id for s in book.students] == ["ana"]
        assert len(book.find_assignment("softmax").submissions) == 1
    assert sorted(p.stem for p in (tmp_path / "out" / "results").glob("*.json")) == \
        ["ana", "bea", "cem"]
