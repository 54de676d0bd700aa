"""Autograde a whole class: every submission of ASSIGNMENT found in SUBMISSIONS, in parallel,
each in its own sandbox. Writes OUT/grades.csv, OUT/feedback/<student>/<assignment>.html,
OUT/report.html (+ charts) and the course's nbgrader gradebook.

Before any student, the source solution is graded in the same sandbox; if it does not get full
marks the run stops (an environment problem must not become students' zeros).

The sandbox needs root (namespaces, cgroups, a uid per submission). --no-sandbox grades without
any isolation: only for code you trust (e.g. your own test submissions).

--show-policy prints what every sandbox of this host gets (mounts, devices, environment,
namespaces, system calls, limits, cgroup version and folders) without grading.

With --roster CSV (columns lms_id and student_id), the students of an LMS zip are graded under
the ids of the course's gradebook; a submission whose LMS id is not on it is failed.

With --cluster tls://H:P --certs DIR, each submission is graded by a worker of that Dask
cluster (see mlmcourse cluster), sandboxed there; this process needs no root. A plain
tcp://127.0.0.1:P cluster is accepted only with --insecure-loopback, for tests.

Exit codes: 0 every submission graded, 1 some failed (see grades.csv), 2 usage error, the
sandbox cannot be set up or the gradebook database cannot be reached (nothing is written), or
the database or the cluster's scheduler failed during the run (what was recorded is kept: the
same command grades the rest), 3 the source solution does not get full marks, 130 interrupted
(Ctrl-C: the results stored so far are reused by the next run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mlmcourse import checks
from mlmcourse.grading.cluster.address import INSECURE_FLAG, AddressRefused, check_address
from mlmcourse.grading.cluster.client import ClusterLost
from mlmcourse.grading.config import DEFAULT_JOBS, DEFAULT_TIMEOUT, Settings
from mlmcourse.grading.course import CONFIG_NAME, assignments, find_course, source_path
from mlmcourse.grading.inputs.lms import RosterError, read_roster
from mlmcourse.grading.model import Status
from mlmcourse.grading.pipeline import GradebookLost, GradingRefused, SolutionFails, grade_class
from mlmcourse.grading.sandbox.policy import UID_BLOCK


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
    parser.add_argument("--roster", type=Path, default=None, metavar="CSV",
                        help="map the LMS ids of a zip to student ids (CSV with the columns "
                        "lms_id and student_id)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="grade WITHOUT isolation: student code can read and change "
                        "everything you can; only for trusted submissions")
    parser.add_argument("--cluster", metavar="tls://H:P", default=None,
                        help="send each submission to the workers of this Dask scheduler "
                        "(mlmcourse cluster); this process then needs no root")
    parser.add_argument("--certs", type=Path, default=None, metavar="DIR",
                        help="the cluster's certificates (mlmcourse cluster certs), with "
                        "--cluster")
    parser.add_argument(INSECURE_FLAG, action="store_true",
                        help="for tests only: accept a plain tcp:// --cluster on a loopback "
                        "address (127.0.0.1, [::1]), without certificates")
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


def usage_errors(args: argparse.Namespace) -> list[str]:
    """Everything wrong with the command line, each naming its option (checked before anything
    is written)."""
    errors = []
    course = find_course(args.course)
    if not (course / CONFIG_NAME).is_file() and not (course / "source").is_dir():
        errors.append(f"--course {course} is not a course folder (neither {CONFIG_NAME} nor "
                      "source/ in it)" if args.course else f"no course folder here (no "
                      f"{CONFIG_NAME} in this folder or above it, nor {course}): pass --course")
    elif not source_path(course, args.assignment).is_file():
        errors.append(f"no assignment {args.assignment!r}: "
                      f"{source_path(course, args.assignment)} does not exist; the assignments "
                      f"of {course} are: {', '.join(assignments(course)) or '(none)'}")
    if not args.submissions.exists():
        errors.append(f"submissions not found: {args.submissions}")
    if not 1 <= args.jobs <= UID_BLOCK:
        errors.append(f"--jobs must be between 1 and {UID_BLOCK}, not {args.jobs}")
    if not args.timeout > 0:
        errors.append(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    if args.cluster is None and (args.certs is not None or args.insecure_loopback):
        errors.append(f"--certs and {INSECURE_FLAG} go with --cluster")
    elif args.cluster is not None:
        try:
            check_address(args.cluster, args.insecure_loopback)
        except AddressRefused as exc:
            errors.append(f"--cluster {exc}")
        else:
            if args.cluster.startswith("tls://") and args.certs is None:
                errors.append(f"--cluster {args.cluster} needs --certs DIR (the folder made by "
                              "mlmcourse cluster certs)")
    if args.out.exists() and not args.out.is_dir():
        errors.append(f"--out {args.out} is a file, not a folder")
    return errors


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (``None`` if it exists)."""
    path = path.resolve()
    missing = None
    while not path.exists():
        missing, path = path, path.parent
    return missing


def run(args: argparse.Namespace) -> int:
    """Grade the class; returns the exit code."""
    if args.show_policy:
        return show_policy(args.timeout)
    missing = [name for name, value in (("ASSIGNMENT", args.assignment),
                                        ("SUBMISSIONS", args.submissions), ("--out", args.out))
               if value is None]
    if missing:
        print(f"mlmcourse grade: error: {', '.join(missing)} required (or --show-policy)",
              file=sys.stderr)
        return 2
    errors = usage_errors(args)
    roster = None
    if args.roster is not None:
        try:
            roster = read_roster(args.roster)
        except RosterError as exc:
            errors.append(f"--roster: {exc}")
    for error in errors:
        print(f"mlmcourse grade: error: {error}", file=sys.stderr)
    if errors:
        return 2
    settings = Settings(args.assignment, args.submissions, args.out, find_course(args.course),
                        args.jobs, args.timeout, sandbox=not args.no_sandbox, roster=roster,
                        cluster=args.cluster, certs=args.certs,
                        insecure_loopback=args.insecure_loopback, explain=checks.explain)
    if args.no_sandbox:
        print("mlmcourse grade: warning: --no-sandbox: student code runs WITHOUT isolation, "
              "with your rights; use it only for submissions you trust", file=sys.stderr)
    try:
        return _grade(settings, _first_missing(args.out))
    except KeyboardInterrupt:
        print(f"\nmlmcourse grade: interrupted; the results stored so far are kept in "
              f"{args.out.resolve() / 'results'}: run the same command again to go on",
              file=sys.stderr)
        return 130


def _grade(settings: Settings, created: Path | None) -> int:
    """Grade with a progress bar; ``created`` is the output folder made for this run (removed
    when the run is refused)."""
    from tqdm import tqdm

    bar = tqdm(unit="student", desc=f"grading {settings.assignment}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        rows = grade_class(settings, progress,
                           say=lambda text: bar.write(text, file=sys.stderr))
    except GradingRefused as exc:
        if created is not None:  # nothing was graded: leave no output folder behind
            shutil.rmtree(created, ignore_errors=True)
        print(f"mlmcourse grade: error: {exc}", file=sys.stderr)
        return 2
    except GradebookLost as exc:  # the results so far stay for the next run
        print(f"mlmcourse grade: error: {exc}", file=sys.stderr)
        return 2
    except SolutionFails as exc:
        print(f"mlmcourse grade: error: {exc}", file=sys.stderr)
        return 3
    except ClusterLost as exc:
        print(f"mlmcourse grade: error: {exc}; the results recorded so far are kept in "
              f"{settings.out.resolve() / 'results'}: run the same command again once the "
              "cluster is back to grade the rest", file=sys.stderr)
        return 2
    finally:
        bar.close()
    failed = [r for r in rows if r.status == Status.FAILED]
    graded = sum(r.status != Status.NOT_SUBMITTED for r in rows)
    out = settings.out.resolve()
    print(f"graded {graded} submissions of {settings.assignment}: {len(failed)} failed; "
          f"see {out / 'grades.csv'} and {out / 'report.html'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="mlmcourse grade", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
