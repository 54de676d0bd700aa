"""What a question's "forbidden" list can promise, and what it cannot (issue 17, item 7).

The grader replaces each forbidden library function by a stub that raises ``ForbiddenShortcut``,
inside the student's own process (the sandbox), before the first cell the student wrote runs.
So a call by any name the student can reach through a module, imported before or after that,
is caught; code that brings the real function back on purpose (reloading its module, calling
the C function under it by another path, digging it out of the garbage collector) is not: the
instructor guide says so, and this file shows both sides.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from cases import variants as v

from mlmcourse.grading.grade import trusted
from mlmcourse.grading.inputs.notebook import plan_submission, read_submission
from mlmcourse.grading.model import Result
from mlmcourse.grading.sandbox.messages import Get, Missing, Ok, Reply, Request
from mlmcourse.grading.sandbox.policy import Limits


class _Recorder:
    """A sandbox that answers every request and records it (no student code runs)."""

    def __init__(self) -> None:
        self.requests: list[list[Any]] = []

    def exchange(self, message: Request, deadline: float) -> Reply:
        self.requests.append(message.to_wire())  # recorded in its wire form
        return Missing() if isinstance(message, Get) else Ok()

    def take_output(self) -> str:
        return ""

    def close(self, grace: float = 0.0) -> None:
        return None


def test_every_forbidden_list_is_in_place_before_the_first_student_cell() -> None:
    """ex3 with a cell of the student's own before the softmax question: the grader sends
    every question's list after the instructor's setup and before that cell, so a reference
    the cell keeps is already the stub."""
    source_path = v.source_path("ex3_distribution")
    assignment = trusted.load_trusted(source_path)
    nb = v.read(source_path)  # the solution, as submitted
    own = "from torch.nn.functional import softmax as kept"
    nb.cells.insert(2, nbformat.v4.new_code_cell(own))
    steps = plan_submission(assignment.source, read_submission(nbformat.writes(nb).encode()))
    recorder = _Recorder()
    run = trusted.GradingRun(assignment, recorder, time.monotonic() + 600,  # type: ignore[arg-type]
                             Limits(), 600)
    trusted._run_steps(run, steps, Result("s", "ex3_distribution", assignment.source.max_score))

    kinds = [(r[0], r[1] if r[0] == "run" else None) for r in recorder.requests]
    first_student = kinds.index(("run", own))
    forbids = [i for i, r in enumerate(recorder.requests) if r[0] == "forbid"]
    declared = {c.grade_id: c.forbidden for c in assignment.source.cells if c.forbidden}
    assert declared and len(forbids) == len(declared)
    assert all(i < first_student for i in forbids)
    setup = [c.source for c in assignment.source.cells if c.is_setup]
    assert setup and all(("run", s) in kinds[: forbids[0]] for s in setup)
    sent = {r[2]: tuple(r[1]) for r in recorder.requests if r[0] == "forbid"}
    assert sent == declared


# The sandbox's side, in a fresh interpreter (the stubs change torch for the whole process):
# the kernel's own request handler with ex3's list in force, then one student function per
# way of reaching softmax; each prints whether it was stopped.
_KERNEL = """
import json, sys
from mlmcourse.grading.sandbox import kernel
from mlmcourse.grading.sandbox.messages import Call, Forbid, Raised, Returned, Run
shell = kernel.make_shell()
ask = lambda request: kernel._handle(shell, request)
ask(Run("import torch\\nimport torch.nn.functional as F"))
ask(Forbid(tuple(json.loads(sys.argv[1])), "softmax"))
ask(Run(sys.argv[2]))
outcomes = {}
for name in json.loads(sys.argv[3]):
    reply = ask(Call(name, [[1.0, 2.0]], {}))
    outcomes[name] = "stopped" if isinstance(reply, Raised) and \\
        reply.type_name == "ForbiddenShortcut" else (
        "ran" if isinstance(reply, Returned) else f"other: {reply}")
print(json.dumps(outcomes))
"""

_STUDENT = '''
from torch import softmax as imported_after
from torch.nn.functional import softmax as f_imported_after


def by_module(x):
    return torch.nn.functional.softmax(torch.tensor(x), dim=-1).tolist()


def by_method(x):
    return torch.tensor(x).softmax(-1).tolist()


def by_alias(x):
    return imported_after(torch.tensor(x), -1).tolist()


def by_functional_alias(x):
    return f_imported_after(torch.tensor(x), dim=-1).tolist()


def by_layer(x):
    return torch.nn.Softmax(dim=-1)(torch.tensor(x)).tolist()


def by_fresh_import(x):
    import importlib
    return importlib.import_module("torch.nn.functional").softmax(torch.tensor(x), -1).tolist()


def by_log_softmax(x):
    return F.log_softmax(torch.tensor(x), -1).exp().tolist()


def by_reload(x):
    import importlib

    import mlmcourse.distribution
    return importlib.reload(mlmcourse.distribution).softmax(torch.tensor(x)).tolist()


def by_c_function(x):
    return torch._C._VariableFunctions.softmax(torch.tensor(x), -1).tolist()


def by_base_class(x):
    return torch._C.TensorBase.softmax(torch.tensor(x), -1).tolist()
'''

CAUGHT = ("by_module", "by_method", "by_alias", "by_functional_alias", "by_layer",
          "by_fresh_import", "by_log_softmax")
NOT_CAUGHT = ("by_reload", "by_c_function", "by_base_class")


def test_what_a_forbidden_list_catches_and_what_it_does_not() -> None:
    """Every ordinary way to call a forbidden function is stopped, including names imported
    in the student's cells and methods of tensors; deliberate circumvention is not (a human
    reviewer's job, as the instructor guide says)."""
    forbidden = next(c.metadata["mlmcourse"]["forbidden"]
                     for c in v.read(v.source_path("ex3_distribution")).cells
                     if v.nbgrader_meta(c).get("grade_id") == "softmax")
    result = subprocess.run(
        [sys.executable, "-c", _KERNEL, json.dumps(forbidden), _STUDENT,
         json.dumps([*CAUGHT, *NOT_CAUGHT])],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcomes == {**dict.fromkeys(CAUGHT, "stopped"), **dict.fromkeys(NOT_CAUGHT, "ran")}
