"""Every learning-management system's export, graded as it is downloaded: Canvas, Moodle (in folders
and flat) and Blackboard zips; ids made safe the same way every time and mapped to the course's
roster; nothing skipped in silence; usage errors that name each bad option and write nothing."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zipfile
from pathlib import Path

import pytest

from mlmcourse.grading.cli import grade as grade_cli
from mlmcourse.grading.inputs import lms
from mlmcourse.grading.inputs.collect import discover

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus

SOLVED = json.dumps(corpus.solved(corpus.source_notebook()))

EXPORTS = {  # zip entry -> the LMS id and student id it is read as (without a roster)
    "canvas": {
        "smithjohn_101_9001_softmax.ipynb": ("101", "smithjohn-101"),
        "müllerjosé_late_102_9002_softmax-1.ipynb": ("102", "mullerjose-102"),
    },
    "moodle folders": {
        "José Müller_5501_assignsubmission_file_/softmax.ipynb": ("5501", "jose-muller-5501"),
        "Ana Lee_5502_assignsubmission_file_/softmax.ipynb": ("5502", "ana-lee-5502"),
        "Ana Lee_5502_assignsubmission_onlinetext_/onlinetext.html": None,
    },
    "moodle flat": {
        "José Müller_5501_assignsubmission_file_softmax.ipynb": ("5501", "jose-muller-5501"),
        "Ana Lee_5502_assignsubmission_onlinetext_onlinetext.html": None,
    },
    "blackboard": {
        "Exercise 2_jdoe_attempt_2026-12-01-17-00-00_softmax.ipynb": ("jdoe", "jdoe"),
        "Exercise 2_jdoe_attempt_2026-12-01-17-00-00.txt": None,
        "Exercise 2_r.roe_attempt_2026-12-01-18-30-00_my softmax.ipynb": ("r.roe", "r.roe"),
    },
}


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, SOLVED if name.endswith(".ipynb") else "details")
    return path


@pytest.mark.parametrize("system", EXPORTS)
def test_each_export_is_read_as_the_lms_names_its_students(tmp_path: Path, system: str) -> None:
    archive = _zip(tmp_path / "export.zip", list(EXPORTS[system]))
    (tmp_path / "staging").mkdir()
    found, _ = discover(archive, "softmax", tmp_path / "staging")
    expected = sorted(v for v in EXPORTS[system].values() if v)
    assert sorted((s.lms_id, s.student_id) for s in found) == expected
    assert all(s.problem is None and s.notebook is not None for s in found)
    assert all(rel == "softmax.ipynb" for s in found for _, rel in s.files)


def test_a_student_who_handed_in_no_notebook_is_a_row_not_silence(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "canvas.zip", ["smithjohn_101_9001_softmax.ipynb",
                                             "leeana_103_9003_softmax.pdf"])
    (tmp_path / "staging").mkdir()
    found = {s.student_id: s for s in discover(archive, "softmax", tmp_path / "staging")[0]}
    assert found["smithjohn-101"].problem is None
    assert found["leeana-103"].problem == \
        "no notebook softmax.ipynb in the submission: 'softmax.pdf'"


def test_ids_are_made_safe_deterministically() -> None:
    assert lms.safe_id("ana") == "ana"
    assert lms.safe_id("José Müller") == lms.safe_id("José Müller") == "jose-muller"
    assert lms.safe_id("=HYPERLINK()") == "hyperlink"
    odd = lms.safe_id("李雷")  # nothing left of it in ASCII: a hash, still the same each time
    assert odd == lms.safe_id("李雷") != lms.safe_id("韩梅梅") and lms.SAFE_ID.match(odd)
    assert all(lms.SAFE_ID.match(lms.safe_id(t)) for t in ["", "-", "x" * 300, "a b\tc", "@x"])


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    grade_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.slow
def test_a_canvas_zip_with_a_roster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Graded under the roster's ids; a student the roster lacks is a failed row and exit 1."""
    course = corpus.write_course(tmp_path / "course")
    archive = _zip(tmp_path / "canvas.zip", [*EXPORTS["canvas"], "leeana_103_9003_softmax.ipynb"])
    roster = tmp_path / "roster.csv"
    roster.write_text("id,first_name,last_name,lms_user_id\njsmith,John,Smith,101\n"
                      "jmuller,José,Müller,102\nnoone,No,One,\n")  # as nbgrader imports it
    out = tmp_path / "out"
    argv = ["softmax", str(archive), "--out", str(out), "--course", str(course), "--jobs", "1",
            "--no-sandbox", "--roster", str(roster)]
    assert grade_cli.run(_args(*argv)) == 1
    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert set(rows) == {"jsmith", "jmuller", "leeana-103"}
    assert rows["jmuller"]["score"] == rows["jsmith"]["score"] == "3"  # written answer by hand
    assert rows["leeana-103"]["status"] == "failed"
    assert "'103' is not in the roster" in rows["leeana-103"]["reason"]
    assert "leeana-103" in (out / "report.html").read_text()


def test_usage_errors_name_each_option_and_write_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    course = corpus.write_course(tmp_path / "course")
    out = tmp_path / "new" / "out"
    bad_roster = tmp_path / "roster.csv"
    bad_roster.write_text("id,name\n1,x\n")
    argv = ["softmax", str(tmp_path / "missing.zip"), "--out", str(out), "--course",
            str(course), "--jobs", "0", "--timeout", "-5", "--roster", str(bad_roster)]
    assert grade_cli.run(_args(*argv)) == 2
    err = capsys.readouterr().err
    for words in ("submissions not found", "--jobs must be", "--timeout must be",
                  "--roster: the roster", "id and lms_user_id"):
        assert words in err, err
    assert not (tmp_path / "new").exists()

    assert grade_cli.run(_args("softmax", str(tmp_path), "--out", str(out),
                               "--course", str(tmp_path / "new"))) == 2
    assert "is not a course folder" in capsys.readouterr().err
    empty = _zip(tmp_path / "empty.zip", ["readme.txt"])
    assert grade_cli.run(_args("softmax", str(empty), "--out", str(out), "--course",
                               str(course), "--no-sandbox")) == 2
    err = capsys.readouterr().err
    assert f"no submissions found in {empty}" in err and "staging" not in err
    assert not (tmp_path / "new").exists()  # refused: no output folder left behind
