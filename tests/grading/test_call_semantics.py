"""Calling a student's function from a trusted test behaves as in the student's own kernel for
what a test can check: arguments changed in place are changed for the test too, a result that is
an argument is that very object, and every real number arrives as a number.

The sandbox's side is the real kernel's request handler, and every message crosses the real
wire format (encoded, decoded) both ways; only the process boundary is left out.
"""

from __future__ import annotations

import decimal
import fractions
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mlmcourse.checks import as_real, require_number
from mlmcourse.grading.grade import trusted
from mlmcourse.grading.sandbox import kernel, protocol
from mlmcourse.grading.sandbox.messages import (
    Get,
    Reply,
    Request,
    reply_from_wire,
    request_from_wire,
)


class _Run:
    """A grading run whose sandbox is the kernel's handler in this process."""

    def __init__(self, source: str) -> None:
        self.shell = SimpleNamespace(user_ns={})
        exec(source, self.shell.user_ns)

    def request(self, message: Request, *, strict: bool = False) -> Reply:
        request = request_from_wire(protocol.decode(protocol.encode(message.to_wire())))
        reply = kernel._handle(self.shell, request)
        return reply_from_wire(protocol.decode(protocol.encode(reply.to_wire(), strict=False)))

    value_or_raise = trusted.GradingRun.value_or_raise
    note_memory = trusted.GradingRun.note_memory


def _function(source: str, name: str) -> trusted.SandboxFunction:
    return trusted.SandboxFunction(_Run(source), name)  # type: ignore[arg-type]


def test_changes_to_arguments_reach_the_test() -> None:
    clip = _function("def clip(x, d):\n    x.clamp_(max=1.0)\n    d['seen'] = True\n", "clip")
    x, d = torch.tensor([0.5, 3.0]), {"n": 1}
    clip(x, d=d)
    assert torch.equal(x, torch.tensor([0.5, 1.0])) and d == {"n": 1, "seen": True}
    step = _function("def step(p):\n    for k in p:\n        p[k] = p[k] - 1\n    return p\n",
                     "step")
    params = {"w": torch.ones(2)}
    assert step(params) is params and torch.equal(params["w"], torch.zeros(2))
    fresh = _function("def fresh(p):\n    return {k: v - 1 for k, v in p.items()}\n", "fresh")
    params = {"w": torch.ones(2)}
    updated = fresh(params)
    assert updated is not params and torch.equal(params["w"], torch.ones(2))
    grow = _function("def grow(xs, a):\n    xs.append(4)\n    a[0] = 9\n", "grow")
    xs, a = [1, 2, 3], np.zeros(2)
    grow(xs, a)
    assert xs == [1, 2, 3, 4] and a.tolist() == [9.0, 0.0]


def test_setup_values_are_private_to_a_submission() -> None:
    shared = {"example": torch.ones(3), "nested": {"rows": [torch.zeros(1)]}, "torch": torch}
    own = trusted.private_namespace(shared)
    own["example"].add_(1)
    own["nested"]["rows"][0].add_(1)
    assert torch.equal(shared["example"], torch.ones(3)) and own["torch"] is torch
    assert torch.equal(shared["nested"]["rows"][0], torch.zeros(1))


@pytest.mark.parametrize("value", [fractions.Fraction(51, 100), decimal.Decimal("0.51"),
                                   np.longdouble(0.51), np.float32(0.51)])
def test_every_real_number_arrives_as_a_number(value: object) -> None:
    answer = _Run("from decimal import Decimal\nfrom fractions import Fraction\n"
                  f"import numpy as np\nanswer = {value!r}")
    reply = answer.request(Get("answer"))
    got = answer.value_or_raise(reply)
    require_number(got, "answer")
    assert as_real(got, "answer") == pytest.approx(0.51, abs=1e-6)
    require_number(value, "answer")  # the student's own kernel accepts it too
