"""Grading one submission: student cells in the sandbox, test cells in the trusted worker.

Test cells come from the *source* notebook and run here, never in the sandbox, in a namespace
built from the source's setup cells (executed once per worker) plus earlier test cells plus the
names the source's solution cells define, fetched from the sandbox as plain-data copies or as
call-proxies. Cells run interleaved in notebook order, so what a test sees matches nbgrader.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmcourse.grading import protocol
from mlmcourse.grading.isolation import Limits, Policy
from mlmcourse.grading.notebook import (
    SourceNotebook,
    Step,
    SubmissionProblem,
    load_source,
    plan_submission,
    referenced_names,
    written_answer_given,
)
from mlmcourse.grading.sandbox import MB, Sandbox, SandboxGone, Zygote, describe_exit

MAX_NOTEBOOK_BYTES = 50 * MB
MAX_CELL_OUTPUT_CHARS = 20_000
MAX_MESSAGE_CHARS = 600
_MEMORY_ERRORS = ("MemoryError",)
_MEMORY_HINTS = ("can't allocate memory", "cannot allocate memory", "out of memory")
# exception types a sandbox error is re-raised as in a test (so `pytest.raises`-style checks work)
_REBUILDABLE = {name for name, obj in vars(builtins).items()
                if isinstance(obj, type) and issubclass(obj, Exception)
                and name not in ("BaseExceptionGroup", "ExceptionGroup")}


class StudentCodeError(Exception):
    """An exception of a non-builtin type raised by the student's code in the sandbox."""


class _NoMagics:
    """``get_ipython()`` for trusted setup/test code: line and cell magics do nothing."""

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    run_cell_magic = system = run_line_magic


@dataclass
class TrustedAssignment:
    """A source notebook and the namespace its setup cells build (once per worker)."""

    source: SourceNotebook
    namespace: dict[str, Any]
    setup_refs: set[str]


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
                code = compile(transformer.transform_cell(cell.source), f"<setup {cell.grade_id}>",
                               "exec")
                exec(code, namespace)  # noqa: S102 - the instructor's trusted setup cell
                refs |= referenced_names(cell.source)
    return TrustedAssignment(source, namespace, refs)


class SandboxFunction:
    """Calls a student's function in the sandbox; arguments and result cross as plain data."""

    def __init__(self, run: GradingRun, name: str) -> None:
        self._run, self.__name__ = run, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._run.request(["call", self.__name__, list(args), kwargs], strict=True)
        return self._run.value_or_raise(reply)

    def __repr__(self) -> str:
        return f"<student function {self.__name__}>"


@dataclass
class CellResult:
    """The outcome of one graded cell."""

    kind: str
    max_points: float
    points: float | None = 0.0
    passed: bool | None = False
    message: str = ""
    misconception: str | None = None


@dataclass
class GradingRun:
    """The state of grading one submission."""

    trusted: TrustedAssignment
    sandbox: Sandbox | None
    deadline: float
    limits: Limits
    timeout: float
    dead_reason: str = ""
    memory_hit: bool = False
    fetched: set[str] = field(default_factory=set)
    outputs: dict[int, list[dict]] = field(default_factory=dict)

    def request(self, message: list, *, strict: bool = False) -> Any:
        if self.sandbox is None:
            raise SandboxGone(self.dead_reason)
        if strict:
            protocol.encode(message)  # raises TypeError on non-plain arguments, before sending
        try:
            return self.sandbox.exchange(message, self.deadline)
        except SandboxGone as exc:
            self.dead_reason = self._explain(str(exc))
            self.sandbox = None
            raise SandboxGone(self.dead_reason) from None

    def _explain(self, what: str) -> str:
        exit = self.sandbox.close() if self.sandbox is not None else None
        if what == "timeout":
            return f"timeout after {self.timeout:g} s"
        if what == "output limit":
            return f"output limit {self.limits.output_bytes / MB:g} MB exceeded"
        if what == "exited" and exit is not None:
            if exit.maxrss_kb * 1024 >= 0.9 * self.limits.memory_bytes:
                return f"memory limit {self.limits.memory_bytes / 1024**3:g} GB exceeded"
            return describe_exit(exit, self.limits)
        return what

    def value_or_raise(self, reply: Any) -> Any:
        if not isinstance(reply, list) or not reply:
            raise StudentCodeError("the sandbox sent an unexpected reply")
        if reply[0] == "value" and len(reply) == 2:
            value = reply[1]
            if isinstance(value, protocol.Callable):
                return SandboxFunction(self, value.name)
            return value
        if reply[0] == "error" and len(reply) == 3:
            name, message = str(reply[1]), str(reply[2])
            self._note_memory(name, message)
            kind = getattr(builtins, name) if name in _REBUILDABLE else None
            if kind is None:
                raise StudentCodeError(f"{name}: {message}")
            try:
                rebuilt = kind(message)
            except TypeError:  # constructors with other signatures (UnicodeDecodeError, ...)
                raise StudentCodeError(f"{name}: {message}") from None
            raise rebuilt
        raise StudentCodeError("the sandbox sent an unexpected reply")

    def _note_memory(self, name: str, message: str) -> None:
        if name in _MEMORY_ERRORS or any(h in message.lower() for h in _MEMORY_HINTS):
            self.memory_hit = True

    def fetch(self, names: set[str], namespace: dict[str, Any]) -> None:
        """Copy the student's current values of ``names`` into a test namespace."""
        for name in sorted(names):
            reply = self.request(["get", name])
            if reply != ["missing"]:
                namespace[name] = self.value_or_raise(reply)
                self.fetched.add(name)
            elif name in self.fetched:  # the student deleted it since: so does the test's view
                namespace.pop(name, None)
                self.fetched.discard(name)


def _stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text[:MAX_CELL_OUTPUT_CHARS]}


def _error(ename: str, evalue: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def _failure_message(exc: BaseException) -> tuple[str, str | None]:
    from mlmcourse.grading.misconceptions import Misconception

    code = exc.code if isinstance(exc, Misconception) else None
    text = str(exc).strip()
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return message[:MAX_MESSAGE_CHARS], code


def _run_student_cell(run: GradingRun, step: Step) -> None:
    reply = run.request(["run", step.submitted_source])
    out = run.outputs.setdefault(step.index, [])
    if run.sandbox is not None:
        text = run.sandbox.take_output()
        if text:
            out.append(_stream(text))
    if isinstance(reply, list) and len(reply) == 3 and reply[0] == "error":
        run._note_memory(str(reply[1]), str(reply[2]))
        out.append(_error(str(reply[1]), str(reply[2])[:MAX_MESSAGE_CHARS]))


def _run_test_cell(run: GradingRun, step: Step, namespace: dict, test_refs: set[str]) -> CellResult:
    from IPython.core.inputtransformer2 import TransformerManager

    cell = step.cell
    result = CellResult("test", cell.points)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        test_refs |= referenced_names(cell.source)
        run.fetch((test_refs | run.trusted.setup_refs) & run.trusted.source.solution_names,
                  namespace)
        code = compile(TransformerManager().transform_cell(cell.source),
                       f"<test {cell.grade_id}>", "exec")
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            exec(code, namespace)  # noqa: S102 - the instructor's trusted test cell
        if stderr.getvalue():
            result.message = "the test wrote to stderr (nbgrader counts that as a failure)"
        else:
            result.points, result.passed = cell.points, True
    except SandboxGone as exc:
        result.message = f"not graded: {exc}"
    except BaseException as exc:  # noqa: BLE001 - any failure of a test is a failed test
        result.message, result.misconception = _failure_message(exc)
    outputs = run.outputs.setdefault(step.index, [])
    if run.sandbox is not None:
        child_text = run.sandbox.take_output()
        if child_text:
            outputs.append(_stream(child_text))
    for name, buffer in (("stdout", stdout), ("stderr", stderr)):
        if buffer.getvalue():
            outputs.append(_stream(buffer.getvalue(), name))
    if not result.passed:
        outputs.append(_error("AssertionError", result.message))
    return result


def prepare_workdir(workroot: Path, slot: int, files: list[tuple[str, str]]) -> Path:
    """A fresh staging copy holding only this student's files (the sandbox copies it again
    into its private ``/tmp/work``)."""
    slot_dir = workroot / f"slot-{slot}"
    slot_dir.mkdir(mode=0o700, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=slot_dir))
    for source, relative in files:
        target = (workdir / relative).resolve()
        if workdir.resolve() not in target.parents:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target, follow_symlinks=False)
    return workdir


def _answer_value(value: Any) -> Any:
    return value if type(value) in (str, int, float, bool) else None


def grade(task: dict, trusted: TrustedAssignment, zygote: Zygote, slot: int) -> dict:
    """Grade one submission; never raises for problems of the submission itself."""
    started = time.monotonic()
    source = trusted.source
    result: dict[str, Any] = {
        "student_id": task["student_id"], "assignment": task["assignment"],
        "submission_sha": task["submission_sha"], "source_sha": source.sha256,
        "settings": task["settings"],
        "status": "failed", "reason": "", "score": 0.0, "max_score": source.max_score,
        "cells": {}, "answers": {}, "warnings": [], "autograded": None,
    }
    try:
        if task["problem"]:
            raise SubmissionProblem(task["problem"])
        raw = Path(task["notebook"]).read_bytes()
        if len(raw) > MAX_NOTEBOOK_BYTES:
            raise SubmissionProblem(f"the notebook is larger than {MAX_NOTEBOOK_BYTES // MB} MB")
        try:
            nb = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SubmissionProblem(f"the notebook is not valid JSON ({exc})") from None
        steps = plan_submission(source, nb)
    except SubmissionProblem as exc:
        result["reason"] = str(exc)
        result["seconds"] = time.monotonic() - started
        return result
    limits = Limits(**task["limits"])
    policy = Policy(enabled=task["sandbox"], slot=slot, uid_base=task["uid_base"],
                    hidden_paths=tuple(task["hidden_paths"]),
                    revealed_paths=tuple(task["revealed_paths"]), path_env=task["path_env"],
                    limits=limits)
    workdir = prepare_workdir(Path(task["workroot"]), slot, task["files"])
    deadline = time.monotonic() + task["timeout"]
    run = GradingRun(trusted, None, deadline, limits, task["timeout"])
    try:
        try:
            run.sandbox = zygote.spawn(policy, str(workdir), deadline)
            result["warnings"] = run.sandbox.warnings
        except SandboxGone as exc:
            run.dead_reason = f"the sandbox did not start ({exc})"
        _run_steps(run, steps, result)
        if run.sandbox is not None:
            for name in sorted(n for n in source.solution_names if n.startswith("answer_")):
                with contextlib.suppress(SandboxGone):
                    reply = run.request(["get", name])
                    if isinstance(reply, list) and reply[:1] == ["value"] and len(reply) == 2:
                        result["answers"][name] = _answer_value(reply[1])
    finally:
        if run.sandbox is not None:
            run.sandbox.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result["autograded"] = _autograded_notebook(nb, source, run.outputs)
    result["seconds"] = time.monotonic() - started
    return result


def _run_steps(run: GradingRun, steps: list[Step], result: dict) -> None:
    namespace = dict(run.trusted.namespace)
    test_refs: set[str] = set()
    written_given = False
    dead_at: int | None = None
    for step in steps:
        cell = step.cell
        if step.kind == "run":
            try:
                _run_student_cell(run, step)
            except SandboxGone:
                if dead_at is None:
                    dead_at = step.index + 1
        elif step.kind == "test":
            cell_result = _run_test_cell(run, step, namespace, test_refs)
            if run.sandbox is None and dead_at is None:
                dead_at = step.index + 1
            result["cells"][cell.grade_id] = vars(cell_result)
        elif step.kind == "written":
            given = written_answer_given(step.submitted_source)
            written_given |= given
            result["cells"][cell.grade_id] = vars(CellResult(
                "written", cell.points, None if given else 0.0, None,
                "to be graded by hand" if given else "no answer written"))
    result["score"] = sum(c["points"] or 0.0 for c in result["cells"].values())
    if run.dead_reason:
        where = f" during cell {dead_at}" if dead_at else ""
        result["reason"] = f"{run.dead_reason}{where}"
    elif run.memory_hit:
        result["reason"] = f"memory limit {run.limits.memory_bytes / 1024**3:g} GB exceeded"
    elif written_given:
        result["status"], result["reason"] = "needs_manual", "written answers to grade by hand"
    else:
        result["status"] = "graded"


def _autograded_notebook(nb: dict, source: SourceNotebook, outputs: dict[int, list[dict]]) -> dict:
    """The submission with locked cells restored from the source and the grading outputs."""
    originals = source.by_id()
    for index, cell in enumerate(nb.get("cells", [])):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        original = originals.get(meta.get("grade_id")) if isinstance(meta, dict) else None
        if original is not None and original.locked:
            cell["source"] = original.source
        if cell.get("cell_type") == "code":
            cell["outputs"] = outputs.get(index, [])
            cell["execution_count"] = None
    return nb
