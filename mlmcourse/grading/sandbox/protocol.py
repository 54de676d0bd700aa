"""The wire format between the trusted grader and a sandboxed submission: plain data only.

A message is a frame: a 4-byte big-endian length, then a payload built by :func:`encode`. The
payload can only describe plain data: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
every other real number (a ``fractions.Fraction``, a ``decimal.Decimal``, ...) as the ``int`` or
``float`` it equals,
NumPy scalars of a number dtype (``np.float64(0.5)``, ``np.int64(3)``), lists, tuples, dicts
with ``str`` keys (an ``OrderedDict``, as ``state_dict()`` returns, arrives as a ``dict``),
NumPy arrays of numbers and CPU torch tensors (raw bytes + dtype + shape), plus
two markers: :class:`Opaque` (a value of any other type, which fails every test) and
:class:`Callable` (a function that stays in the sandbox). Nothing is ever unpickled.

The trusted side treats every reply as hostile: :class:`FrameReader` (the one frame reader of
both sides) refuses a frame longer than its limit before reading it, and :func:`decode` checks
every tag, length and dtype, counts the values it builds against a budget, stops at the
deadline, and turns strings that are not valid UTF-8 (lone surrogates included) into text with
replacement characters, so that no later step (JSON, SQLite, HTML, charts) can choke on them.
"""

from __future__ import annotations

import decimal
import numbers
import os
import re
import select
import struct
import time
from collections import OrderedDict
from typing import Any

import numpy as np

MAX_DEPTH = 32
MAX_INT_DIGITS = 4300
CHECK_EVERY = 4096  # values decoded between two looks at the clock
# dtypes that round-trip through raw bytes (no object, no structured, no datetime)
ALLOWED_DTYPES = frozenset(
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 "
    "complex64 complex128".split()
)
_TORCH_DTYPES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64",
    "complex64", "complex128", "bfloat16",
}
_HEADER = struct.Struct(">I")
_INT = re.compile(rb"-?[0-9]+")
_NUMPY_SCALARS = {np.dtype(name).type for name in ALLOWED_DTYPES}
_NOT_NUMBERS = (bool, np.bool_)  # a truth value is not a number the questions accept


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed message of plain data."""


class Opaque:
    """A sandbox value that is not plain data: it equals nothing and converts to nothing."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        object.__setattr__(self, "type_name", type_name)

    def __repr__(self) -> str:
        return f"<opaque {self.type_name} value from the submission>"

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"the submission's value is a {self.type_name}, not plain data "
            "(str, number, list, dict, array or tensor)"
        )

    __bool__ = __len__ = __iter__ = __float__ = __int__ = __index__ = __array__ = _refuse
    __getitem__ = __call__ = __lt__ = __le__ = __gt__ = __ge__ = __contains__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _refuse
    __neg__ = __abs__ = _refuse

    def __getattr__(self, name: str) -> Any:
        self._refuse()


class Callable:
    """Marks a function that lives in the sandbox (the grader wraps it in a call-proxy)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Callable) and other.name == self.name

    def __repr__(self) -> str:
        return f"Callable({self.name!r})"


def encode(value: Any, *, strict: bool = True) -> bytes:
    """Serialise plain data; other values raise ``TypeError`` (strict) or become :class:`Opaque`."""
    parts: list[bytes] = []
    _encode(value, parts, strict, 0)
    return b"".join(parts)


def frame(payload: bytes) -> bytes:
    """The payload with its length header."""
    return _HEADER.pack(len(payload)) + payload


def _blob(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


def _encode(value: Any, out: list[bytes], strict: bool, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TypeError(f"data nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is int:
        out.append(b"I" + _blob(str(value).encode()))
    elif kind is float:
        out.append(b"D" + struct.pack(">d", value))
    elif kind is str:
        out.append(b"S" + _blob(value.encode("utf-8", "surrogatepass")))
    elif kind is bytes:
        out.append(b"B" + _blob(value))
    elif kind is list or kind is tuple:
        out.append((b"L" if kind is list else b"U") + struct.pack(">Q", len(value)))
        for item in value:
            _encode(item, out, strict, depth + 1)
    elif kind is dict or kind is OrderedDict:  # a state_dict() is an OrderedDict
        if not all(type(k) is str for k in value):
            return _not_plain(value, out, strict, "a dict whose keys are not all str")
        out.append(b"M" + struct.pack(">Q", len(value)))
        for key, item in value.items():
            _encode(key, out, strict, depth + 1)
            _encode(item, out, strict, depth + 1)
    elif kind in _NUMPY_SCALARS:  # exact NumPy scalar types only, never a subclass
        out.append(b"G" + _blob(value.dtype.name.encode()) + _blob(value.tobytes()))
    elif kind is Opaque:
        out.append(b"O" + _blob(value.type_name.encode("utf-8", "replace")))
    elif kind is Callable:
        out.append(b"C" + _blob(value.name.encode("utf-8", "replace")))
    elif kind is np.ndarray and value.dtype.name in ALLOWED_DTYPES:
        _encode_array(b"A", value.dtype.name, value.shape, np.ascontiguousarray(value), out)
    elif isinstance(value, numbers.Real | decimal.Decimal) and kind not in _NOT_NUMBERS:
        _encode_number(value, out, strict)
    elif _is_plain_tensor(value):
        import torch

        tensor = value.detach().contiguous()
        dtype = str(tensor.dtype).removeprefix("torch.")
        raw = tensor.view(torch.int16) if dtype == "bfloat16" else tensor
        _encode_array(b"P", dtype, tuple(tensor.shape), raw.numpy(), out)
    else:
        _not_plain(value, out, strict, f"a {kind.__module__}.{kind.__qualname__}")


def _encode_number(value: Any, out: list[bytes], strict: bool) -> None:
    """Any other real number (``fractions.Fraction``, ``decimal.Decimal``, NumPy's ``longdouble``,
    a subclass of ``int`` or ``float``) as the ``int`` or ``float`` it equals."""
    try:
        number = int(value) if isinstance(value, numbers.Integral) else float(value)
    except Exception:  # a student's number type may fail to convert
        return _not_plain(value, out, strict, f"a number that does not convert ({type(value)})")
    _encode(number, out, strict, MAX_DEPTH)


def _not_plain(value: Any, out: list[bytes], strict: bool, what: str) -> None:
    if strict:
        raise TypeError(f"only plain data crosses the sandbox boundary, got {what}")
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"[:200]
    out.append(b"O" + _blob(name.encode("utf-8", "replace")))


def _is_plain_tensor(value: Any) -> bool:
    torch = __import__("sys").modules.get("torch")
    if torch is None or type(value) not in (torch.Tensor, torch.nn.Parameter):
        return False
    return value.device.type == "cpu" and value.layout == torch.strided and not value.is_quantized


def _encode_array(tag: bytes, dtype: str, shape: tuple, array: np.ndarray,
                  out: list[bytes]) -> None:
    out.append(tag + _blob(dtype.encode()) + struct.pack(">Q", len(shape)))
    out.append(b"".join(struct.pack(">Q", int(n)) for n in shape))
    out.append(_blob(array.tobytes()))


def decode(payload: bytes, *, max_items: int = 1 << 20, deadline: float | None = None) -> Any:
    """Rebuild the plain data of :func:`encode` from bytes, refusing anything malformed.

    At most ``max_items`` values are built (a reply of millions of tiny items costs memory
    far beyond its size in bytes), and decoding stops with ``TimeoutError`` past ``deadline``.
    Every other failure is a :class:`ProtocolError`: a malformed reply is the sender's fault.
    """
    reader = _Reader(payload, max_items, deadline)
    try:
        value = reader.value(0)
    except (ProtocolError, TimeoutError):
        raise
    except Exception as exc:  # NumPy, int() or struct on hostile bytes: still the peer's fault
        raise ProtocolError(f"malformed message ({type(exc).__name__}: {str(exc)[:100]})"
                            ) from None
    if reader.pos != len(payload):
        raise ProtocolError("trailing bytes after the message")
    return value


class _Reader:
    def __init__(self, data: bytes, max_items: int, deadline: float | None) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.items_left = max_items
        self.deadline = deadline

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError("message truncated")
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk

    def count(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def blob(self) -> bytes:
        return self.take(self.count())

    def text(self) -> str:
        return self.blob().decode("utf-8", "replace")

    def _tick(self) -> None:
        self.items_left -= 1
        if self.items_left < 0:
            raise ProtocolError("the message holds more values than the limit")
        if (self.deadline is not None and self.items_left % CHECK_EVERY == 0
                and time.monotonic() > self.deadline):
            raise TimeoutError("decoding the reply ran past the deadline")

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"data nested deeper than {MAX_DEPTH} levels")
        self._tick()
        tag = self.take(1)
        if tag == b"N":
            return None
        if tag in (b"T", b"F"):
            return tag == b"T"
        if tag == b"I":
            digits = self.blob()
            if len(digits) > MAX_INT_DIGITS or not _INT.fullmatch(digits):
                raise ProtocolError("malformed int")
            return int(digits)
        if tag == b"D":
            return struct.unpack(">d", self.take(8))[0]
        if tag == b"S":
            return self.text()
        if tag == b"B":
            return self.blob()
        if tag in (b"L", b"U"):
            n = self.count()
            if n > len(self.data) - self.pos:
                raise ProtocolError("list longer than the message")
            items = [self.value(depth + 1) for _ in range(n)]
            return items if tag == b"L" else tuple(items)
        if tag == b"M":
            n = self.count()
            if n > len(self.data) - self.pos:
                raise ProtocolError("dict longer than the message")
            result: dict[str, Any] = {}
            for _ in range(n):
                key = self.value(depth + 1)
                if type(key) is not str:
                    raise ProtocolError("dict key is not a str")
                result[key] = self.value(depth + 1)
            return result
        if tag == b"O":
            return Opaque(self.text()[:200])
        if tag == b"C":
            return Callable(self.text()[:200])
        if tag in (b"A", b"P"):
            return self.array(tag == b"P")
        if tag == b"G":
            dtype = self.text()
            if dtype not in ALLOWED_DTYPES:
                raise ProtocolError(f"dtype {dtype!r} is not allowed")
            raw = self.blob()
            if len(raw) != np.dtype(dtype).itemsize:
                raise ProtocolError("scalar bytes do not match its dtype")
            return np.frombuffer(raw, dtype=dtype)[0]
        raise ProtocolError(f"unknown tag {tag!r}")

    def array(self, as_tensor: bool) -> Any:
        dtype = self.text()
        if dtype not in (_TORCH_DTYPES if as_tensor else ALLOWED_DTYPES):
            raise ProtocolError(f"dtype {dtype!r} is not allowed")
        ndim = self.count()
        if ndim > 64:
            raise ProtocolError("too many dimensions")
        shape = tuple(self.count() for _ in range(ndim))
        raw = self.blob()
        np_dtype = np.dtype("int16" if dtype == "bfloat16" else dtype)
        if int(np.prod(shape, dtype=object)) * np_dtype.itemsize != len(raw):
            raise ProtocolError("array bytes do not match its shape and dtype")
        array = np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()
        if not as_tensor:
            return array
        import torch

        tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor


class FrameReader:
    """Cuts a byte stream into frames; refuses a frame longer than ``max_bytes`` as soon as its
    header arrives (before its bytes are read)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buffer = bytearray()

    def needed(self) -> int:
        """How many more bytes the frame under way needs (at least 1)."""
        if len(self.buffer) < _HEADER.size:
            return _HEADER.size - len(self.buffer)
        return max(1, _HEADER.size + self._length() - len(self.buffer))

    def _length(self) -> int:
        (length,) = _HEADER.unpack_from(self.buffer)
        if length > self.max_bytes:
            raise ProtocolError(f"a message of {length} bytes is larger than the limit "
                                f"of {self.max_bytes} bytes")
        return length

    def feed(self, chunk: bytes) -> bytes | None:
        """Add bytes; return the next complete frame's payload, if there is one."""
        self.buffer += chunk
        if len(self.buffer) < _HEADER.size:
            return None
        length = self._length()
        end = _HEADER.size + length
        if len(self.buffer) < end:
            return None
        payload = bytes(self.buffer[_HEADER.size:end])
        del self.buffer[:end]
        return payload


def send(fd: int, value: Any, *, strict: bool = True, max_bytes: int | None = None) -> None:
    """Write one framed message to a blocking file descriptor (a value whose encoding is larger
    than ``max_bytes`` is sent as an :class:`Opaque` marker instead)."""
    payload = encode(value, strict=strict)
    if max_bytes is not None and len(payload) > max_bytes:
        payload = encode(Opaque("value larger than the message limit"))
    view = memoryview(frame(payload))
    while view:
        view = view[os.write(fd, view):]


def recv(fd: int, max_bytes: int, deadline: float | None = None) -> Any:
    """Read one message from a blocking file descriptor (``EOFError`` if the peer is gone,
    ``TimeoutError`` past ``deadline``)."""
    reader = FrameReader(max_bytes)
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise TimeoutError
        chunk = os.read(fd, min(reader.needed(), 1 << 20))
        if not chunk:
            raise EOFError
        payload = reader.feed(chunk)
        if payload is not None:
            return decode(payload, deadline=deadline)
