"""The test cells' public API: the named misconceptions a wrong answer or a common coding mistake
maps to, and the helpers that check answers fairly.

Test cells of the exercises raise :class:`Misconception` with a catalogue id; the grader reads
``exc.code`` (or, in plain nbgrader, the ``[code]`` prefix of the message) to count which
misconceptions a class holds. Feedback sentences explain the mistake without giving the answer.
The helpers :func:`require_choice`, :func:`diagnose_choice`, :func:`require_number`,
:func:`diagnose_number`, :func:`as_real` and :func:`require_tensor` keep the answer checks of the
test cells short, uniform and fair: numbers are accepted in any real type (Python, a fraction or
a decimal, NumPy, 0-dim tensor), tensors are checked for type, exact shape and dtype before
their values are compared.
"""

from __future__ import annotations

import decimal
import json
import math
import numbers
import re
from collections.abc import Collection, Mapping
from importlib import resources

CATALOGUE: dict[str, str] = json.loads(
    resources.files("mlmcourse").joinpath("data", "misconceptions.json").read_text("utf-8"))
"""The course's misconceptions: id -> the feedback sentence that explains it (the data lives in
``mlmcourse/data/misconceptions.json``, beside the course, not in the grader)."""
_CODE = re.compile(r"^\[([a-z0-9-]+)\] ")


def explain(code: str) -> str:
    """The feedback sentence of misconception ``code`` (``""`` for a code the course does not
    name): what the grader is given to explain a class's mistakes."""
    return CATALOGUE.get(code, "")


class Misconception(AssertionError):
    """A test failure caused by a named misconception; ``str(exc)`` is ``"[code] sentence"``."""

    def __init__(self, code: str, detail: str = "") -> None:
        if code not in CATALOGUE:
            raise KeyError(f"unknown misconception {code!r}; add it to CATALOGUE")
        self.code = code
        message = f"[{code}] {CATALOGUE[code]}"
        super().__init__(f"{message} {detail}".strip())


def misconception_code(message: str) -> str | None:
    """The code of the misconception a failure's message names (``"[code] sentence"``, as
    :class:`Misconception` writes it, possibly after ``"TypeName: "``), else ``None``."""
    match = _CODE.match(message) or _CODE.match(message.split(": ", 1)[-1])
    return match.group(1) if match else None


def require_choice(answer: object, options: Collection[str], name: str) -> None:
    """Fail with a readable message unless ``answer`` is exactly one of the option strings."""
    if type(answer) is not str or answer not in options:
        listed = ", ".join(repr(o) for o in sorted(options))
        raise AssertionError(f"Set {name} to one of {listed} (a string), got {answer!r}.")


def diagnose_choice(answer: str, correct: str, wrong: Mapping[str, str], name: str) -> None:
    """Raise the misconception of a wrong option, or a plain failure; pass on ``correct``."""
    if answer == correct:
        return
    if answer in wrong:
        raise Misconception(wrong[answer])
    raise AssertionError(f"{name} is not right.")


def as_real(value: object, name: str, finite: bool = True) -> float:
    """``value`` as a ``float``; fail with a readable message unless it is a real number.

    Accepted: every :class:`numbers.Real` (``int``, ``float``, ``fractions.Fraction``, NumPy's
    integer and floating scalars such as ``np.float64`` or ``np.int64``), ``decimal.Decimal``,
    and 0-dim NumPy arrays or torch tensors of an integer or floating dtype. Rejected: ``bool``,
    strings, sequences, tensors with more than one element and, with ``finite`` (the default),
    NaN and infinities.
    """
    number = _real_or_none(value)
    if number is None:
        raise AssertionError(
            f"{name} must be a real number (an int, a float, a fraction, a NumPy number or a "
            f"0-dim tensor), got {_describe(value)}."
        )
    if finite and not math.isfinite(number):
        raise AssertionError(f"{name} must be finite, got {number!r}.")
    return number


def _real_or_none(value: object) -> float | None:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    if isinstance(value, numbers.Real | decimal.Decimal):
        try:
            return float(value)
        except (ArithmeticError, ValueError):  # a signalling NaN, a Fraction beyond float
            return None
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or tuple(shape) != () or dtype is None:
        return None
    kind = str(dtype).removeprefix("torch.")
    if not kind.startswith(("float", "int", "uint", "bfloat")):
        return None
    item = getattr(value, "item", None)
    return float(item()) if callable(item) else None


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", "?")
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 60 else text


def require_number(answer: object, name: str) -> None:
    """A readable failure unless the answer of a numeric question is a finite real number (see
    :func:`as_real`). Returns ``None``: a test cell may end with this call, as nbgrader reads a
    number a test cell ends with as partial credit."""
    if _real_or_none(answer) is None:
        raise AssertionError(
            f"Set {name} to a number (an int, a float, a fraction, a NumPy number or a 0-dim "
            f"tensor), got {_describe(answer)}."
        )
    as_real(answer, name)


def require_tensor(
    value: object,
    name: str,
    shape: tuple[int, ...],
    kind: str = "float",
    finite: bool = True,
):
    """Fail with a readable message unless ``value`` is a torch tensor of exactly ``shape``
    (compared before any value: ``torch.allclose`` would broadcast) and of the ``kind`` asked:
    ``"float"`` (float32 or float64) or ``"int"`` (an integer dtype, not bool). With
    ``finite``, NaN and infinities fail too. Returns the tensor."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{name} must be a torch.Tensor, got {_describe(value)}.")
    if tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}.")
    if kind == "float" and value.dtype not in (torch.float32, torch.float64):
        raise AssertionError(f"{name} must be a float32 or float64 tensor, got {value.dtype}.")
    if kind == "int" and (
        value.is_floating_point() or value.is_complex() or value.dtype == torch.bool
    ):
        raise AssertionError(f"{name} must hold integer ids, got {value.dtype}.")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise AssertionError(f"{name} holds NaN or infinite values.")
    return value


def diagnose_number(
    answer: float,
    correct: float,
    wrong: Mapping[str, float],
    name: str,
    rel_tol: float = 1e-2,
    abs_tol: float = 1e-9,
) -> None:
    """Pass when ``answer`` is within ``rel_tol`` (relative) or ``abs_tol`` (absolute) of
    ``correct``; else raise the misconception whose typical wrong value is within the same
    tolerance of it, or a plain failure. ``answer`` may be any real number :func:`as_real` takes."""
    answer = as_real(answer, name)
    if math.isclose(answer, correct, rel_tol=rel_tol, abs_tol=abs_tol):
        return
    for code, value in wrong.items():
        if math.isclose(answer, value, rel_tol=rel_tol, abs_tol=abs_tol):
            raise Misconception(code)
    raise AssertionError(f"{name} is not right.")
