"""Autograde a whole class: every submission of ASSIGNMENT found in SUBMISSIONS, in parallel,
each in its own sandbox. Writes OUT/grades.csv, OUT/feedback/<student>/<assignment>.html,
OUT/report.html (+ charts) and the course's nbgrader gradebook.

Before any student, the source solution is graded in the same sandbox; if it does not get full
marks the run stops (an environment problem must not become students' zeros).

The sandbox needs root (namespaces, cgroups, a uid per submission). --no-sandbox grades without
any isolation: only for code you trust (e.g. your own test submissions).

--show-policy prints what every sandbox of this host gets (mounts, devices, environment,
namespaces, limits, cgroup version and folders) without grading.

Exit codes: 0 every submission graded, 1 some failed (see grades.csv), 2 usage error or the
sandbox cannot be set up, 3 the source solution does not get full marks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlmcourse.grading.config import DEFAULT_JOBS, DEFAULT_TIMEOUT, Settings
from mlmcourse.grading.course import CONFIG_NAME, find_course
from mlmcourse.grading.model import Status
from mlmcourse.grading.pipeline import GradingRefused, SolutionFails, grade_class


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlmcourse grade``."""
    parser.add_argument("assignment", nargs="?", help="assignment name, e.g. ex2_masking")
    parser.add_argument("submissions", type=Path, nargs="?",
                        help="folder of per-student folders, nbgrader submitted/ tree, or LMS zip")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where grades.csv, feedback/, report.html and results/ go "
                        "(required)")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                        help="submissions graded in parallel (default: number of CPUs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"wall-clock limit per notebook (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--course", type=Path, default=None, metavar="DIR",
                        help="the nbgrader course folder (default: the nearest folder upward "
                        f"holding {CONFIG_NAME}, else ./autograder)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="grade WITHOUT isolation: student code can read and change "
                        "everything you can; only for trusted submissions")
    parser.add_argument("--show-policy", action="store_true",
                        help="print the sandbox policy this host enforces (mounts, namespaces, "
                        "limits, cgroup version) and exit without grading")


def show_policy(timeout: float) -> int:
    """Print the effective policy of this host (reserving and releasing what a run would)."""
    from mlmcourse.grading.pipeline import release_sandbox, sandbox_policy

    try:
        policy, uid_lock = sandbox_policy(timeout)
    except GradingRefused as exc:
        print(f"mlmcourse grade: error: {exc}", file=sys.stderr)
        return 2
    try:
        print(policy.describe())
    finally:
        release_sandbox(policy, uid_lock)
    return 0


def run(args: argparse.Namespace) -> int:
    """Grade the class; returns the exit code."""
    from tqdm import tqdm

    if args.show_policy:
        return show_policy(args.timeout)
    missing = [name for name, value in (("ASSIGNMENT", args.assignment),
                                        ("SUBMISSIONS", args.submissions), ("--out", args.out))
               if value is None]
    if missing:
        print(f"mlmcourse grade: error: {', '.join(missing)} required (or --show-policy)",
              file=sys.stderr)
        return 2

    settings = Settings(args.assignment, args.submissions, args.out, find_course(args.course),
                        args.jobs, args.timeout, sandbox=not args.no_sandbox)
    if args.no_sandbox:
        print("mlmcourse grade: warning: --no-sandbox: student code runs WITHOUT isolation, "
              "with your rights; use it only for submissions you trust", file=sys.stderr)
    bar = tqdm(unit="student", desc=f"grading {args.assignment}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        rows = grade_class(settings, progress, say=bar.write)
    except GradingRefused as exc:
        bar.close()
        print(f"mlmcourse grade: error: {exc}", file=sys.stderr)
        return 2
    except SolutionFails as exc:
        bar.close()
        print(f"mlmcourse grade: error: {exc}", file=sys.stderr)
        return 3
    bar.close()
    failed = [r for r in rows if r.status == Status.FAILED]
    graded = sum(r.status != Status.NOT_SUBMITTED for r in rows)
    out = args.out.resolve()
    print(f"graded {graded} submissions of {args.assignment}: {len(failed)} failed; "
          f"see {out / 'grades.csv'} and {out / 'report.html'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="mlmcourse grade", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
