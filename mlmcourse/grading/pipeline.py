"""Grading a class, stage by stage; :func:`grade_class` runs them in this order:

1. :func:`prepare`: check the request and the machine; build the run's sandbox policy
   (:func:`sandbox_policy`), fail closed;
2. :func:`collect`: every submission of the assignment;
3. :func:`plan`: results that can be reused, and a task for each other submission;
4. :func:`execute`: the workers grade the source solution first (:func:`check_solution` stops
   the run unless it gets full marks), then the students, in batches as they arrive (each a
   :class:`~mlmcourse.grading.model.Graded`: the verdict and the autograded notebook);
5. :func:`record`: each batch's verdicts into the result store and the gradebook, its
   autograded notebooks into the autograded folder (then dropped);
6. :func:`publish`: hand grades and late penalties applied, feedback, ``grades.csv``, report;
7. :func:`finish`: the run's working folder and cgroups removed, its uids released.

Everything a submission controls is contained to that submission: a step of the trusted side
that fails on it (storing, the gradebook, the autograded notebook, feedback) makes that student
``failed`` with the reason, and the others are graded as if it were not there.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlmcourse.grading.config import BATCH, CPU_SECONDS_MARGIN, Settings
from mlmcourse.grading.course import release_path, source_path
from mlmcourse.grading.inputs.collect import Submission, UsageError, discover
from mlmcourse.grading.inputs.notebook import SourceNotebook, SubmissionProblem, load_source
from mlmcourse.grading.model import Graded, Result, Status, Task
from mlmcourse.grading.outputs import database, feedback, ownership, report
from mlmcourse.grading.outputs.autograded import autograded_path
from mlmcourse.grading.outputs.store import ResultStore
from mlmcourse.grading.sandbox import cgroups, seccomp, uids
from mlmcourse.grading.sandbox.policy import (
    REFUSED_SYSCALLS,
    UID_BLOCK,
    Limits,
    Policy,
    build_policy,
)
from mlmcourse.grading.workers.pool import ResultStream, WorkerPool

if TYPE_CHECKING:  # imports nbgrader (and distributed): loaded only when needed
    from mlmcourse.grading.cluster.client import ClusterPool
    from mlmcourse.grading.outputs import gradebook

SOLUTION_ID = "(source solution)"  # no student id looks like this (see lms.SAFE_ID)
WORKROOT_PREFIX = "mlmcourse-grade-"
"""How a run's work folder is named: this, then what ``mkdtemp`` draws."""


class GradingRefused(Exception):
    """The class cannot be graded as asked (exit code 2): the message says why and what to do."""


class GradebookLost(Exception):
    """The gradebook database failed during the run (exit code 2): the message says what was
    kept and how to go on. Nobody is half-recorded: the batch in progress was rolled back."""


class SolutionFails(Exception):
    """The source solution does not get full marks in the sandbox (exit code 3): an environment
    problem that would otherwise turn into students' zeros."""


@dataclass
class Run:
    """One grading run's state (made by :func:`prepare`; :func:`finish` releases it)."""

    settings: Settings
    source_path: Path
    source: SourceNotebook
    out: Path
    workroot: Path
    policy: Policy | None
    extra_files: list[tuple[str, str]]
    store: ResultStore
    uid_lock: int | None = None
    warnings: list[str] = field(default_factory=list)
    times: dict[str, dt.datetime | None] = field(default_factory=dict)  # handed in (naive UTC)
    layout: gradebook.Layout | None = None  # the gradebook's ids of the assignment

    @property
    def notebook(self) -> str:
        return self.source_path.stem

    def stored_settings(self) -> dict:
        """What a stored result depends on besides the submission and the source."""
        if self.policy is not None:
            limits = self.policy.limits
        elif self.settings.cluster:  # the workers' sandboxes: see run_limits
            limits = run_limits(self.settings.timeout)
        else:
            limits = Limits()
        return {"timeout": self.settings.timeout, "limits": vars(limits),
                "sandbox": self.policy is not None or bool(self.settings.cluster)}


def run_limits(timeout: float) -> Limits:
    """What every sandbox of a run with ``timeout`` may use."""
    return Limits(cpu_seconds=int(timeout) + CPU_SECONDS_MARGIN)


def sandbox_policy(timeout: float) -> tuple[Policy, int]:
    """Check the machine and reserve what this run's sandboxes need (a block of uids, the run's
    cgroups); returns the policy and the uid lock to keep open. Fails closed: anything missing
    is :class:`GradingRefused` naming it."""
    if os.geteuid() != 0:
        raise GradingRefused(
            "the sandbox (namespaces, cgroups, a uid of its own per submission) needs root: "
            "run mlmcourse grade as root, or pass --no-sandbox to grade trusted code "
            "without isolation")
    try:  # libseccomp and every rule of the table, once, before anything is reserved
        seccomp.build(REFUSED_SYSCALLS)
    except seccomp.FilterError as exc:
        raise GradingRefused(f"the sandbox's system call filter cannot be built: {exc}; "
                             "pass --no-sandbox to grade trusted code without isolation"
                             ) from None
    try:
        uid_base, uid_lock = uids.reserve_block()
    except uids.UidsUnavailable as exc:
        raise GradingRefused(f"{exc}; pass --no-sandbox to grade trusted code without "
                             "isolation") from None
    try:
        plan = cgroups.create_run(f"mlmcourse-grade-{uid_base}")
        cgroups.clear_run(plan)
    except cgroups.CgroupsUnavailable as exc:
        os.close(uid_lock)
        raise GradingRefused(f"{exc}; pass --no-sandbox to grade trusted code without "
                             "isolation") from None
    return build_policy(uid_base, plan, run_limits(timeout)), uid_lock


def release_sandbox(policy: Policy, uid_lock: int) -> None:
    """Remove the run's cgroups and release its uids (what :func:`sandbox_policy` reserved)."""
    try:
        cgroups.clear_run(policy.cgroups)
        cgroups.remove_run(policy.cgroups, seconds=2.0)
    except OSError:
        pass
    os.close(uid_lock)


def prepare(settings: Settings) -> Run:
    """Check the request and the machine; reserve uids and cgroups; fail closed. The work
    folder is new (``mkdtemp``: mode 0700, a name nobody can take first); the one a killed run
    of the same uid block left is removed."""
    path = source_path(settings.course, settings.assignment)
    if not path.exists():
        raise GradingRefused(f"no assignment {settings.assignment!r}: {path} does not exist")
    if not 1 <= settings.jobs <= UID_BLOCK or settings.timeout <= 0:
        raise GradingRefused(f"--jobs must be between 1 and {UID_BLOCK}, --timeout positive")
    try:
        source = load_source(path)
    except (ValueError, SubmissionProblem) as exc:
        raise GradingRefused(f"cannot read the source notebook {path}: {exc}") from None
    local = settings.sandbox and not settings.cluster  # a cluster's workers check their own
    policy, uid_lock = sandbox_policy(settings.timeout) if local else (None, None)
    if uid_lock is not None:
        _remove_left_behind(Path(uids.left_behind(uid_lock)))
    workroot = Path(tempfile.mkdtemp(prefix=WORKROOT_PREFIX))  # 0700, a name nobody can guess
    if uid_lock is not None:
        uids.record_workroot(uid_lock, str(workroot))
    release = release_path(settings.course, settings.assignment).parent
    extra = [(str(p), p.name) for p in sorted(release.glob("*"))
             if p.is_file() and not p.is_symlink() and p.suffix != ".ipynb"] \
        if release.is_dir() else []
    out = settings.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    return Run(settings, path, source, out, workroot, policy, extra, ResultStore(out), uid_lock)


def _remove_left_behind(path: Path) -> None:
    """Remove the working folder a killed run of the same uid block left, if it still is one:
    a root-owned folder (mode 0700) of the temporary folder, named as :func:`prepare` names
    them. Its name was recorded in the root-only lock file, and in the sticky temporary folder
    nobody else can rename or replace a folder of root's."""
    if path.parent != Path(tempfile.gettempdir()) or not path.name.startswith(WORKROOT_PREFIX):
        return
    try:
        info = path.lstat()
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700:
        shutil.rmtree(path, ignore_errors=True)  # never follows a link (fd-based on Linux)


def finish(run: Run) -> None:
    """Remove the run's working folder and cgroups; release its uids."""
    shutil.rmtree(run.workroot, ignore_errors=True)
    if run.policy is not None and run.uid_lock is not None:
        uids.record_workroot(run.uid_lock, "")
        release_sandbox(run.policy, run.uid_lock)


def collect(run: Run) -> list[Submission]:
    """Every submission of the assignment found in the submissions folder or zip, copied into
    the run's snapshot (the only copy the workers read: see
    :mod:`~mlmcourse.grading.inputs.collect`)."""
    staging = run.workroot / "unpacked"
    staging.mkdir()
    try:
        submissions, warnings = discover(run.settings.submissions.resolve(),
                                         run.settings.assignment, staging, run.settings.roster)
    except UsageError as exc:
        raise GradingRefused(str(exc)) from None
    run.warnings += warnings
    run.times = {s.student_id: s.submitted_at for s in submissions}
    return submissions


def _task(run: Run, student_id: str, notebook: str | None, problem: str | None,
          files: list[tuple[str, str]], sha: str) -> Task:
    return Task(student_id, run.settings.assignment, str(run.source_path), notebook, problem,
                run.extra_files + files, sha, run.stored_settings(), str(run.workroot),
                run.settings.timeout)


def plan(run: Run, submissions: list[Submission]) -> tuple[dict[str, Result], list[Task]]:
    """Results that can be reused as they are (their autograded notebook is still in the
    course folder: it is not stored with them), and tasks for the rest."""
    reused: dict[str, Result] = {}
    tasks = []
    for sub in submissions:
        cached = run.store.reusable(sub.student_id, sub.sha256, run.source.sha256,
                                    run.stored_settings())
        shown = autograded_path(run.settings.course, run.settings.assignment, run.notebook,
                                sub.student_id)
        if cached is not None and shown.is_file():
            reused[sub.student_id] = cached
        else:
            tasks.append(_task(run, sub.student_id, str(sub.notebook) if sub.notebook else None,
                               sub.problem, sub.files, sub.sha256))
    return reused, tasks


def solution_task(run: Run) -> Task:
    """The source notebook itself, graded in the same sandbox as the students."""
    return _task(run, SOLUTION_ID, str(run.source_path), None, [], run.source.sha256)


def check_solution(run: Run, result: Result) -> None:
    """Anything short of full marks on the source notebook's tests means the environment is
    broken: stop before any student is recorded."""
    failing = [(gid, c.message) for gid, c in result.cells.items()
               if c.kind == "test" and not c.passed]
    if result.status == Status.FAILED or failing:
        detail = "; ".join(f"{gid}: {message}" for gid, message in failing) or result.reason
        raise SolutionFails(
            f"the source solution of {run.settings.assignment} does not get full marks in the "
            f"sandbox, so students would lose points for the environment, not their answers: "
            f"{detail}")



def execute(run: Run, stream: ResultStream) -> Iterator[list[Graded]]:
    """What the workers send back for the students, in completion order, in batches of those
    that are ready, once the source solution's result (graded first, in the same sandbox) has
    passed :func:`check_solution`."""
    early = []
    for graded in stream:
        if graded.result.student_id == SOLUTION_ID:
            check_solution(run, graded.result)
            break
        early.append(graded)
    batch = early or stream.take(BATCH)
    while batch:
        for graded in batch:
            if not graded.result.max_score:
                graded.result.max_score = run.source.max_score
        yield batch
        batch = stream.take(BATCH)


def record(run: Run, gb: object, batch: list[Graded],
           previous: dict[str, str | None] | None = None) -> list[Result]:
    """Store results, write their autograded notebooks and the gradebook, in one
    transaction: whoever arrived while the previous batch was being stored (one commit, with
    its disk syncs, per batch rather than per student). Contained: if anything fails, each
    result is recorded again on its own, and the one that fails is ``failed`` (written as such
    where possible), never the run or anyone else. ``previous`` holds the hash of the submission
    each stored result was computed from before this batch (read here when not given)."""
    from mlmcourse.grading.outputs import gradebook

    if previous is None:
        previous = {g.result.student_id: run.store.stored_submission(g.result.student_id)
                    for g in batch}
    try:
        for graded in batch:
            result = graded.result
            submitted_at = run.times.get(result.student_id)
            if not result.grader_error:
                run.store.save(result)
            gradebook.write_autograded(run.settings.course, run.settings.assignment,
                                       run.notebook, result.student_id, graded.autograded,
                                       submitted_at)
            gradebook.record(gb, run.layout, run.notebook, result, submitted_at,
                             resubmitted=previous[result.student_id] not in
                             (None, result.submission_sha))
        gradebook.commit(gb)
        return [graded.result for graded in batch]  # the notebooks are written: dropped
    except Exception as exc:  # one submission never stops the class, but the database does
        try:
            gradebook.rollback(gb)
        except Exception:
            if not database.lost(exc):
                raise
        if database.lost(exc):  # keep what was graded for the rerun, then stop
            for graded in batch:
                if not graded.result.grader_error:
                    run.store.save(graded.result)
            raise GradebookLost(database.lost_message(run.settings.course, run.out, exc)) from None
        if len(batch) > 1:
            return [alone for graded in batch
                    for alone in record(run, gb, [graded], previous)]
        result = batch[0].result
        failed = Result.failed(result.student_id, run.settings.assignment, run.source.max_score,
                               f"the grader could not record this submission "
                               f"({type(exc).__name__}: {str(exc)[:200]})")
        try:
            gradebook.record(gb, run.layout, run.notebook, failed,
                             run.times.get(result.student_id))
            gradebook.commit(gb)
        except Exception:  # the gradebook keeps its earlier state
            gradebook.rollback(gb)
        return [failed]


def publish(run: Run, gb: object, results: dict[str, Result]) -> list[Result]:
    """Scores given by hand, feedback pages, ``grades.csv`` and the report; returns the rows."""
    from mlmcourse.grading.outputs import gradebook

    rows = []
    assignment, notebook = run.settings.assignment, run.notebook
    penalty = gradebook.late_penalty_function(run.settings.course)
    given = gradebook.hand_given(gb, assignment, notebook)
    numbers = feedback.question_numbers(run.source.cells)
    penalties = {}
    for student_id, result in sorted(results.items()):
        hand = given.get(student_id, gradebook.HandGiven())
        result = with_manual_scores(result, hand.scores, hand.comments, hand.review)
        submitted_at = run.times.get(student_id)
        result.submitted_at = submitted_at.isoformat(timespec="seconds") if submitted_at else ""
        result.seconds_late = hand.seconds_late
        result.late_penalty = penalty(student_id, result.score, result.seconds_late)
        penalties[student_id] = result.late_penalty
        try:
            feedback.write(run.out, run.settings.assignment, result, numbers,
                           run.settings.explain)
            feedback.write_for_nbgrader(run.settings.course, assignment, notebook, result,
                                        submitted_at, numbers, run.settings.explain)
        except Exception as exc:  # contained to this student
            result = Result.failed(student_id, run.settings.assignment, run.source.max_score,
                                   f"the feedback page could not be written ({type(exc).__name__})")
        rows.append(result)
    gradebook.set_late_penalties(gb, assignment, notebook, penalties)
    for student_id in sorted(set(gradebook.student_ids(gb)) - set(results)):
        rows.append(Result(student_id, run.settings.assignment, run.source.max_score,
                           Status.NOT_SUBMITTED))
    grade_ids = [c.grade_id for c in run.source.graded_cells]
    report.write_csv(run.out, grade_ids, rows)
    report.write_report(run.out, run.settings.assignment, grade_ids, rows, run.settings.explain)
    return rows


def with_manual_scores(result: Result, manual: dict[str, float],
                       comments: dict[str, str] | None = None,
                       review: set[str] | None = None) -> Result:
    """The result with what the instructor gave in formgrader: a score by hand replaces the
    cell's points (a written answer's, or an override of a test's, as in nbgrader), and every
    comment goes with its cell (comments on cells that are not graded, such as code to write,
    go to ``comments``). ``graded`` once every written answer has points and no cell is under
    ``review`` (scored by hand before the student handed in again: the cell keeps its automatic
    points, a written answer none, until the instructor grades it again). The stored result
    keeps only what the grader computed."""

    comments = dict(comments or {})
    if result.status in (Status.FAILED, Status.NOT_SUBMITTED):
        return replace(result, comments=comments)
    cells = {gid: replace(cell) for gid, cell in result.cells.items()}
    for grade_id, cell in cells.items():
        cell.comment = comments.pop(grade_id, "")
        if grade_id in manual:
            cell.points, cell.by_hand = manual[grade_id], True
            if cell.kind == "written":
                cell.message = "graded by hand"
        elif grade_id in (review or ()) and cell.kind == "written":
            cell.message = AWAITING
    pending = any(c.kind == "written" and c.points is None for c in cells.values())
    status, reason = result.status, result.reason
    if status == Status.NEEDS_MANUAL and not pending:
        status, reason = Status.GRADED, ""
    if status in (Status.GRADED, Status.NEEDS_MANUAL) and review and review & set(cells):
        status, reason = Status.NEEDS_MANUAL, AWAITING
    updated = replace(result, cells=cells, status=status, reason=reason, comments=comments)
    updated.score = updated.total()
    return updated


AWAITING = "handed in again after it was graded by hand: waiting for the instructor to grade it"


def start_pool(run: Run, count: int, say: Callable[[str], None]
               ) -> WorkerPool | ClusterPool:
    """The workers that grade ``count`` tasks: this machine's, or the cluster's."""
    if not run.settings.cluster:
        return WorkerPool(min(run.settings.jobs, max(count, 1)), run.source.warm_modules,
                          run.workroot, run.policy)
    from mlmcourse.grading.cluster.client import ClusterPool, ClusterUnavailable

    try:
        return ClusterPool(run.settings.cluster, run.settings.certs, run.source_path,
                           run.source.sha256, say, run.settings.insecure_loopback)
    except ClusterUnavailable as exc:
        raise GradingRefused(str(exc)) from None


def grade_class(settings: Settings, progress: Callable[[int, int], object] | None = None,
                say: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
                ) -> list[Result]:
    """Run every stage; returns the rows of ``grades.csv``. ``progress(done, total)`` is called
    as results arrive."""
    try:  # before anything is reserved, graded or recorded
        database.check_reachable(settings.course)
    except database.GradebookUnreachable as exc:
        raise GradingRefused(str(exc)) from None
    run = prepare(settings)
    try:
        submissions = collect(run)
        for warning in run.warnings:
            say(f"warning: {warning}")
        results, tasks = plan(run, submissions)
        # the workers warm up (import torch, fork their zygotes) and grade the source solution,
        # then the first students, while nbgrader is imported here
        pool = start_pool(run, len(tasks), say) if tasks else None
        try:
            stream = pool.run([solution_task(run), *tasks]) if pool else None
            # imports nbgrader: slow, so after the pool has started
            from mlmcourse.grading.outputs import gradebook

            database.backup(settings.course)
            gb = gradebook.open_gradebook(settings.course)
            try:
                graded = execute(run, stream) if stream else iter(())
                first = next(graded, None)  # the solution is checked before anyone is recorded
                released = release_path(settings.course, settings.assignment)
                gradebook.ensure_assignment(gb, settings.course, settings.assignment,
                                            released if released.exists() else run.source_path)
                run.layout = gradebook.layout(gb, settings.assignment)
                done = 0
                if progress:
                    progress(done, len(submissions))
                reused = [[Graded(r) for r in results.values()]] if results else []
                for batch in itertools.chain(reused, [first] if first else [], graded):
                    for result in record(run, gb, batch):
                        results[result.student_id] = result
                    done += len(batch)
                    if progress:
                        progress(done, len(submissions))
                if pool is not None:
                    pool.close()  # before the report: its CPU time is the report's now
                return publish(run, gb, results)
            finally:
                gb.close()
        finally:
            if pool is not None:
                pool.close()
    finally:
        finish(run)
        ownership.hand_over_run(settings.course, run.out)
