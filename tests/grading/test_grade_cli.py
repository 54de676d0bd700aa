"""``mlmcourse grade``: usage errors, submission layouts, resuming after the grader is killed."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlmcourse.grading.cli import grade as grade_cli
from mlmcourse.grading.inputs.collect import UsageError, discover
from mlmcourse.grading.model import CellResult, Graded, Result, Status

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    grade_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_usage_errors_exit_2_with_a_clear_message(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    course = corpus.write_course(tmp_path / "course")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    out = str(tmp_path / "out")
    cases = {
        ("nope", str(tmp_path / "empty")): "no assignment 'nope'",
        ("softmax", str(tmp_path / "empty")): "no submissions found",
        ("softmax", str(tmp_path / "missing")): "submissions not found",
        ("softmax", str(tmp_path / "broken.zip")): "neither a folder nor a readable zip",
    }
    for (assignment, subs), message in cases.items():
        assert grade_cli.run(_args(assignment, subs, "--out", out, "--course", str(course))) == 2
        assert message in capsys.readouterr().err


@pytest.mark.usefixtures("needs_root")
def test_show_policy_prints_what_every_sandbox_gets(capsys: pytest.CaptureFixture[str]) -> None:
    """``--show-policy`` needs no assignment and grades nothing: it prints every mount of the
    policy this host builds, the namespaces, the limits and the cgroups, then releases them."""
    from mlmcourse.grading.sandbox.policy import Limits, build_policy

    assert grade_cli.run(_args("--show-policy")) == 0
    shown = capsys.readouterr().out
    for mount in build_policy(0, (), Limits()).mounts:
        assert mount.target in shown
    assert "namespaces       pid, mount, network, ipc, uts" in shown
    assert "memory_bytes" in shown and "cgroups" in shown


def test_grading_needs_an_assignment_submissions_and_out(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert grade_cli.run(_args("softmax")) == 2
    assert "SUBMISSIONS, --out required" in capsys.readouterr().err


def _notebook(path: Path, text: str = "{}") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_layouts_folder_nbgrader_tree_and_lms_zip(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    _notebook(folder / "ana" / "softmax.ipynb")
    _notebook(folder / "ana" / "data.csv", "1,2")
    _notebook(folder / "bo" / "Softmax-final.ipynb")
    _notebook(folder / "cy" / "notes.txt")
    found = {s.student_id: s for s in discover(folder, "softmax", tmp_path / "s1")[0]}
    assert found["ana"].problem is None
    assert sorted(rel for _, rel in found["ana"].files) == ["data.csv", "softmax.ipynb"]
    assert "misnamed" in found["bo"].problem
    assert "no notebook softmax.ipynb" in found["cy"].problem

    tree = tmp_path / "course" / "submitted"
    _notebook(tree / "dee" / "softmax" / "softmax.ipynb")
    _notebook(tree / "gus" / "other_assignment" / "other_assignment.ipynb")  # not this one
    found = discover(tmp_path / "course", "softmax", tmp_path / "s2")[0]
    assert [(s.student_id, s.problem) for s in found] == [("dee", None)]

    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("eve_attempt_2024-01-01.ipynb", "{}")
        zf.writestr("fay_softmax.ipynb", "{}")
        zf.writestr("../escape.ipynb", "{}")
    staging = tmp_path / "s3"
    staging.mkdir()
    found = discover(archive, "softmax", staging)[0]
    assert [(s.student_id, s.problem) for s in found] == [("eve", None), ("fay", None)]
    assert [rel for _, rel in found[0].files] == ["softmax.ipynb"]
    assert not (tmp_path / "escape.ipynb").exists()
    with pytest.raises(UsageError):
        discover(Path(tempfile.mkdtemp(dir=tmp_path)), "softmax", tmp_path / "s4")  # empty


def _session_gone(session: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-s", str(session), "-o", "pid=,args="], capture_output=True,
                            text=True).stdout.strip()
        if not ps:
            return True
        time.sleep(0.2)
    print(ps)
    return False


def _grades(out: Path) -> str:
    return (out / "grades.csv").read_text()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_grades(tmp_path: Path) -> None:
    # the smallest class with every status: graded (full marks, and zero for a hostile answer),
    # needs_manual, failed (kernel exited, timeout); infinite_loop keeps a worker busy for the
    # whole timeout, so the kill, once two results are stored, lands mid-run (the timeout
    # leaves time for the grader to import nbgrader and store the first batch, even on a busy
    # machine); honest answers take well under a second
    names = ["honest_1", "always_equal", "os_exit", "infinite_loop", "honest_2"]
    runs = {}
    for label in ("uninterrupted", "killed"):
        course = corpus.write_course(tmp_path / label / "course")
        subs, out = tmp_path / label / "subs", tmp_path / label / "out"
        corpus.write_submissions(subs, names, course=course, out=out, submissions=subs)
        command = [sys.executable, "-m", "mlmcourse.grading.cli.grade", "softmax", str(subs),
                   "--out", str(out), "--course", str(course), "--jobs", "2", "--timeout", "12"]
        if label == "killed":
            grader = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
            results = out / "results"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 2:
                time.sleep(0.05)
            os.kill(grader.pid, signal.SIGKILL)
            grader.wait()
            done = len(list(results.glob("*.json")))
            assert 0 < done < len(names), "the kill should land mid-run"
            assert _session_gone(grader.pid), "workers and zygotes exit with the grader"
        code = subprocess.run(command, stderr=subprocess.DEVNULL, timeout=300).returncode
        assert code == 1  # os_exit and infinite_loop fail
        runs[label] = (_grades(out), {p.name: json.loads(p.read_text())["status"]
                                      for p in (out / "results").glob("*.json")})
    assert runs["killed"] == runs["uninterrupted"]


def _ana_answers_in_writing(tmp_path: Path, *options: str
                            ) -> tuple[Path, dict, dict, tuple[str, ...]]:
    """A course, and ana's solved notebook (handed in) with an answer to the written question
    ``why``: the course, the notebook, its written cell and the grading command's arguments."""
    course = corpus.write_course(tmp_path / "course")
    nb = corpus.solved(corpus.source_notebook())
    written = next(c for c in nb["cells"] if c["metadata"]["nbgrader"].get("grade_id") == "why")
    written["source"] = "Subtracting the maximum keeps exp from overflowing."
    _notebook(tmp_path / "subs" / "ana" / "softmax.ipynb", json.dumps(nb))
    argv = ("softmax", str(tmp_path / "subs"), "--out", str(tmp_path / "out"),
            "--course", str(course), "--jobs", "1", *options)
    return course, nb, written, argv


@pytest.mark.slow
def test_scores_given_by_hand_in_the_gradebook_complete_a_re_run(tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    course, _, _, argv = _ana_answers_in_writing(tmp_path)

    assert grade_cli.run(_args(*argv)) == 0
    assert "ana,needs_manual,written answers to grade by hand,3,4," in _grades(tmp_path / "out")

    url = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(url) as gb:  # what formgrader does when the instructor scores the answer
        grade = gb.find_grade("why", "softmax", "softmax", "ana")
        grade.manual_score = 0.5
        grade.needs_manual_grade = False
        gb.db.commit()

    assert grade_cli.run(_args(*argv)) == 0
    assert "ana,graded,,3.5,4,2,1,0.5" in _grades(tmp_path / "out")
    with Gradebook(url) as gb:
        grade = gb.find_grade("why", "softmax", "softmax", "ana")
        assert (grade.manual_score, grade.needs_manual_grade) == (0.5, False)


@pytest.mark.slow
def test_a_resubmission_under_a_hand_grade_waits_for_the_instructor(tmp_path: Path) -> None:
    """As ``nbgrader autograde`` does: a cell scored by hand in a notebook handed in again is
    flagged ``needs_manual_grade`` (its score kept), the row and the feedback wait for the
    instructor, re-runs keep the flag, and saving a score in formgrader clears it."""
    from nbgrader.api import Gradebook

    course, nb, written, argv = _ana_answers_in_writing(tmp_path, "--no-sandbox")
    url = f"sqlite:///{course / 'gradebook.db'}"

    def give(score: float) -> None:  # what formgrader does when the instructor saves a score
        with Gradebook(url) as gb:
            grade = gb.find_grade("why", "softmax", "softmax", "ana")
            grade.manual_score, grade.needs_manual_grade = score, False
            gb.db.commit()

    def flag() -> tuple[float | None, bool]:
        with Gradebook(url) as gb:
            grade = gb.find_grade("why", "softmax", "softmax", "ana")
            return grade.manual_score, grade.needs_manual_grade

    assert grade_cli.run(_args(*argv)) == 0
    give(0.5)
    assert grade_cli.run(_args(*argv)) == 0
    assert "ana,graded,,3.5,4," in _grades(tmp_path / "out") and flag() == (0.5, False)

    written["source"] = "Because softmax is invariant to shifts, and exp would overflow."
    _notebook(tmp_path / "subs" / "ana" / "softmax.ipynb", json.dumps(nb))  # handed in again
    for _ in range(2):  # flagged, and still flagged on a re-run
        assert grade_cli.run(_args(*argv)) == 0
        assert flag() == (0.5, True)
        assert "ana,needs_manual,handed in again after it was graded by hand" in \
            _grades(tmp_path / "out")
        page = (tmp_path / "out" / "feedback" / "ana" / "softmax.html").read_text()
        assert "waiting for the instructor" in page and "3 /" in page

    give(1.0)
    assert grade_cli.run(_args(*argv)) == 0
    assert "ana,graded,,4,4," in _grades(tmp_path / "out") and flag() == (1.0, False)


@pytest.mark.slow
def test_a_source_solution_short_of_full_marks_stops_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An environment problem (a setup cell that cannot run in the sandbox) or a test the
    instructor's own solution fails: exit 3, a message naming the cell and its error, and no
    student recorded anywhere (results, gradebook, feedback)."""
    broken = {
        "setup": ("import numpy as np\nimport not_installed_anywhere",
                  "ModuleNotFoundError"),
        "test_softmax": ('assert softmax(torch.tensor([1.0, 2.0])).sum() == 2, "sums to two"',
                         "test_softmax: AssertionError: sums to two"),
    }
    for grade_id, (source, message) in broken.items():
        course = corpus.write_course(tmp_path / grade_id / "course")
        path = course / "source" / "softmax" / "softmax.ipynb"
        nb = json.loads(path.read_text())
        next(c for c in nb["cells"] if c["id"] == grade_id)["source"] = source
        path.write_text(json.dumps(nb))
        _notebook(tmp_path / grade_id / "subs" / "ana" / "softmax.ipynb",
                  json.dumps(corpus.solved(corpus.source_notebook())))
        out = tmp_path / grade_id / "out"
        argv = ("softmax", str(tmp_path / grade_id / "subs"), "--out", str(out),
                "--course", str(course), "--jobs", "2")
        assert grade_cli.run(_args(*argv)) == 3
        error = capsys.readouterr().err
        assert "source solution of softmax does not get full marks" in error
        assert message in error and (grade_id in error)
        assert not list((out / "results").glob("*.json")) and not (out / "feedback").exists()
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            assert not gb.students


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    """Killed while it holds two tasks (the one it grades and the next), a worker's current
    submission is ``failed`` with the reason and the next is graded by its replacement."""
    import threading

    from mlmcourse.grading import pipeline
    from mlmcourse.grading.config import QUEUED
    from mlmcourse.grading.workers.pool import WorkerPool

    course = corpus.write_course(tmp_path / "course")
    subs = corpus.write_submissions(tmp_path / "subs", ["honest_1", "honest_2", "always_equal"])
    settings = pipeline.Settings("softmax", subs, tmp_path / "out", course, 1, 60.0,
                                 sandbox=False)
    run = pipeline.prepare(settings)
    try:
        _, tasks = pipeline.plan(run, pipeline.collect(run))
        pool = WorkerPool(1, run.source.warm_modules, run.workroot, run.policy)
        try:
            stream = pool.run(tasks)
            (worker,) = pool.workers
            assert len(worker.queued) == QUEUED == 2
            first = worker.queued[0].student_id

            def kill_when_started() -> None:
                while worker.pid is None:
                    time.sleep(0.01)
                os.kill(worker.pid, signal.SIGKILL)

            killer = threading.Thread(target=kill_when_started)
            killer.start()
            results = {g.result.student_id: g.result for g in stream}
            killer.join()
        finally:
            pool.close()
    finally:
        pipeline.finish(run)
    assert set(results) == {"honest_1", "honest_2", "always_equal"}
    assert results[first].status == "failed" and "worker died" in results[first].reason
    others = [r for s, r in results.items() if s != first]
    assert all(r.status != "failed" for r in others), [(r.student_id, r.reason) for r in others]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.usefixtures("needs_root")
def test_a_lost_zygote_fails_only_the_submission_it_was_running(tmp_path: Path) -> None:
    """A slot's zygote shares its cgroup with the sandbox it runs, so a sandbox's memory could
    get it killed: then that submission is ``failed`` (the slot's memory limit named), and the
    next submissions are graded by a fresh worker with a fresh zygote."""
    import threading

    from mlmcourse.grading import pipeline
    from mlmcourse.grading.workers.pool import WorkerPool

    course = corpus.write_course(tmp_path / "course")
    subs = corpus.write_submissions(tmp_path / "subs", ["honest_1", "honest_2"])
    sleeper = corpus._insert(corpus.solved(corpus.source_notebook()), "test_softmax",
                             "import time\ntime.sleep(3)")
    _notebook(subs / "a_sleeper" / "softmax.ipynb", json.dumps(sleeper))
    settings = pipeline.Settings("softmax", subs, tmp_path / "out", course, 1, 60.0)
    run = pipeline.prepare(settings)
    try:
        _, tasks = pipeline.plan(run, pipeline.collect(run))
        assert tasks[0].student_id == "a_sleeper"
        pool = WorkerPool(1, run.source.warm_modules, run.workroot, run.policy)
        try:
            stream = pool.run(tasks)
            (worker,) = pool.workers

            def kill_zygote_while_a_sandbox_runs() -> None:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    for zygote in _children(worker.pid or 0):
                        if _children(zygote):  # the sleeper's sandbox is running
                            time.sleep(0.5)
                            os.kill(zygote, signal.SIGKILL)
                            return
                    time.sleep(0.02)

            killer = threading.Thread(target=kill_zygote_while_a_sandbox_runs)
            killer.start()
            results = {g.result.student_id: g.result for g in stream}
            killer.join()
            assert pool.workers and pool.workers[0] is not worker, "a new worker took over"
        finally:
            pool.close()
    finally:
        pipeline.finish(run)
    assert results["a_sleeper"].status == "failed"
    assert "job slot was killed" in results["a_sleeper"].reason
    assert [results[s].status for s in ("honest_1", "honest_2")] == ["graded", "needs_manual"]


def _result(student: str, points: float = 1.0) -> Graded:
    return Graded(Result(student, "softmax", 1.0, status=Status.GRADED, score=points,
                         cells={"test_softmax": CellResult("test", 1.0, points, points > 0)}))


@pytest.mark.parametrize("solution_at", [0, 2, 4])
def test_every_result_reaches_the_recorder_wherever_the_solution_arrives(
        solution_at: int) -> None:
    """Results reach :func:`pipeline.record` in batches of those that have arrived; none is
    lost whether the source solution's result comes first, in between or last."""
    import queue

    from mlmcourse.grading import pipeline
    from mlmcourse.grading.workers.pool import ResultStream

    students = [_result(f"s{i}") for i in range(4)]
    arrivals = [*students[:solution_at], _result(pipeline.SOLUTION_ID), *students[solution_at:]]
    results: queue.SimpleQueue = queue.SimpleQueue()
    for result in [*arrivals, None]:
        results.put(result)
    run = SimpleNamespace(source=SimpleNamespace(max_score=1.0),
                          settings=SimpleNamespace(assignment="softmax"))
    batches = list(pipeline.execute(run, ResultStream(results)))
    assert [g.result.student_id for batch in batches for g in batch] == \
        [s.result.student_id for s in students]
    assert all(batches)
    assert pipeline.SOLUTION_ID not in {g.result.student_id for b in batches for g in b}


def test_a_batch_that_cannot_be_stored_whole_is_stored_student_by_student(
        tmp_path: Path) -> None:
    """One result the trusted side cannot store (here, text that is not valid Unicode) fails
    only its own student: the others of its batch are in the gradebook and the result store."""
    from nbgrader.api import Gradebook

    from mlmcourse.grading import pipeline
    from mlmcourse.grading.outputs import gradebook

    course = corpus.write_course(tmp_path / "course")
    settings = pipeline.Settings("softmax", tmp_path / "subs", tmp_path / "out", course, 1,
                                 60.0, sandbox=False)
    (tmp_path / "subs").mkdir()
    run = pipeline.prepare(settings)
    try:
        gb = gradebook.open_gradebook(course)
        gradebook.ensure_assignment(gb, course, "softmax", run.source_path)
        run.layout = gradebook.layout(gb, "softmax")
        broken = _result("bea")
        broken.result.cells["test_softmax"].message = "\ud800"  # a lone surrogate
        recorded = pipeline.record(run, gb, [_result("ana"), broken, _result("cem", 0.0)])
        gb.close()
    finally:
        pipeline.finish(run)
    assert [(r.student_id, r.status) for r in recorded] == [
        ("ana", Status.GRADED), ("bea", Status.FAILED), ("cem", Status.GRADED)]
    assert "could not record" in recorded[1].reason
    assert sorted(p.stem for p in (tmp_path / "out" / "results").glob("*.json")) == ["ana", "cem"]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as book:
        scores = {s.student.id: s.score for s in book.assignment_submissions("softmax")}
    assert scores == {"ana": 1.0, "bea": 0.0, "cem": 0.0}


def _sigint_as_in_a_terminal() -> None:
    """Give the child SIGINT's default action, as a terminal's shell does for a command it
    starts. A CI runner may start the tests with SIGINT ignored; a child inherits that, and
    Python then never raises KeyboardInterrupt (as a command started with ``&`` by a script
    keeps running through Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_ends_a_run_with_a_message(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the grader) ends the run with exit code 130 and says what is kept and
    how to go on, never with a traceback; its workers end with it."""
    course = corpus.write_course(tmp_path / "course")
    corpus.write_submissions(tmp_path / "subs", ["honest_1", "infinite_loop"])
    stored = tmp_path / "out" / "results" / "honest_1.json"
    grader = subprocess.Popen(
        [sys.executable, "-m", "mlmcourse", "grade", "softmax", str(tmp_path / "subs"),
         "--out", str(tmp_path / "out"), "--course", str(course), "--jobs", "1",
         "--no-sandbox", "--timeout", "300"], stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.monotonic() + 300
    while not stored.exists():  # honest_1 is graded; infinite_loop is running
        assert grader.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    grader.send_signal(signal.SIGINT)
    assert grader.wait(timeout=120) == 130
    err = grader.stderr.read()
    assert "interrupted; the results stored so far are kept in" in err
    assert "Traceback" not in err
    assert _session_gone(grader.pid)
