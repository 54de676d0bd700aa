"""The conversation between the grader and a sandbox's kernel, as typed messages.

The grader sends requests; the kernel answers each with one reply:

============================  =====================================================
request                       replies
============================  =====================================================
(the sandbox starts)          :class:`Ready`, or :class:`Refused` (an isolation step failed)
:class:`Run` a cell           :class:`Ok`, or :class:`Raised`
:class:`Get` a name           :class:`Value` (plain data, an ``Opaque`` or a ``Callable``),
                              or :class:`Missing`
:class:`Call` a function      :class:`Returned`, or :class:`Raised`
:class:`Forbid` functions     :class:`Ok`
============================  =====================================================

On the wire each message is a list of plain data whose first item names it (``["run",
source]``), which :mod:`~mlmcourse.grading.sandbox.protocol` encodes: :meth:`to_wire` gives
it, :func:`request_from_wire` reads it in the kernel and :func:`reply_from_wire` in the
grader. Replies come from code the grader does not trust: :func:`reply_from_wire` accepts only
the shapes of this table and raises :class:`BadReply` for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlmcourse.grading.model import MAX_MESSAGE_CHARS


class BadReply(ValueError):
    """The kernel sent a reply that is none of the shapes of :data:`Reply`."""


class BadRequest(ValueError):
    """The kernel was sent a request that is none of the shapes of :data:`Request`."""


@dataclass(frozen=True)
class Run:
    """Run ``source`` as the student's next cell (IPython syntax included)."""

    source: str

    def to_wire(self) -> list[Any]:
        return ["run", self.source]


@dataclass(frozen=True)
class Get:
    """The student's current value of the global ``name``."""

    name: str

    def to_wire(self) -> list[Any]:
        return ["get", self.name]


@dataclass(frozen=True)
class Call:
    """Call the student's function ``name`` with plain-data arguments."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> list[Any]:
        return ["call", self.name, list(self.args), dict(self.kwargs)]


@dataclass(frozen=True)
class Forbid:
    """From now on, calling one of ``names`` (dotted: ``torch.softmax``) raises, naming
    ``question``: the reference implementations a question asks students to write themselves."""

    names: tuple[str, ...]
    question: str

    def to_wire(self) -> list[Any]:
        return ["forbid", list(self.names), self.question]


Request = Run | Get | Call | Forbid


@dataclass(frozen=True)
class Ready:
    """The sandbox is isolated and waits for requests."""

    def to_wire(self) -> list[Any]:
        return ["ready"]


@dataclass(frozen=True)
class Refused:
    """The sandbox could not be isolated as its policy says (``reason``) and runs nothing."""

    reason: str

    def to_wire(self) -> list[Any]:
        return ["refused", self.reason]


@dataclass(frozen=True)
class Ok:
    """The cell ran (or the functions are forbidden) without an exception."""

    def to_wire(self) -> list[Any]:
        return ["ok"]


@dataclass(frozen=True)
class Raised:
    """The student's code raised ``type_name`` with ``message`` (at most
    :data:`~mlmcourse.grading.model.MAX_MESSAGE_CHARS` characters)."""

    type_name: str
    message: str

    def to_wire(self) -> list[Any]:
        return ["error", self.type_name, self.message[:MAX_MESSAGE_CHARS]]


@dataclass(frozen=True)
class Value:
    """The value of a name: plain data, or a protocol ``Opaque`` or ``Callable`` marker."""

    value: Any

    def to_wire(self) -> list[Any]:
        return ["value", self.value]


@dataclass(frozen=True)
class Missing:
    """The student's namespace has no such name."""

    def to_wire(self) -> list[Any]:
        return ["missing"]


@dataclass(frozen=True)
class Returned:
    """A call's ``result``, and its arguments as the function left them (a function may change
    them in place, as in the student's own kernel); ``same`` is the position (``int``) or
    keyword (``str``) of the argument the result *is*, else ``None``."""

    result: Any
    args: list[Any]
    kwargs: dict[str, Any]
    same: int | str | None = None

    def to_wire(self) -> list[Any]:
        return ["returned", self.result, self.args, self.kwargs, self.same]


Reply = Ready | Refused | Ok | Raised | Value | Missing | Returned


def _shape(data: Any, error: type[ValueError], names: dict[str, int]) -> tuple[str, list[Any]]:
    """The name and items of a wire message whose name is one of ``names`` (with that many
    items after it)."""
    if type(data) is not list or not data or type(data[0]) is not str or data[0] not in names:
        raise error(f"not a message: {str(data)[:80]!r}")
    if len(data) != names[data[0]] + 1:
        raise error(f"{data[0]!r} with {len(data) - 1} items")
    return data[0], data[1:]


_REQUESTS = {"run": 1, "get": 1, "call": 3, "forbid": 2}
_REPLIES = {"ready": 0, "refused": 1, "ok": 0, "error": 2, "value": 1, "missing": 0,
            "returned": 4}


def request_from_wire(data: Any) -> Request:
    """The request ``data`` encodes (in the kernel); :class:`BadRequest` for any other shape."""
    name, items = _shape(data, BadRequest, _REQUESTS)
    if name == "run" and type(items[0]) is str:
        return Run(items[0])
    if name == "get" and type(items[0]) is str:
        return Get(items[0])
    if name == "call" and type(items[0]) is str and type(items[1]) is list \
            and type(items[2]) is dict:
        return Call(items[0], items[1], items[2])
    if name == "forbid" and type(items[0]) is list and type(items[1]) is str \
            and all(type(n) is str for n in items[0]):
        return Forbid(tuple(items[0]), items[1])
    raise BadRequest(f"{name!r} with items of the wrong types")


def reply_from_wire(data: Any) -> Reply:
    """The reply ``data`` encodes (in the grader); :class:`BadReply` for any other shape.
    Messages are cut to :data:`~mlmcourse.grading.model.MAX_MESSAGE_CHARS` characters."""
    name, items = _shape(data, BadReply, _REPLIES)
    if name == "ready":
        return Ready()
    if name == "ok":
        return Ok()
    if name == "missing":
        return Missing()
    if name == "value":
        return Value(items[0])
    if name == "refused" and type(items[0]) is str:
        return Refused(items[0][:MAX_MESSAGE_CHARS])
    if name == "error" and type(items[0]) is str and type(items[1]) is str:
        return Raised(items[0][:MAX_MESSAGE_CHARS], items[1][:MAX_MESSAGE_CHARS])
    if name == "returned" and type(items[1]) is list and type(items[2]) is dict \
            and (items[3] is None or type(items[3]) in (int, str)):
        return Returned(*items)
    raise BadReply(f"{name!r} with items of the wrong types")
