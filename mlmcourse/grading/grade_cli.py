"""Autograde a whole class: every submission of ASSIGNMENT found in SUBMISSIONS, in parallel,
each in its own sandbox. Writes OUT/grades.csv, OUT/feedback/<student>/<assignment>.html,
OUT/report.html (+ charts) and the course's nbgrader gradebook. Exit code 0 when every
submission was graded, 1 when some failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from mlmcourse.grading import feedback, report
from mlmcourse.grading.isolation import (
    PRIVATE_TMP_DIRS,
    UID_BLOCK,
    Limits,
    reserve_uid_block,
)
from mlmcourse.grading.notebook import SubmissionProblem, load_source
from mlmcourse.grading.results import ResultStore
from mlmcourse.grading.submissions import Submission, UsageError, discover

DEFAULT_TIMEOUT = 120.0
NO_SANDBOX_ENV = "MLMCOURSE_GRADE_NO_SANDBOX"  # benchmarks only: measure isolation overhead


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlmcourse grade``."""
    parser.add_argument("assignment", help="assignment name, e.g. ex2_masking")
    parser.add_argument("submissions", type=Path,
                        help="folder of per-student folders, nbgrader submitted/ tree, or LMS zip")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where grades.csv, feedback/, report.html and results/ go")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="submissions graded in parallel (default: number of CPUs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"wall-clock limit per notebook (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--course", type=Path, default=Path("autograder"), metavar="DIR",
                        help="the nbgrader course folder (default: ./autograder)")
    parser.add_argument("--no-sandbox", action="store_true", help=argparse.SUPPRESS)


def _fail(message: str) -> int:
    print(f"mlmcourse grade: error: {message}", file=sys.stderr)
    return 2


def hidden_paths(candidates: list[Path], keep: list[Path]) -> tuple[list[str], list[str]]:
    """What the sandbox must not see: (paths to hide, kept paths inside them to show again).

    A candidate inside a kept path is not hidden; parents come before children and a path
    inside another hidden one is dropped.
    """
    hidden: list[Path] = []
    for path in sorted({p.resolve() for p in candidates if p.exists()}, key=lambda p: len(p.parts)):
        inside_keep = any(k == path or k in path.parents for k in keep)
        if not inside_keep and not any(h in path.parents for h in hidden):
            hidden.append(path)
    covered = hidden + [Path(p) for p in PRIVATE_TMP_DIRS]  # the sandbox's /tmp starts empty
    revealed = [k for k in keep if any(c in k.parents for c in covered)]
    return [str(p) for p in hidden], [str(p) for p in revealed]


def _task(sub: Submission, args: argparse.Namespace, source: Path,
          extra_files: list[tuple[str, str]],
          workroot: Path, hidden: tuple[list[str], list[str]], uid_base: int) -> dict:
    path_env = os.pathsep.join([sysconfig.get_path("scripts"), "/usr/local/bin", "/usr/bin",
                                "/bin"])
    settings = _settings(args)
    return {
        "student_id": sub.student_id, "assignment": args.assignment, "source": str(source),
        "notebook": str(sub.notebook) if sub.notebook else None, "problem": sub.problem,
        "files": extra_files + sub.files, "submission_sha": sub.sha256, "timeout": args.timeout,
        "limits": settings["limits"], "sandbox": settings["sandbox"], "settings": settings,
        "uid_base": uid_base, "hidden_paths": hidden[0], "revealed_paths": hidden[1],
        "path_env": path_env, "workroot": str(workroot),
    }


def _settings(args: argparse.Namespace) -> dict:
    """What a stored result depends on besides the submission and the source."""
    return {"timeout": args.timeout, "limits": vars(Limits(cpu_seconds=int(args.timeout) + 10)),
            "sandbox": not (args.no_sandbox or bool(os.environ.get(NO_SANDBOX_ENV)))}


def _complete(result: dict, source_max: float) -> dict:
    """Give a grader-error result the fields every result has."""
    return {"reason": "", "score": 0.0, "max_score": source_max, "cells": {}, "answers": {},
            "warnings": [], **result}


def with_manual_scores(result: dict, manual: dict[str, float]) -> dict:
    """The result with the written answers' scores from formgrader; ``graded`` once every
    written answer has one (the stored result keeps only what the grader computed)."""
    if result["status"] != "needs_manual":
        return result
    cells = {grade_id: dict(cell) for grade_id, cell in result["cells"].items()}
    for grade_id, cell in cells.items():
        if cell["kind"] == "written" and cell["points"] is None and grade_id in manual:
            cell["points"], cell["message"] = manual[grade_id], "graded by hand"
    pending = any(c["kind"] == "written" and c["points"] is None for c in cells.values())
    return {**result, "cells": cells,
            "score": sum(c["points"] or 0.0 for c in cells.values()),
            "status": "needs_manual" if pending else "graded",
            "reason": result["reason"] if pending else ""}


def run(args: argparse.Namespace) -> int:
    """Grade the class; returns the exit code."""
    from tqdm import tqdm

    from mlmcourse.grading.pool import WorkerPool

    course, assignment = args.course.resolve(), args.assignment
    source_path = course / "source" / assignment / f"{assignment}.ipynb"
    if not source_path.exists():
        return _fail(f"no assignment {assignment!r}: {source_path} does not exist")
    if not 1 <= args.jobs <= UID_BLOCK or args.timeout <= 0:
        return _fail(f"--jobs must be between 1 and {UID_BLOCK}, --timeout positive")
    try:
        source = load_source(source_path)
    except (ValueError, SubmissionProblem) as exc:
        return _fail(f"cannot read the source notebook {source_path}: {exc}")
    out = args.out.resolve()
    uid_base, uid_lock = reserve_uid_block()
    # one working folder per uid block: whatever is there was left by a killed run
    workroot = Path(tempfile.gettempdir()) / f"mlmcourse-grade-{uid_base}"
    shutil.rmtree(workroot, ignore_errors=True)
    workroot.mkdir(mode=0o711)
    try:
        staging = workroot / "staging"
        staging.mkdir(mode=0o700)
        try:
            submissions, warnings = discover(args.submissions.resolve(), assignment, staging)
        except UsageError as exc:
            return _fail(str(exc))
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        release = course / "release" / assignment
        extra = [(str(p), p.name) for p in sorted(release.glob("*"))
                 if p.is_file() and p.suffix != ".ipynb"] if release.is_dir() else []
        keep = [Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                            sys.base_exec_prefix}]
        keep.append(Path(__file__).resolve().parents[1])
        hidden = hidden_paths([course, out, args.submissions, Path("/root"), Path("/home")], keep)
        store = ResultStore(out)
        results: dict[str, dict] = {}
        tasks = []
        for sub in submissions:
            cached = store.reusable(sub.student_id, sub.sha256, source.sha256, _settings(args))
            if cached is not None:
                results[sub.student_id] = cached
            else:
                tasks.append(_task(sub, args, source_path, extra, workroot, hidden, uid_base))
        # workers warm up (import torch, fork their zygote) while this process opens the gradebook
        pool = WorkerPool(min(args.jobs, len(tasks)), source.setup_modules) if tasks else None
        try:
            from mlmcourse.grading import gradebook

            gradebook.backup(course)
            gb = gradebook.open_gradebook(course)
            released = release / f"{assignment}.ipynb"
            gradebook.ensure_assignment(gb, course, assignment,
                                        released if released.exists() else source_path)
            notebook = source_path.stem
            for result in results.values():
                gradebook.record(gb, assignment, notebook, result)
            progress = tqdm(total=len(submissions), initial=len(results), unit="student",
                            desc=f"grading {assignment}", file=sys.stderr)
            seen_warnings: set[str] = set()
            for result in pool.run(tasks) if pool else []:
                result = _complete(result, source.max_score)
                if not result.get("error"):
                    store.save(result)
                for warning in set(result["warnings"]) - seen_warnings:
                    seen_warnings.add(warning)
                    progress.write(f"warning: sandbox: {warning}", file=sys.stderr)
                gradebook.record(gb, assignment, notebook, result)
                if result.get("autograded") is not None:
                    gradebook.write_autograded(course, assignment, notebook, result)
                results[result["student_id"]] = result
                progress.update()
        finally:
            if pool is not None:
                pool.close()
        progress.close()
        for student_id, result in results.items():
            results[student_id] = with_manual_scores(
                result, gradebook.manual_scores(gb, assignment, notebook, student_id))
        rows = list(results.values())
        for student_id in sorted(set(gradebook.student_ids(gb)) - set(results)):
            rows.append({"student_id": student_id, "status": "not_submitted", "reason": "",
                         "score": 0.0, "max_score": source.max_score, "cells": {}})
        gb.close()
        for result in results.values():
            feedback.write(out, assignment, result)
        grade_ids = [c.grade_id for c in source.graded_cells]
        report.write_csv(out, grade_ids, rows)
        report.write_report(out, assignment, grade_ids, rows)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
        os.close(uid_lock)
    failed = sorted(r["student_id"] for r in rows if r["status"] == "failed")
    print(f"graded {len(results)} submissions of {assignment}: {len(failed)} failed; "
          f"see {out / 'grades.csv'} and {out / 'report.html'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="mlmcourse grade", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
