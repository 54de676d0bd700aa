"""The tiny kernel inside a sandbox child: runs cells, hands out values, calls functions.

It answers the typed requests of :mod:`~mlmcourse.grading.sandbox.messages` (the table there):
:class:`~.messages.Run` a cell, :class:`~.messages.Get` a value (a function stays here and is
handed out as a ``Callable`` marker), :class:`~.messages.Call` a function (its arguments come
back as the function left them), :class:`~.messages.Forbid` reference functions: from then on,
calling one raises :class:`ForbiddenShortcut` naming the question. The grader sends every
question's list before the first cell the student wrote, and the stubs are put back before every
request, so re-importing the module in one cell does not undo them in the next. Code that
reloads the module or reaches the C function by another path still gets the real one (see the
instructor guide: the stubs share the student's process).

Everything here runs in the sandbox, so none of it is trusted: the grader only relies on the
decoder of the replies (:func:`~.messages.reply_from_wire`).
"""

from __future__ import annotations

import re
import sys
from typing import Any

from mlmcourse.grading.model import MAX_MESSAGE_CHARS
from mlmcourse.grading.sandbox import protocol
from mlmcourse.grading.sandbox.messages import (
    BadRequest,
    Forbid,
    Get,
    Missing,
    Ok,
    Raised,
    Reply,
    Request,
    Returned,
    Run,
    Value,
    request_from_wire,
)

MAX_REQUEST_BYTES = 256 * 1024 * 1024


class ForbiddenShortcut(Exception):
    """The submission called a function its question asks the student to write themselves."""


_forbidden: dict[str, str] = {}  # dotted name -> the question that forbids it


def _stub(name: str, question: str) -> Any:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise ForbiddenShortcut(f"{name} may not be used here: question {question} asks for "
                                "your own code")

    forbidden.__name__ = name.rsplit(".", 1)[-1]
    return forbidden


def _owner(name: str) -> tuple[Any, str]:
    """The object holding the last part of a dotted name and that part: a module
    (``torch.nn.functional.softmax``), or a class in one (``torch.Tensor.softmax``)."""
    import importlib

    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            owner = sys.modules.get(module_name) or importlib.import_module(module_name)
        except ImportError:
            continue
        for part in parts[split:-1]:
            owner = getattr(owner, part)
        return owner, parts[-1]
    raise ImportError(name)


def _apply_forbidden() -> None:
    for name, question in _forbidden.items():
        try:
            owner, attribute = _owner(name)
            setattr(owner, attribute, _stub(name, question))
        except Exception:  # a name that does not exist cannot be called either
            pass


MAYBE_IPYTHON_SYNTAX = re.compile(r"^\s*[%!?,;/]|=\s*[%!]|\?\s*$", re.MULTILINE)
"""Lines that could hold IPython's own syntax: an escape (``%magic``, ``!shell``, ``?help``,
autocall) opening a line, ``= %magic`` / ``= !shell``, or ``?`` ending one. Every place where
IPython's token transforms act matches this (the converse need not hold)."""


def quick_transformer() -> Any:
    """IPython's input transformer, without its token transforms (a full tokenisation of the
    cell, milliseconds each) for cells where none could apply."""
    from IPython.core.inputtransformer2 import TransformerManager

    class QuickTransformer(TransformerManager):
        def do_token_transforms(self, lines: list[str]) -> list[str]:
            if MAYBE_IPYTHON_SYNTAX.search("".join(lines)):
                return super().do_token_transforms(lines)
            return lines

    return QuickTransformer()


MAYBE_ASYNC = re.compile(r"\b(?:await|async)\b")
"""Top-level ``await``, ``async for`` and ``async with``, the only code IPython runs as a
coroutine, all hold one of these words."""


def quick_async_check(should_run_async: Any) -> Any:
    """IPython's check for top-level ``await`` (a second compile of every cell), skipped for a
    cell without the words it looks for."""

    def check(raw_cell: str, *, transformed_cell: str | None = None,
              preprocessing_exc_tuple: Any = None) -> bool:
        if transformed_cell is not None and not MAYBE_ASYNC.search(transformed_cell):
            return False
        return should_run_async(raw_cell, transformed_cell=transformed_cell,
                                preprocessing_exc_tuple=preprocessing_exc_tuple)

    return check


def make_shell() -> Any:
    """A fresh IPython ``InteractiveShell`` without history (created before forking, once).

    A shell the forking process already had (the zygote forked from an IPython session or a
    test run) is dropped first: ``instance`` would return it and ignore this configuration,
    handing the sandbox that shell's namespace and its history thread."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    shell.input_transformer_manager = quick_transformer()
    shell.should_run_async = quick_async_check(shell.should_run_async)  # type: ignore[method-assign]
    return shell


def _describe(exc: BaseException) -> Raised:
    try:
        message = str(exc)[:MAX_MESSAGE_CHARS]
    except BaseException:  # a student's __str__ may raise anything
        message = "<unprintable message>"
    return Raised(type(exc).__name__, message)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _handle(shell: Any, request: Request) -> Reply:
    if isinstance(request, Forbid):
        _forbidden.update(dict.fromkeys(request.names, request.question))
        _apply_forbidden()
        return Ok()
    _apply_forbidden()
    if isinstance(request, Run):
        result = shell.run_cell(request.source, store_history=True)
        error = result.error_before_exec or result.error_in_exec
        return _describe(error) if error is not None else Ok()
    if isinstance(request, Get):
        if request.name not in shell.user_ns:
            return Missing()
        value = shell.user_ns[request.name]
        return Value(protocol.Callable(request.name) if callable(value) else value)
    args, kwargs = request.args, request.kwargs
    try:
        result = shell.user_ns[request.name](*args, **kwargs)
    except BaseException as exc:  # reported to the grader as data
        return _describe(exc)
    same: int | str | None = next((i for i, arg in enumerate(args) if arg is result), None)
    if same is None:
        same = next((key for key, arg in kwargs.items() if arg is result), None)
    return Returned(result, args, kwargs, same)


def serve(shell: Any, request_fd: int, reply_fd: int) -> None:
    """Answer requests until the grader closes the pipe (forked copies of the kernel exit)."""
    import os

    kernel_pid = os.getpid()
    while True:
        try:
            request = protocol.recv(request_fd, MAX_REQUEST_BYTES)
        except (EOFError, protocol.ProtocolError):
            return
        reply: Reply
        try:
            reply = _handle(shell, request_from_wire(request))
        except BadRequest as exc:
            reply = Raised("ProtocolError", str(exc))
        except BaseException as exc:
            reply = _describe(exc)
        if os.getpid() != kernel_pid:
            os._exit(0)
        _flush()
        protocol.send(reply_fd, reply.to_wire(), strict=False)
