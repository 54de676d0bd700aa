"""The grader against a hostile class, by cause (``tests/hostile/trial.py``), in one run beside
honest students: honest per-cell grades equal those of a run without attackers; each attack gets
what its answers deserve or ``failed`` with a reason; the course, the submissions and the host's
writable places are unchanged; nothing of the grader's environment reaches a sandbox."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from mlmcourse.grading.cli import grade as grade_cli
from mlmcourse.grading.inputs.collect import discover
from mlmcourse.grading.inputs.lms import SAFE_ID
from mlmcourse.grading.sandbox.policy import FIRST_SANDBOX_UID

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import trial

ROOT = Path(__file__).resolve().parents[2]
HONEST = ["honest_a", "honest_b"]
WATCHED = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/run/lock"), Path("/run")]


def grade(course: Path, subs: Path, out: Path, timeout: float = 60) -> int:
    """Grade with ``--jobs 2``; the timeout leaves room for the memory scans of
    ``memory_secret`` and ``memory_control`` on a busy machine (one took over 20 s in a
    CI run)."""
    parser = argparse.ArgumentParser()
    grade_cli.add_arguments(parser)
    return grade_cli.run(parser.parse_args(
        ["softmax", str(subs), "--out", str(out), "--course", str(course), "--jobs", "2",
         "--timeout", str(timeout)]))


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def writable_places(skip: Path) -> set[str]:
    """Every name under the host's shared writable folders (pytest's own folder aside)."""
    names = set()
    for top in WATCHED:
        for directory, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not Path(directory, d).is_relative_to(skip)
                       and not d.startswith("pytest-of-")]
            names.update(os.path.join(directory, n) for n in dirs + files)
    return {n for n in names if "mlmcourse-grade-uids" not in n}


def cell_scores(out: Path, students: list[str]) -> dict[str, dict[str, str]]:
    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    return {s: {k: v for k, v in rows[s].items() if k.startswith(("test_", "why"))}
            for s in students}


@pytest.mark.slow
def test_hostile_class_by_cause(tmp_path: Path) -> None:
    secret = f"mlmcanary-{secrets.token_hex(16)}"
    os.environ["MLMCOURSE_TEST_SECRET"] = secret  # in the grader's environment only
    sleeper = subprocess.Popen(["sleep", "300"], user=FIRST_SANDBOX_UID)  # a host process that
    try:                                                                   # holds a sandbox uid
        course = trial.write_course(tmp_path / "course")
        previous_out = tmp_path / "previous"
        values = {"repo": ROOT, "course": course, "out": tmp_path / "out",
                  "previous_out": previous_out, "submissions": tmp_path / "subs",
                  "secret": secret, "secret_sha": hashlib.sha256(secret.encode()).hexdigest()}
        alone = tmp_path / "alone"
        trial.write_submissions(alone, HONEST, **values)
        assert grade(course, alone, previous_out) == 0
        baseline = cell_scores(previous_out, HONEST)

        subs = trial.write_submissions(tmp_path / "subs", list(trial.EXPECTED), **values)
        before = {"subs": digest(subs), "source": digest(course / "source"),
                  "places": writable_places(tmp_path)}
        assert grade(course, subs, tmp_path / "out") == 1
        out = tmp_path / "out"

        rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
        assert set(rows) == set(trial.EXPECTED)
        for name, (status, expected) in trial.EXPECTED.items():
            row = rows[name]
            if status == "failed":
                assert row["status"] == "failed" and re.search(expected, row["reason"]), (name, row)
            else:
                assert (row["status"], float(row["score"])) == (status, expected), (name, row)
        kinds = {name: rows[name]["failure"] for name in ("deep_metadata", "huge_reply",
                                                          "broken_setup")}
        assert kinds["deep_metadata"] == "submission" and kinds["broken_setup"] == "setup"
        assert kinds["huge_reply"] in ("reply", "timeout"), kinds
        report = (out / "report.html").read_text()
        assert all(f"<strong>{kind}</strong> (1)" in report for kind in ("submission", "setup"))
        assert cell_scores(out, HONEST) == baseline  # the neighbours changed nothing
        after = {"subs": digest(subs), "source": digest(course / "source"),
                 "places": writable_places(tmp_path)}
        new = after.pop("places") - before.pop("places")
        assert after == before
        # other programs (even other grading runs) may write there meanwhile: nothing that the
        # sandboxes wrote may stay
        assert not {n for n in new if "mlmhostile" in n}, new
        assert sleeper.poll() is None, "a sandbox killed a host process"

        # the report and every feedback page were written; student text stays inert
        assert "mathtext" not in (out / "report.html").read_text()
        for name in trial.EXPECTED:
            assert (out / "feedback" / name / "softmax.html").exists()
        autograded = (course / "autograded" / "markdown_script" / "softmax" / "softmax.ipynb")
        text = autograded.read_text()
        assert "<script" not in text and "onerror" not in text
        stored = json.loads((out / "results" / "lone_surrogate.json").read_text())
        assert set(stored["answers"]["answer_valid"]) == {"\ufffd"}  # valid text, kept as such
    finally:
        sleeper.kill()
        sleeper.wait()
        del os.environ["MLMCOURSE_TEST_SECRET"]


def test_collection_never_follows_symlinks(tmp_path: Path) -> None:
    wrap = tmp_path / "subs" / "wrapped"
    trial.write_submissions(wrap, ["honest_a"])
    instructor = trial.write_course(tmp_path / "course") / "source"
    (wrap / "evil").symlink_to(instructor / "softmax")
    (wrap / "honest_a" / "link.ipynb").symlink_to(instructor / "softmax" / "softmax.ipynb")
    (tmp_path / "subs" / "alias").symlink_to(wrap, target_is_directory=True)
    found, _ = discover(tmp_path / "subs", "softmax", tmp_path / "staging")
    assert [s.student_id for s in found] == ["honest_a"]
    assert [rel for _, rel in found[0].files] == ["softmax.ipynb"]


def test_ids_that_spreadsheets_read_as_formulas_are_never_written(tmp_path: Path) -> None:
    """A folder named like a formula is graded under a safe id of its own (never starting with
    ``=``, ``+``, ``-`` or ``@``, and never another student's), not dropped in silence."""
    subs = trial.write_submissions(tmp_path / "subs", ["honest_a"])
    for bad in ["=HYPERLINK(1)", "+1", "-1", "@SUM(1)"]:
        trial.write_submissions(subs, ["honest_a"])
        (subs / "honest_a").rename(subs / bad)
    trial.write_submissions(subs, ["honest_a"])
    found, warnings = discover(subs, "softmax", tmp_path / "staging")
    ids = [s.student_id for s in found]
    assert "honest_a" in ids and len(set(ids)) == 5 and warnings == []
    assert all(SAFE_ID.fullmatch(i) and i[0] not in "=+-@" for i in ids)


def test_no_environment_variable_switches_isolation_off() -> None:
    grading = ROOT / "mlmcourse" / "grading"
    offenders = [str(p.relative_to(ROOT)) for p in grading.rglob("*.py")
                 if "os.environ.get(" in p.read_text() or "getenv(" in p.read_text()]
    assert offenders == ["mlmcourse/grading/course.py"]  # PATH for nbgrader's alembic only


@pytest.mark.slow
def test_forbidden_shortcuts_raise_in_the_sandbox_and_name_the_question(tmp_path: Path) -> None:
    course = trial.write_course(tmp_path / "course")
    source = course / "source" / "softmax" / "softmax.ipynb"
    nb = json.loads(source.read_text())
    cell = next(c for c in nb["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "softmax_impl")
    cell["metadata"]["mlmcourse"] = {"forbidden": ["mlmcourse.distribution.softmax"]}
    source.write_text(json.dumps(nb))
    subs = trial.write_submissions(tmp_path / "subs", ["honest_a"])
    shortcut = json.loads((subs / "honest_a" / "softmax.ipynb").read_text())
    for c in shortcut["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade_id") == "softmax_impl":
            c["source"] = ("import importlib, mlmcourse.distribution as D\n"
                           "importlib.reload(D)\ndef softmax(logits):\n"
                           "    return D.softmax(logits)")
    (subs / "shortcut").mkdir()
    (subs / "shortcut" / "softmax.ipynb").write_text(json.dumps(shortcut))
    assert grade(course, subs, tmp_path / "out") == 0
    rows = {r["student_id"]: r for r in csv.DictReader((tmp_path / "out" / "grades.csv").open())}
    assert rows["honest_a"]["score"] == "4" and rows["shortcut"]["score"] == "1"
    page = (tmp_path / "out" / "feedback" / "shortcut" / "softmax.html").read_text()
    assert "mlmcourse.distribution.softmax may not be used here: question softmax_impl" in page
