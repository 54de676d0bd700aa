"""Grading one submission in a worker: student cells in the sandbox, test cells here.

Test cells come from the *source* notebook and run in the trusted worker, never in the sandbox,
in a namespace built from the source's setup cells (executed once per worker) plus earlier test
cells plus the names the source's solution cells define, fetched from the sandbox as plain-data
copies or as call-proxies. Cells run interleaved in notebook order, so what a test sees matches
nbgrader. A test works on values the student chose (their shapes and sizes too), so each one
runs with bounded memory and stops at the submission's deadline.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import io
import resource
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlmcourse.grading.inputs.notebook import (
    Cell,
    SourceNotebook,
    Step,
    SubmissionProblem,
    load_source,
    plan_submission,
    read_submission,
    referenced_names,
    written_answer_given,
)
from mlmcourse.grading.model import (
    MAX_MESSAGE_CHARS,
    CellResult,
    Failure,
    Graded,
    Result,
    Status,
    Task,
)
from mlmcourse.grading.outputs.autograded import autograded_notebook
from mlmcourse.grading.sandbox import protocol
from mlmcourse.grading.sandbox.host import Sandbox, SandboxGone, Zygote, describe_exit
from mlmcourse.grading.sandbox.messages import (
    Call,
    Forbid,
    Get,
    Missing,
    Raised,
    Reply,
    Request,
    Returned,
    Run,
    Value,
)
from mlmcourse.grading.sandbox.policy import Limits

MAX_CELL_OUTPUT_CHARS = 20_000
TRUSTED_MEMORY_BYTES = 2 * 1024**3
"""Memory a test may add to the worker while it works on one submission's values."""
_MEMORY_HINTS = ("memoryerror", "can't allocate memory", "cannot allocate memory",
                 "out of memory")
# exception types a sandbox error is re-raised as in a test (so `pytest.raises`-style checks work)
_REBUILDABLE = {name for name, obj in vars(builtins).items()
                if isinstance(obj, type) and issubclass(obj, Exception)
                and name not in ("BaseExceptionGroup", "ExceptionGroup")}


class StudentCodeError(Exception):
    """An exception of a non-builtin type raised by the student's code in the sandbox."""


class SetupFailed(Exception):
    """A setup cell of the source notebook does not run where the tests run (the environment
    lacks something it needs)."""


class DeadlinePassed(BaseException):
    """The submission's time ran out while a test was running (not catchable as Exception)."""


class _NoMagics:
    """``get_ipython()`` for trusted setup/test code: line and cell magics do nothing."""

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    run_cell_magic = system = run_line_magic


@dataclass
class TrustedAssignment:
    """A source notebook, the namespace its setup cells build and its test cells compiled
    (once per worker), with the names each test cell mentions."""

    source: SourceNotebook
    namespace: dict[str, Any]
    setup_refs: set[str]
    tests: dict[str, tuple[Any, set[str]]] = field(default_factory=dict)


def load_trusted(source_path: Path) -> TrustedAssignment:
    """Parse the source notebook and run its setup cells in a fresh trusted namespace."""
    from IPython.core.inputtransformer2 import TransformerManager

    source = load_source(source_path)
    transformer = TransformerManager()
    namespace: dict[str, Any] = {"__name__": "__main__", "get_ipython": _NoMagics}
    refs: set[str] = set()
    with contextlib.chdir(source_path.parent), contextlib.redirect_stdout(io.StringIO()):
        for cell in source.cells:
            if cell.is_setup:
                try:
                    code = compile(transformer.transform_cell(cell.source),
                                   f"<setup {cell.grade_id}>", "exec")
                    exec(code, namespace)  # the instructor's trusted setup cell
                except Exception as exc:
                    raise SetupFailed(f"the setup cell {cell.grade_id} fails in the grader: "
                                      f"{type(exc).__name__}: {exc}") from exc
                refs |= referenced_names(cell.source)
    tests = {cell.graded_id: (compile(transformer.transform_cell(cell.source),
                                     f"<test {cell.grade_id}>", "exec"),
                             referenced_names(cell.source))
             for cell in source.cells if cell.is_test}
    return TrustedAssignment(source, namespace, refs, tests)


@contextlib.contextmanager
def bounded(deadline: float) -> Iterator[None]:
    """Run trusted code on student-shaped values with bounded memory, until ``deadline``."""
    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_kb * 1024 + TRUSTED_MEMORY_BYTES
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)

    def expire(signum: int, frame: Any) -> None:
        raise DeadlinePassed

    previous = signal.signal(signal.SIGALRM, expire)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class SandboxFunction:
    """Calls a student's function in the sandbox; arguments and result cross as plain data.

    The call behaves as in the student's kernel for what a test can check: what the function
    did to its arguments in place is copied back into the test's own objects, and a result that
    *is* one of the arguments is returned as that very object (``updated is params``)."""

    def __init__(self, run: GradingRun, name: str) -> None:
        self._run, self.__name__ = run, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._run.request(Call(self.__name__, list(args), kwargs), strict=True)
        if isinstance(reply, Returned):
            if len(reply.args) == len(args):
                for original, after in zip(args, reply.args, strict=True):
                    copy_back(original, after)
            if reply.kwargs.keys() == kwargs.keys():
                for key, after in reply.kwargs.items():
                    copy_back(kwargs[key], after)
            if type(reply.same) is int and 0 <= reply.same < len(args):
                return args[reply.same]
            if type(reply.same) is str and reply.same in kwargs:
                return kwargs[reply.same]
            reply = Value(reply.result)
        return self._run.value_or_raise(reply)

    def __repr__(self) -> str:
        return f"<student function {self.__name__}>"


def copy_back(original: Any, after: Any) -> Any:
    """Make ``original`` (a test's argument) hold ``after`` (the sandbox's copy of it after a
    call) where it can change in place: tensors and arrays of the same dtype, dicts and lists
    (recursively); return what a name bound to it now refers to (``original`` if it could take
    the change, else ``after``)."""
    import torch

    if isinstance(original, torch.Tensor) and isinstance(after, torch.Tensor):
        if original.dtype != after.dtype or original.device.type != "cpu":
            return original
        with torch.no_grad(), contextlib.suppress(RuntimeError):  # a view cannot be resized
            if original.shape != after.shape:
                original.resize_(after.shape)
            original.copy_(after)
        return original
    if isinstance(original, np.ndarray) and isinstance(after, np.ndarray):
        if (original.shape == after.shape and original.dtype == after.dtype
                and original.flags.writeable):
            original[...] = after
        return original
    if type(original) is dict and type(after) is dict:
        merged = {key: copy_back(original[key], value) if key in original else value
                  for key, value in after.items()}
        original.clear()
        original.update(merged)
        return original
    if type(original) is list and type(after) is list:
        items = [copy_back(o, a) for o, a in zip(original, after, strict=False)]
        original[:] = items + after[len(original):]
        return original
    if type(original) is tuple and type(after) is tuple and len(original) == len(after):
        for o, a in zip(original, after, strict=True):
            copy_back(o, a)
        return original
    return after


@dataclass
class GradingRun:
    """The state of grading one submission."""

    trusted: TrustedAssignment
    sandbox: Sandbox | None
    deadline: float
    limits: Limits
    timeout: float
    dead_reason: str = ""
    dead: Failure = Failure.SANDBOX  # the kind of ``dead_reason``, once there is one
    setup_failure: str = ""
    memory_hit: bool = False
    fetched: set[str] = field(default_factory=set)
    outputs: dict[int, list[dict]] = field(default_factory=dict)

    def request(self, message: Request, *, strict: bool = False) -> Reply:
        """Send ``message`` and return the sandbox's reply (``SandboxGone`` once it is gone:
        the run records why). ``strict``: arguments that are not plain data raise
        ``TypeError`` here, before anything is sent."""
        if self.sandbox is None:
            raise SandboxGone(self.dead, self.dead_reason)
        if strict:
            protocol.encode(message.to_wire())
        try:
            return self.sandbox.exchange(message, self.deadline)
        except SandboxGone as exc:
            self.stop(exc.failure, str(exc))
            raise SandboxGone(self.dead, self.dead_reason) from None

    def stop(self, failure: Failure, what: str) -> None:
        """The sandbox is gone (or must go) for ``failure``: record why, in the instructor's
        words."""
        grace = 2.0 if failure == Failure.EXITED else 0.0
        exit = self.sandbox.close(grace) if self.sandbox is not None else None
        self.sandbox = None
        if failure == Failure.TIMEOUT:
            self.dead, self.dead_reason = failure, f"timeout after {self.timeout:g} s"
        elif failure == Failure.OUTPUT:
            self.dead = failure
            self.dead_reason = f"output limit {self.limits.output_bytes / 2**20:g} MB exceeded"
        elif failure == Failure.EXITED and exit is not None:
            self.dead, self.dead_reason = describe_exit(exit, self.limits)
        else:  # a reply the grader refuses, or a set-up refused (its message says why)
            self.dead, self.dead_reason = failure, what

    def value_or_raise(self, reply: Reply) -> Any:
        """The value a :class:`Value` reply carries (a student's function as a
        :class:`SandboxFunction`), or the exception a :class:`Raised` one reports, re-raised
        as its built-in type where it has one."""
        if isinstance(reply, Value):
            if isinstance(reply.value, protocol.Callable):
                return SandboxFunction(self, reply.value.name)
            return reply.value
        if isinstance(reply, Raised):
            name, message = reply.type_name, reply.message
            self.note_memory(name, message)
            kind = getattr(builtins, name) if name in _REBUILDABLE else None
            if kind is None:
                raise StudentCodeError(f"{name}: {message}")
            try:
                rebuilt = kind(message)
            except TypeError:  # constructors with other signatures (UnicodeDecodeError, ...)
                raise StudentCodeError(f"{name}: {message}") from None
            raise rebuilt
        raise StudentCodeError("the sandbox sent an unexpected reply")

    def note_memory(self, name: str, message: str) -> None:
        if any(h in f"{name} {message}".lower() for h in _MEMORY_HINTS):
            self.memory_hit = True

    def fetch(self, names: set[str], namespace: dict[str, Any]) -> None:
        """Copy the student's current values of ``names`` into a test namespace."""
        for name in sorted(names):
            reply = self.request(Get(name))
            if not isinstance(reply, Missing):
                namespace[name] = self.value_or_raise(reply)
                self.fetched.add(name)
            elif name in self.fetched:  # the student deleted it since: so does the test's view
                namespace.pop(name, None)
                self.fetched.discard(name)


def _stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text[:MAX_CELL_OUTPUT_CHARS]}


def _error(ename: str, evalue: str, where: str = "") -> dict:
    """An error output as nbgrader's kernel writes one: the type, the message, and a traceback
    (here: where the test stopped, then ``type: message``)."""
    trace = [f"{ename} (traceback, most recent call last)", where] if where else []
    return {"output_type": "error", "ename": ename, "evalue": evalue,
            "traceback": [*trace, f"{ename}: {evalue}" if evalue else ename]}


def _failure(exc: BaseException, cell: Cell) -> tuple[str, str, str, str | None]:
    """``(type name, message, where, misconception code)`` of a failed test: ``where`` is the
    test cell's line that raised, as a traceback shows it."""
    from mlmcourse.checks import Misconception

    code = exc.code if isinstance(exc, Misconception) else None
    try:
        text = str(exc).strip()
    except Exception:  # a message built from student values may not print
        text = ""
    where, frame = "", exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == f"<test {cell.grade_id}>":
            line = frame.tb_lineno
            lines = cell.source.splitlines()
            shown = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            where = f"test cell {cell.grade_id}, line {line}: {shown}"[:MAX_MESSAGE_CHARS]
        frame = frame.tb_next
    return type(exc).__name__, text[:MAX_MESSAGE_CHARS], where, code


def _forbid_all(run: GradingRun, steps: list[Step]) -> None:
    """Every question's forbidden functions stubbed in the sandbox at once, before the first
    cell the student wrote runs, so that no cell can keep a reference to a real one (the lists
    are declared by the source cells, never by the submission)."""
    for step in steps:
        if step.kind == "run" and step.cell.forbidden:
            run.request(Forbid(tuple(step.cell.forbidden), step.cell.graded_id))


def _run_student_cell(run: GradingRun, step: Step) -> None:
    reply = run.request(Run(step.submitted_source))
    out = run.outputs.setdefault(step.index, [])
    if run.sandbox is not None:
        text = run.sandbox.take_output()
        if text:
            out.append(_stream(text))
    if isinstance(reply, Raised):
        name, message = reply.type_name, reply.message
        run.note_memory(name, message)
        out.append(_error(name, message))
        if step.cell.is_setup and not run.setup_failure:  # the instructor's code, broken here
            run.setup_failure = (f"the setup cell {step.cell.grade_id} failed in this "
                                 f"submission ({name}: {message[:200]})")


def _run_test_cell(run: GradingRun, step: Step, namespace: dict, test_refs: set[str]) -> CellResult:
    cell = step.cell
    result = CellResult("test", cell.points)
    stdout, stderr = io.StringIO(), io.StringIO()
    failure: tuple[str, str, str] | None = None  # (type, message, where) of what it raised
    try:
        code, refs = run.trusted.tests[cell.graded_id]
        test_refs |= refs
        run.fetch((test_refs | run.trusted.setup_refs) & run.trusted.source.solution_names,
                  namespace)
        with bounded(run.deadline), contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr):
            exec(code, namespace)  # the instructor's trusted test cell
        if stderr.getvalue():
            result.message = "the test wrote to stderr (nbgrader counts that as a failure)"
        else:
            result.points, result.passed = cell.points, True
    except SandboxGone as exc:
        result.message = f"not graded: {exc}"
    except DeadlinePassed:
        run.stop(Failure.TIMEOUT, "timeout")
        result.message = f"not graded: {run.dead_reason}"
    except MemoryError:
        failure = ("MemoryError", "the test ran out of memory working on the submission's "
                   "values (check their shapes)", "")
    except BaseException as exc:  # any failure of a test is a failed test
        ename, evalue, where, result.misconception = _failure(exc, cell)
        failure = (ename, evalue, where)
    if failure is not None:
        result.message = f"{failure[0]}: {failure[1]}" if failure[1] else failure[0]
    outputs = run.outputs.setdefault(step.index, [])
    if run.sandbox is not None:
        child_text = run.sandbox.take_output()
        if child_text:
            outputs.append(_stream(child_text))
    for name, buffer in (("stdout", stdout), ("stderr", stderr)):
        if buffer.getvalue():
            outputs.append(_stream(buffer.getvalue(), name))
    if not result.passed:
        outputs.append(_error(*failure) if failure else _error("AssertionError", result.message))
    return result


def prepare_workdir(workroot: Path, files: list[tuple[str, str]]) -> Path:
    """A fresh staging copy holding only this student's files (the sandbox copies it again
    into its private ``/tmp/work``)."""
    workdir = Path(tempfile.mkdtemp(dir=workroot))
    for source, relative in files:
        target = (workdir / relative).resolve()
        if workdir.resolve() not in target.parents:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target, follow_symlinks=False)
    return workdir


def _answer_value(value: Any) -> Any:
    if type(value) is str:
        return value[:200]
    return value if type(value) in (int, float, bool) else None


def grade(task: Task, trusted: TrustedAssignment, zygote: Zygote) -> Graded:
    """Grade one submission: its verdict, and its autograded notebook once it could be read.
    Never raises for problems of the submission itself."""
    started = time.monotonic()
    source = trusted.source
    result = Result(task.student_id, task.assignment, source.max_score,
                    submission_sha=task.submission_sha, source_sha=source.sha256,
                    settings=task.settings)
    try:
        if task.problem or task.notebook is None:
            raise SubmissionProblem(task.problem or "no notebook was submitted")
        nb = read_submission(Path(task.notebook).read_bytes())
        steps = plan_submission(source, nb)
    except SubmissionProblem as exc:
        result.failure, result.reason = Failure.SUBMISSION, str(exc)
        result.seconds = time.monotonic() - started
        return Graded(result)
    limits = zygote.limits
    workdir = prepare_workdir(Path(task.workroot), task.files)
    deadline = time.monotonic() + task.timeout
    run = GradingRun(trusted, None, deadline, limits, task.timeout)
    try:
        try:
            run.sandbox = zygote.spawn(str(workdir), deadline)
        except SandboxGone as exc:
            run.dead, run.dead_reason = exc.failure, str(exc)
        if not run.dead_reason:
            _run_steps(run, steps, result)
            _collect_answers(run, result)
        if run.sandbox is not None:
            ended = run.sandbox.close()
            run.sandbox = None
            if ended.zygote_lost and not run.dead_reason:
                run.dead, run.dead_reason = describe_exit(ended, limits)
        _conclude(run, result)
    finally:
        if run.sandbox is not None:
            run.sandbox.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return Graded(result, autograded_notebook(nb, source, run.outputs))


def private_namespace(shared: dict[str, Any]) -> dict[str, Any]:
    """A submission's own copy of the setup namespace: every tensor, array, dict, list and tuple
    copied (deeply, aliases kept), since a call copies what the student's function did to its
    arguments back into them (:func:`copy_back`); modules, functions and other objects shared."""
    import torch

    memo: dict[int, Any] = {}
    namespace = dict(shared)
    for name, value in shared.items():
        if not name.startswith("__") and isinstance(value, torch.Tensor | np.ndarray | dict |
                                                    list | tuple):
            try:
                namespace[name] = copy.deepcopy(value, memo)
            except Exception:  # one that cannot be copied stays shared
                pass
    return namespace


def _run_steps(run: GradingRun, steps: list[Step], result: Result) -> None:
    namespace = private_namespace(run.trusted.namespace)
    test_refs: set[str] = set()
    forbidden_in_place = False
    for step in steps:
        cell = step.cell
        if step.kind == "run":
            try:
                if not (forbidden_in_place or cell.is_setup):
                    forbidden_in_place = True
                    _forbid_all(run, steps)
                _run_student_cell(run, step)
            except SandboxGone:
                run.dead_reason += f" during cell {step.index + 1}" if " during " not in \
                    run.dead_reason else ""
        elif step.kind == "test":
            alive = run.sandbox is not None
            result.cells[cell.graded_id] = _run_test_cell(run, step, namespace, test_refs)
            if alive and run.sandbox is None and " during " not in run.dead_reason:
                run.dead_reason += f" during cell {step.index + 1}"
        elif step.kind == "written":
            given = written_answer_given(step.submitted_source)
            result.cells[cell.graded_id] = CellResult(
                "written", cell.points, None if given else 0.0, None,
                "to be graded by hand" if given else "no answer written")


def _collect_answers(run: GradingRun, result: Result) -> None:
    """The student's multiple-choice and numeric answers (names starting with ``answer_``)."""
    for name in sorted(n for n in run.trusted.source.solution_names if n.startswith("answer_")):
        if run.sandbox is None:
            return
        with contextlib.suppress(SandboxGone):
            reply = run.request(Get(name))
            if isinstance(reply, Value):
                result.answers[name] = _answer_value(reply.value)


def _conclude(run: GradingRun, result: Result) -> None:
    result.score = result.total()
    if run.dead_reason:
        result.status, result.failure, result.reason = Status.FAILED, run.dead, run.dead_reason
    elif run.setup_failure:
        result.status, result.failure = Status.FAILED, Failure.SETUP
        result.reason = run.setup_failure
    elif run.memory_hit:
        result.status, result.failure = Status.FAILED, Failure.MEMORY
        result.reason = f"memory limit {run.limits.memory_bytes / 1024**3:g} GB exceeded"
    elif any(c.kind == "written" and c.points is None for c in result.cells.values()):
        result.status, result.reason = Status.NEEDS_MANUAL, "written answers to grade by hand"
    else:
        result.status = Status.GRADED
