"""Grading a class: plain sequential ``nbgrader autograde`` versus ``mlmcourse grade``.

    python benchmarks/grading.py [ASSIGNMENT] [--students 40] [--large 400] [--jobs 2]
                                 [--no-nbgrader]

Generates the submissions (solution, blank release, one per misconception; cycled to the class
size) and grades them, each run in its own copy of the course folder:
(a) ``nbgrader autograde`` (sequential, one kernel per notebook), (b) ``mlmcourse grade
--jobs N``, (c) the same with ``--no-sandbox``, (d) ``mlmcourse grade`` on ``--large``
submissions, and (e) the floor: the same student cells executed by N children forked from a
warm interpreter, with no isolation and no bookkeeping; (e') the same from an interpreter
settled as the grader's zygote settles its own image (``gc.freeze`` and 2 MB pages, which make
forks cheaper). Prints wall times, the speed-up (a)/(b), the isolation overhead (b)/(c), the
marginal time per submission ((d)-(b)) / (large-students) against both floors, peak memory
(summed over the process tree) and whether (a) and (b) give every student the same score on
every auto-graded cell (``--no-nbgrader`` skips (a) and that comparison: under an emulated CPU
(a) alone takes hours). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Run a command; returns (wall seconds, peak MB summed over its process tree, exit code)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                total = 0
                for proc in tree:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, total / 1024**2)
            except psutil.Error:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    return time.monotonic() - started, peak, code


def make_class(assignment: str, students: int, workdir: Path, course: Path) -> Path:
    """``workdir/subs/<student>/<assignment>.ipynb`` for ``students`` students, from the
    release of ``course``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from cases.variants import write_submissions

    kinds = workdir / "kinds"
    write_submissions(assignment, kinds, course)
    sources = sorted(kinds.iterdir())
    subs = workdir / "subs"
    for index in range(students):
        kind = sources[index % len(sources)]
        target = subs / f"s{index:02d}-{kind.name}"
        shutil.copytree(kind, target)
    return subs


def floor(subs: Path, source: Path, jobs: int, settled: bool = False) -> float:
    """Seconds to run every submission's code cells (the source's setup cells, the student's
    solution and extra cells) in children forked from ``jobs`` warm interpreters: no sandbox,
    no tests, no results. Imports (and, if ``settled``, settling the image as the grader's
    zygote does) happen before the clock starts; settling is for good: call it last."""
    from IPython.core.inputtransformer2 import TransformerManager

    import mlmcourse.checks  # noqa: F401 - warm, as the workers are
    from mlmcourse.grading.inputs.notebook import load_source, plan_submission, read_submission

    src = load_source(source)
    for module in src.setup_modules:
        __import__(module)
    transform = TransformerManager().transform_cell
    notebooks = sorted(subs.glob("*/*.ipynb"))
    programs = []
    for path in notebooks:
        try:
            steps = plan_submission(src, read_submission(path.read_bytes()))
        except Exception:  # the grader fails these before running anything
            continue
        programs.append([transform(s.submitted_source) for s in steps if s.kind == "run"])
    if settled:
        from mlmcourse.grading.sandbox.zygote import settle_image

        settle_image()
    started = time.monotonic()
    workers = []
    for slot in range(jobs):
        pid = os.fork()
        if pid == 0:
            for cells in programs[slot::jobs]:
                child = os.fork()
                if child == 0:
                    namespace: dict = {"__name__": "__main__"}
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)
                    for code in cells:
                        try:
                            exec(code, namespace)  # the benchmark's own input
                        except BaseException:
                            pass
                    os._exit(0)
                os.waitpid(child, 0)
            os._exit(0)
        workers.append(pid)
    for pid in workers:
        os.waitpid(pid, 0)
    return (time.monotonic() - started) / max(len(programs), 1)


def release_once(workdir: Path, assignment: str, env: dict[str, str]) -> Path:
    """``workdir/released``: the course (sources and config only) with the assignment released,
    made once and copied for every run (:func:`course_copy`)."""
    released = workdir / "released"
    shutil.copytree(ROOT / "autograder", released,
                    ignore=shutil.ignore_patterns("gradebook.db*", "autograded", "submitted",
                                                  "feedback", "exchange", "release"))
    subprocess.run(["nbgrader", "generate_assignment", assignment, "--force"], cwd=released,
                   env=env, check=True, capture_output=True)
    return released


def course_copy(workdir: Path, name: str) -> Path:
    """A fresh copy of the released course (:func:`release_once`) for one run."""
    course = workdir / name
    shutil.copytree(workdir / "released", course)
    return course


def mean_seconds(out: Path) -> float:
    """Mean grading time of one submission inside a worker (fixed start-up costs excluded)."""
    seconds = [json.loads(p.read_text())["seconds"] for p in (out / "results").glob("*.json")]
    return sum(seconds) / max(len(seconds), 1)


def scores_from_gradebook(course: Path, assignment: str) -> dict[str, dict[str, float | None]]:
    """Per student, the auto score of every auto-graded code cell."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {sub.student.id: {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades
                                 if g.cell_type == "code"}
                for sub in gb.assignment_submissions(assignment)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", nargs="?", default="ex2_masking")
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--large", type=int, default=400)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-nbgrader", action="store_true",
                        help="skip (a), sequential nbgrader, and the comparison of scores: for "
                             "an emulated CPU, where (a) alone takes hours")
    args = parser.parse_args()
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}
    with tempfile.TemporaryDirectory(prefix="mlmcourse-bench-") as tmp:
        workdir = Path(tmp)
        released = release_once(workdir, args.assignment, env)
        subs = make_class(args.assignment, args.students, workdir, released)

        course_a = course_copy(workdir, "course_a")
        if not args.no_nbgrader:
            for student in subs.iterdir():
                shutil.copytree(student, course_a / "submitted" / student.name / args.assignment)
            wall_a, peak_a, _ = measure(["nbgrader", "autograde", args.assignment, "--force"],
                                        course_a, env)

        runs: dict[str, tuple] = {}
        # alternate (b) and (c) twice and keep the faster run of each: the machine is shared
        for attempt, (label, extra) in enumerate(2 * [("b", []), ("c", ["--no-sandbox"])]):
            course = course_copy(workdir, f"course_{label}{attempt}")
            out = workdir / f"out_{label}{attempt}"
            command = [sys.executable, "-m", "mlmcourse.grading.cli.grade", args.assignment,
                       str(subs), "--out", str(out), "--course", str(course),
                       "--jobs", str(args.jobs), *extra]
            run = (*measure(command, workdir, env), course, out)
            if label not in runs or run[0] < runs[label][0]:
                runs[label] = run
        large = make_class(args.assignment, args.large, workdir / "large", released)
        course = course_copy(workdir, "course_d")
        command = [sys.executable, "-m", "mlmcourse.grading.cli.grade", args.assignment,
                   str(large), "--out", str(workdir / "out_d"), "--course", str(course),
                   "--jobs", str(args.jobs)]
        wall_d, peak_d, code_d = measure(command, workdir, env)
        source = course / "source" / args.assignment / f"{args.assignment}.ipynb"
        floor_seconds = floor(large, source, args.jobs)
        settled_seconds = floor(large, source, args.jobs, settled=True)

        wall_b, peak_b, code_b, course_b, out_b = runs["b"]
        wall_c, peak_c, code_c, _, out_c = runs["c"]
        marginal = (wall_d - wall_b) / (args.large - args.students)
        print(f"{args.students} submissions of {args.assignment}, jobs={args.jobs}")
        if not args.no_nbgrader:
            print(f"(a) nbgrader autograde (sequential): {wall_a:7.1f} s  peak {peak_a:6.0f} MB")
        print(f"(b) mlmcourse grade (sandboxed):     {wall_b:7.1f} s  peak {peak_b:6.0f} MB"
              f"  exit {code_b}")
        print(f"(c) mlmcourse grade --no-sandbox:    {wall_c:7.1f} s  peak {peak_c:6.0f} MB"
              f"  exit {code_c}")
        print(f"(d) mlmcourse grade, {args.large} submissions: {wall_d:7.1f} s  peak "
              f"{peak_d:6.0f} MB  exit {code_d}")
        if not args.no_nbgrader:
            print(f"speed-up (a)/(b): {wall_a / wall_b:.2f}x   (target >= 20x)")
        print(f"isolation overhead (b)/(c): {wall_b / wall_c:.2f}x   (target <= 1.15x)")
        print(f"marginal time per submission ((d)-(b))/{args.large - args.students}: "
              f"{marginal * 1000:.0f} ms; floor (e): {floor_seconds * 1000:.0f} ms; ratio "
              f"{marginal / floor_seconds:.2f}x   (target <= 2x)")
        print(f"  against the floor from a settled image (e'): {settled_seconds * 1000:.0f} ms; "
              f"ratio {marginal / settled_seconds:.2f}x")
        per_b, per_c = mean_seconds(out_b), mean_seconds(out_c)
        print(f"mean time per submission in a worker: (b) {per_b * 1000:.0f} ms, "
              f"(c) {per_c * 1000:.0f} ms, overhead {per_b / per_c:.2f}x")

        if args.no_nbgrader:
            return
        scores_a = scores_from_gradebook(course_a, args.assignment)
        scores_b = scores_from_gradebook(course_b, args.assignment)
        differences = [(student, cell, scores_a.get(student, {}).get(cell), value)
                       for student, cells in sorted(scores_b.items())
                       for cell, value in sorted(cells.items())
                       if scores_a.get(student, {}).get(cell) != value]
        missing = sorted(set(scores_a) ^ set(scores_b))
        print(f"per-student per-cell scores identical: {not differences and not missing}")
        for student, cell, a, b in differences:
            print(f"  {student} {cell}: nbgrader {a} vs mlmcourse {b}")
        for student in missing:
            print(f"  {student}: graded by only one of the two")


if __name__ == "__main__":
    main()
