"""What an instructor relies on around grading: ``mlmcourse init``, submission times and
lateness, scores and comments given in formgrader reaching the feedback, numeric answers in the
report."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import html
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from mlmcourse.cli import main
from mlmcourse.grading.authoring.template import builtin_assignments
from mlmcourse.grading.cli import grade as grade_cli
from mlmcourse.grading.course import assignments, find_course
from mlmcourse.grading.inputs.collect import discover
from mlmcourse.grading.model import CellResult, Result, Status
from mlmcourse.grading.outputs import feedback, report
from mlmcourse.grading.pipeline import with_manual_scores

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus


def test_init_creates_a_course_folder_the_commands_find(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    course = tmp_path / "fall"
    assert main(["init", str(course)]) == 0
    assert "next: cd" in capsys.readouterr().out
    assert assignments(course) == builtin_assignments()
    assert len(builtin_assignments()) == 6
    assert 'course_id = "fall"' in (course / "nbgrader_config.py").read_text()
    assert (course / "README.md").is_file()
    deep = course / "submitted" / "ana"
    deep.mkdir(parents=True)
    assert find_course(start=deep) == course.resolve()
    assert main(["init", str(course)]) == 2  # never over an existing course
    assert "already" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "x"), "--course-id=bad id"]) == 2


def test_init_makes_the_course_private_and_the_exchange_outside_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Solutions, hidden tests, parameters.json and the gradebook are the instructor's alone (or
    the group's given by --group); the exchange is the hub's, or --exchange outside the course."""
    import grp
    import stat

    course = tmp_path / "fall"
    assert main(["init", str(course)]) == 0
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [course, *course.rglob("*")]}
    assert {m for p, m in modes.items() if p.is_dir()} == {0o700}
    assert {m for p, m in modes.items() if p.is_file()} == {0o600}
    assert "\nc.Exchange.root" not in (course / "nbgrader_config.py").read_text()

    shared = tmp_path / "shared"
    group = grp.getgrgid(os.getgid()).gr_name
    exchange = tmp_path / "exchange"
    assert main(["init", str(shared), "--group", group, "--exchange", str(exchange)]) == 0
    assert stat.S_IMODE(shared.stat().st_mode) == 0o2750
    assert stat.S_IMODE((shared / "parameters.json").stat().st_mode) == 0o640
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", str(shared)).load_config()
    assert config.Exchange.root == str(exchange)
    capsys.readouterr()
    cases = {("--exchange", str(tmp_path / "c" / "exchange")): "inside the course folder",
             ("--group", "no-such-group-here"): "no group 'no-such-group-here'"}
    for options, message in cases.items():
        assert main(["init", str(tmp_path / "c"), *options]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "c").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    assert main(["init", str(tmp_path / "mine")]) == 2  # never makes files of yours private
    assert "not empty" in capsys.readouterr().err


def test_release_an_assignment_of_the_instructors_own(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    course = tmp_path / "fall"
    assert main(["init", str(course)]) == 0
    corpus.write_course(course)  # source/softmax/softmax.ipynb
    monkeypatch.chdir(course / "source")
    assert main(["release", "--quiet", "softmax"]) == 0
    released = (course / "release" / "softmax" / "softmax.ipynb").read_text()
    assert "BEGIN SOLUTION" not in released and "BEGIN HIDDEN" not in released
    assert not (course / "exchange").exists()  # the exchange is never inside the course


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_submission_times_from_timestamp_txt_and_zip_entries(tmp_path: Path) -> None:
    tree = tmp_path / "course" / "submitted"
    _write(tree / "ana" / "softmax" / "softmax.ipynb", "{}")
    _write(tree / "ana" / "softmax" / "timestamp.txt", "2026-11-30 18:30:00.123456 UTC")
    _write(tree / "bo" / "softmax" / "softmax.ipynb", "{}")
    _write(tree / "bo" / "softmax" / "timestamp.txt", "2026-11-30T10:00:00-05:00")
    _write(tree / "cy" / "softmax" / "softmax.ipynb", "{}")
    _write(tree / "dee" / "softmax" / "softmax.ipynb", "{}")
    _write(tree / "dee" / "softmax" / "timestamp.txt", "not a time")
    found, warnings = discover(tmp_path / "course", "softmax", tmp_path / "s1")
    times = {s.student_id: s.submitted_at for s in found}
    assert times == {"ana": dt.datetime(2026, 11, 30, 18, 30, 0, 123456),
                     "bo": dt.datetime(2026, 11, 30, 15, 0), "cy": None, "dee": None}
    assert any("dee" in w and "timestamp.txt" in w for w in warnings)
    assert all(rel == "softmax.ipynb" for s in found for _, rel in s.files)

    # nobody handed in another assignment yet: nothing to grade, not a folder of failures
    assert discover(tree, "other", tmp_path / "s3") == ([], [])

    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("eve_softmax.ipynb", (2026, 12, 1, 9, 15, 0)), "{}")
    (tmp_path / "s2").mkdir()
    (eve,), _ = discover(archive, "softmax", tmp_path / "s2")
    assert eve.submitted_at == dt.datetime(2026, 12, 1, 9, 15)


def _result() -> Result:
    cells = {"test_softmax": CellResult("test", 2, 2.0, True),
             "test_answer": CellResult("test", 1, 0.0, False, "wrong <b>letter</b>"),
             "why": CellResult("written", 1, 0.0, None, "no answer written")}
    return Result("ana", "softmax", 4, Status.GRADED, score=2.0, cells=cells)


def test_scores_and_comments_from_formgrader_reach_the_feedback() -> None:
    result = with_manual_scores(_result(), {"why": 0.5, "test_answer": 1.0},
                                {"why": "Good: overflow.", "softmax_impl": "Neat <code>",
                                 "test_answer": "I accept C too."})
    assert result.score == 3.5 and result.status == Status.GRADED
    page = feedback.render(result, "softmax")
    assert "no answer" not in page
    assert "0.5 / 1" in page and "Good: overflow." in page
    assert "Neat <code>" in page and "softmax_impl" in page  # Markdown: HTML tags allowed
    assert "I accept C too." in page and "score set by hand" in page

    pending = _result()
    pending.cells["why"] = CellResult("written", 1, None, None, "to be graded by hand")
    pending.status = Status.NEEDS_MANUAL
    still = with_manual_scores(pending, {}, {"why": "see me"})
    assert still.status == Status.NEEDS_MANUAL and "see me" in feedback.render(still, "softmax")


def test_lateness_in_feedback_and_grades_csv(tmp_path: Path) -> None:
    late = _result()
    late.submitted_at, late.seconds_late, late.late_penalty = "2026-12-01T18:00:00", 3900, 2.0
    on_time = _result()
    on_time.student_id, on_time.submitted_at = "bo", "2026-11-30T10:00:00"
    assert "1 h 5 min late" in feedback.render(late, "softmax")
    assert "final score 0 / 4" in feedback.render(late, "softmax")
    assert "on time" in feedback.render(on_time, "softmax")
    report.write_csv(tmp_path, ["test_softmax", "test_answer", "why"], [late, on_time])
    rows = {r["student_id"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert (rows["ana"]["seconds_late"], rows["ana"]["late_penalty"],
            rows["ana"]["final_score"]) == ("3900", "2", "0")
    assert (rows["bo"]["seconds_late"], rows["bo"]["final_score"]) == ("0", "2")


def test_the_feedback_page_reads_on_a_phone_with_the_notebooks_numbers() -> None:
    """A viewport; each question numbered as in the notebook; for late work, the score after
    the penalty in the first line."""
    from mlmcourse.grading.inputs.notebook import load_source

    source = load_source(Path(__file__).resolve().parents[2] / "autograder" / "source"
                         / "ex4_cross_entropy" / "ex4_cross_entropy.ipynb")
    numbers = feedback.question_numbers(source.cells)
    assert numbers == {"test_token_cross_entropy": "1",
                       "test_token_cross_entropy_large_logits": "1", "test_cross_entropy": "2",
                       "test_answer_lowest_loss": "3a", "test_answer_loss": "3b",
                       "test_answer_interpretation": "3c", "written_one_hot": "4"}
    late = _result()
    late.submitted_at, late.seconds_late, late.late_penalty = "2026-12-01T18:00:00", 3900, 2.0
    page = feedback.render(late, "softmax", {"test_softmax": "1", "why": "2b"})
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<td>2b <small>why</small></td>" in page
    first = page.split("</h1>", 1)[1].split("</p>", 1)[0]
    assert "Score: 0 / 4 after the late penalty of 2 points (2 before it)" in first


def test_comments_are_rendered_as_markdown_safely() -> None:
    """Formgrader's comment box says Markdown: the feedback renders it, keeping nothing that
    runs or leads to a script."""
    result = with_manual_scores(_result(), {}, {
        "why": "**Good**: see [the lesson](https://example.org/4) <script>alert(1)</script>",
        "test_answer": "[click](javascript:alert(1)) <img src=x onerror=alert(1)>"})
    page = feedback.render(result, "softmax")
    assert "<strong>Good</strong>" in page and 'href="https://example.org/4"' in page
    for unsafe in ("<script", "javascript:", "onerror", "<img"):
        assert unsafe not in page.lower()


def test_numeric_answers_are_summarised_as_numbers(tmp_path: Path) -> None:
    rows = []
    for i, value in enumerate([0.51, 0.5108, 0.6, "", None, "about 0.5", 0.51]):
        r = _result()
        r.student_id = f"s{i}"
        r.answers = {"answer_loss_06": value, "answer_valid": "B"}
        r.cells["test_answer_loss_06"] = CellResult("test", 1, 1.0, value in (0.51, 0.5108))
        rows.append(r)
    assert report.numeric_answer_names(rows) == ["answer_loss_06"]
    summary = report.numeric_summary("answer_loss_06", rows)
    assert (summary["answered"], summary["blank"], summary["not_a_number"]) == (4, 2, 1)
    assert summary["median"] == pytest.approx(0.5104)
    assert summary["within"] == pytest.approx(300 / 7)
    report.write_report(tmp_path, "ex4", ["test_answer_loss_06"], rows)
    page = (tmp_path / "report.html").read_text()
    assert "Numeric answers" in page and "43%" in page
    chart = (tmp_path / "numeric_answer_1.svg").read_text()
    assert "answer_loss_06" in chart and chart.count("<rect") == 3  # a bin per distinct value
    assert 'src="numeric_answer_1.svg"' in page


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    grade_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.slow
def test_a_late_and_a_hand_graded_student_as_nbgrader_sees_them(tmp_path: Path) -> None:
    """Due date in the gradebook, timestamp.txt from nbgrader's exchange, penalty 'zero'; a
    written answer and a comment given in formgrader; then the same grade command again."""
    from mlmcourse.grading.outputs.gradebook import open_gradebook

    course = corpus.write_course(tmp_path / "course")
    _write(course / "nbgrader_config.py", 'c = get_config()\nc.CourseDirectory.course_id = "t"\n'
           'c.LateSubmissionPlugin.penalty_method = "zero"\n')
    nb = corpus.solved(corpus.source_notebook())
    next(c for c in nb["cells"] if c["id"] == "why")["source"] = "It keeps exp finite."
    for student, stamp in [("ana", "2026-11-30 17:00:00 UTC"), ("bo", "2026-12-02 09:00:00 UTC")]:
        _write(course / "submitted" / student / "softmax" / "softmax.ipynb", json.dumps(nb))
        _write(course / "submitted" / student / "softmax" / "timestamp.txt", stamp)
    with open_gradebook(course) as gb:  # nbgrader db assignment add softmax --duedate=...
        gb.update_or_create_assignment("softmax", duedate=dt.datetime(2026, 12, 1, 12))
    argv = ("softmax", str(course / "submitted"), "--out", str(tmp_path / "out"),
            "--course", str(course), "--jobs", "1")
    assert grade_cli.run(_args(*argv)) == 0
    with open_gradebook(course) as gb:  # what the instructor does in formgrader
        for student in ("ana", "bo"):
            grade = gb.find_grade("why", "softmax", "softmax", student)
            grade.manual_score, grade.needs_manual_grade = 1.0, False
        gb.find_comment("why", "softmax", "softmax", "ana").manual_comment = "Exactly right."
        gb.db.commit()
    assert grade_cli.run(_args(*argv)) == 0

    rows = {r["student_id"]: r for r in csv.DictReader((tmp_path / "out" / "grades.csv").open())}
    assert (rows["ana"]["status"], rows["ana"]["score"], rows["ana"]["late_penalty"]) == \
        ("graded", "4", "0")
    assert (rows["bo"]["seconds_late"], rows["bo"]["late_penalty"], rows["bo"]["final_score"]) \
        == (str(21 * 3600), "4", "0")
    page = (tmp_path / "out" / "feedback" / "ana" / "softmax.html").read_text()
    assert "Exactly right." in page and "on time" in page and "no answer" not in page
    assert "21 h 0 min late" in (tmp_path / "out" / "feedback" / "bo" / "softmax.html").read_text()
    with open_gradebook(course) as gb:  # what formgrader and nbgrader export read
        ana, bo = (gb.find_submission("softmax", s) for s in ("ana", "bo"))
        assert (ana.total_seconds_late, ana.late_submission_penalty, ana.score) == (0, 0, 4)
        assert (bo.total_seconds_late, bo.late_submission_penalty) == (21 * 3600, 4)
    stamp = (course / "autograded" / "bo" / "softmax" / "timestamp.txt").read_text()
    assert stamp.startswith("2026-12-02 09:00:00")


def test_python_dash_m_mlmcourse_where_the_script_is_not_on_path(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "mlmcourse", "check", "missing.ipynb"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 2 and "cannot read missing.ipynb" in done.stderr


@pytest.mark.slow
def test_autograded_notebooks_show_why_a_test_failed(tmp_path: Path) -> None:
    """As nbgrader's own: the failing test cell carries an error output with the exception's
    type, its message once, and a traceback naming the test's line; code cells are numbered
    1, 2, 3, ... as a kernel running the notebook from the top would number them."""
    course = corpus.write_course(tmp_path / "course")
    nb = corpus.solved(corpus.source_notebook())
    answer = next(c for c in nb["cells"] if c["id"] == "answer_cell")
    answer["source"] = 'answer_valid = "A"'
    _write(course / "submitted" / "ana" / "softmax" / "softmax.ipynb", json.dumps(nb))
    argv = ("softmax", str(course / "submitted"), "--out", str(tmp_path / "out"),
            "--course", str(course), "--jobs", "1")
    assert grade_cli.run(_args(*argv)) == 0

    graded = json.loads((course / "autograded" / "ana" / "softmax" / "softmax.ipynb").read_text())
    code = [c for c in graded["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    test = next(c for c in code if c["metadata"]["nbgrader"]["grade_id"] == "test_answer")
    (error,) = [o for o in test["outputs"] if o["output_type"] == "error"]
    assert error["ename"] == "Misconception"
    assert error["evalue"].startswith("[dropped-minus-sign]")
    assert "Misconception: Misconception" not in json.dumps(error)
    assert error["traceback"][-1] == f"Misconception: {error['evalue']}"
    assert any('line 4: raise Misconception("dropped-minus-sign")' in line
               for line in error["traceback"])
    passed = next(c for c in code if c["metadata"]["nbgrader"]["grade_id"] == "test_softmax")
    assert not [o for o in passed["outputs"] if o["output_type"] == "error"]


def test_the_repositorys_course_is_configured_as_init_makes_one() -> None:
    """``autograder/`` is one course folder like any other: its nbgrader_config.py is the one
    ``mlmcourse init --course-id mlmcourse`` writes (one configuration to maintain)."""
    from mlmcourse.grading.authoring.template import PLACEHOLDER, TEMPLATE

    root = Path(__file__).resolve().parents[2]
    made = (TEMPLATE / "nbgrader_config.py").read_text().replace(PLACEHOLDER, "mlmcourse")
    assert (root / "autograder" / "nbgrader_config.py").read_text() == made


def test_the_engine_explains_misconceptions_with_the_course_sentences_it_is_given() -> None:
    """The catalogue is the course's (``mlmcourse/data/misconceptions.json``, read by
    :mod:`mlmcourse.checks`): the grader holds none, and writes the sentence it is given."""
    from mlmcourse import checks

    result = _result()
    result.cells["test_answer"].misconception = "dropped-minus-sign"
    explained = feedback.render(result, "softmax", explain=checks.explain)
    assert html.escape(checks.CATALOGUE["dropped-minus-sign"]) in explained
    assert "wrong &lt;b&gt;letter&lt;/b&gt;" in feedback.render(result, "softmax")
    grading = Path(checks.__file__).parent / "grading"
    assert not [p for p in grading.rglob("*.py") if "CATALOGUE" in p.read_text()]
