"""The sandbox wire format: plain data round-trips; anything else is refused or made opaque."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcourse.grading.model import MAX_MESSAGE_CHARS
from mlmcourse.grading.sandbox import messages, protocol


@pytest.mark.parametrize("value", [
    None, True, False, 0, -(10**30), 1.5, float("inf"), "", "héllo", b"\x00\xff",
    [1, "a", None], (1, (2.0, "x")), {"a": [1, 2], "b": {"c": None}},
    np.float64(0.51), np.float32(-1.5), np.int64(3), np.uint8(7), np.bool_(True),
])
def test_plain_values_round_trip_with_their_exact_type(value: object) -> None:
    back = protocol.decode(protocol.encode(value))
    assert back == value
    assert type(back) is type(value)


def test_a_state_dict_arrives_as_a_plain_dict_of_tensors() -> None:
    state = torch.nn.Linear(2, 3).state_dict()
    back = protocol.decode(protocol.encode(state))
    assert type(back) is dict and list(back) == ["weight", "bias"]
    assert all(type(v) is torch.Tensor and torch.equal(v, state[k]) for k, v in back.items())


def test_arrays_and_tensors_round_trip_as_fresh_copies() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = torch.tensor([[1, 2], [3, 4]], dtype=torch.int64)
    got_array, got_tensor = protocol.decode(protocol.encode([array, tensor]))
    assert type(got_array) is np.ndarray and got_array.dtype == np.float32
    np.testing.assert_array_equal(got_array, array)
    assert type(got_tensor) is torch.Tensor and got_tensor.dtype == torch.int64
    assert torch.equal(got_tensor, tensor)
    bf16 = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    assert torch.equal(protocol.decode(protocol.encode(bf16)), bf16)


class S(str):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


class AlwaysEqual:
    def __eq__(self, other: object) -> bool:
        return True


class T(torch.Tensor):
    pass


class F64(np.float64):
    def __eq__(self, other: object) -> bool:
        return True


NOT_PLAIN = [S("A"), AlwaysEqual(), {1: "int key"}, np.array([object()]), {1, 2},
             torch.tensor([1.0]).as_subclass(T), lambda: 1, np.datetime64(0, "s")]


def test_other_real_numbers_cross_as_the_plain_number_they_equal() -> None:
    """A Fraction, a Decimal or a subclass of a number type (whatever its ``__eq__``) arrives as
    the plain ``int`` or ``float`` it equals, never as itself."""
    from decimal import Decimal
    from fractions import Fraction

    for value, plain in ((F64(1.0), 1.0), (Fraction(3, 4), 0.75), (Decimal("0.5"), 0.5),
                         (np.longdouble(0.25), 0.25)):
        for strict in (True, False):
            back = protocol.decode(protocol.encode(value, strict=strict))
            assert type(back) is float and back == plain


@pytest.mark.parametrize("value", NOT_PLAIN)
def test_strict_encoder_rejects_non_plain_data(value: object) -> None:
    with pytest.raises(TypeError, match="plain data"):
        protocol.encode(value)


@pytest.mark.parametrize("value", NOT_PLAIN)
def test_lenient_encoder_sends_an_opaque_marker_that_equals_nothing(value: object) -> None:
    back = protocol.decode(protocol.encode(value, strict=False))
    assert isinstance(back, protocol.Opaque)
    assert back != "A" and not (back == back) and back != AlwaysEqual()
    with pytest.raises(TypeError):
        bool(back)
    with pytest.raises(TypeError):
        np.asarray(back, dtype=float)


def _blob(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


@pytest.mark.parametrize("payload", [
    b"X",  # unknown tag (e.g. a pickle opcode)
    b"\x80\x04\x95",  # a pickle
    b"S" + struct.pack(">Q", 10) + b"abc",  # truncated
    b"N" + b"N",  # trailing bytes
    b"M" + struct.pack(">Q", 1) + b"I" + _blob(b"1") + b"N",  # dict key not a str
    b"A" + _blob(b"object") + struct.pack(">Q", 1) + struct.pack(">Q", 1) + _blob(b"x" * 8),
    b"A" + _blob(b"float64") + struct.pack(">Q", 1) + struct.pack(">Q", 3) + _blob(b"x" * 8),
    b"I" + _blob(b"1e5"),
    b"L" + struct.pack(">Q", 2**40),  # absurd length
    b"G" + _blob(b"object") + _blob(b"x" * 8),  # a scalar of a dtype that is not a number
    b"G" + _blob(b"float64") + _blob(b"x" * 3),  # a scalar of the wrong size
])
def test_decoder_refuses_malformed_messages(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(payload)


def _array(tag: bytes, dtype: bytes, shape: tuple[int, ...], raw: bytes) -> bytes:
    dims = b"".join(struct.pack(">Q", n) for n in shape)
    return tag + _blob(dtype) + struct.pack(">Q", len(shape)) + dims + _blob(raw)


@pytest.mark.parametrize("payload", [
    b"I" + _blob(b"--5"), b"I" + _blob(b"-"), b"I" + _blob(b"5-"),  # int() itself refuses
    _array(b"A", b"float64", (0, 2**63), b""),  # no bytes, but more dimensions than NumPy allows
    _array(b"P", b"float64", (0, 2**62, 2**62), b""),
    _array(b"P", b"bfloat16", (0, 2**63 - 1), b""),
])
def test_malformed_replies_that_numpy_or_int_refuse_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(payload)


VALID = protocol.encode([1, -2, 0.5, "text", b"raw", None, True, {"k": (1, 2)},
                         np.arange(6, dtype=np.int64).reshape(2, 3), np.float32(1.5),
                         torch.ones(2, 2, dtype=torch.bfloat16), 10**30])


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fuzzed_frames_decode_or_raise_the_protocols_own_error(data: st.DataObject) -> None:
    """Every way to break a frame (random bytes, a valid one cut, changed or spliced) ends in
    a value or a ProtocolError, never another exception the grader would take as its own."""
    kind = data.draw(st.sampled_from(["random", "flipped", "cut", "spliced", "int", "array"]))
    if kind == "random":
        payload = data.draw(st.binary(max_size=200))
    elif kind == "int":  # digits and signs in any order
        payload = b"I" + _blob(data.draw(st.from_regex(rb"[-+ ]{0,3}[0-9_]{0,3}-?",
                                                        fullmatch=True)))
    elif kind == "array":  # any dtype name, shape and byte count
        dims = st.sampled_from([0, 1, 2, 3, 2**31, 2**62, 2**63, 2**64 - 1])
        payload = _array(data.draw(st.sampled_from([b"A", b"P"])),
                         data.draw(st.sampled_from([b"float64", b"bfloat16", b"int8", b"bool"])),
                         tuple(data.draw(st.lists(dims, max_size=4))),
                         data.draw(st.sampled_from([b"", b"\0" * 8, b"\1" * 6])))
    elif kind == "cut":
        payload = VALID[:data.draw(st.integers(0, len(VALID) - 1))]
    else:
        at = data.draw(st.integers(0, len(VALID) - 1))
        insert = data.draw(st.binary(min_size=1, max_size=9))
        payload = VALID[:at] + insert + VALID[at + (len(insert) if kind == "flipped" else 0):]
    try:
        protocol.decode(payload, max_items=10_000)
    except protocol.ProtocolError:
        pass


def test_decoder_limits_nesting_depth() -> None:
    payload = b"L" + struct.pack(">Q", 1)
    with pytest.raises(protocol.ProtocolError, match="deeper"):
        protocol.decode(payload * (protocol.MAX_DEPTH + 2) + b"N")


def test_strings_that_are_not_valid_utf8_arrive_as_valid_text() -> None:
    back = protocol.decode(protocol.encode("a\ud800b"))  # a lone surrogate
    assert back == "a\ufffd\ufffd\ufffdb"
    back.encode("utf-8")  # storable anywhere


def test_decoder_counts_values_and_stops_at_the_deadline() -> None:
    payload = protocol.encode([0] * 5000)
    with pytest.raises(protocol.ProtocolError, match="more values"):
        protocol.decode(payload, max_items=1000)
    with pytest.raises(TimeoutError):
        protocol.decode(payload, deadline=0.0)
    assert protocol.decode(payload, max_items=5001) == [0] * 5000


def test_frame_reader_refuses_an_over_long_frame_from_its_header() -> None:
    reader = protocol.FrameReader(max_bytes=100)
    with pytest.raises(protocol.ProtocolError, match="larger than the limit"):
        reader.feed(struct.pack(">I", 101))
    reader = protocol.FrameReader(max_bytes=100)
    frame = protocol.frame(protocol.encode("hi"))
    assert reader.feed(frame[:3]) is None and reader.needed() == 1
    assert protocol.decode(reader.feed(frame[3:])) == "hi"


IPYTHON_SYNTAX = ["%time x = 1", "a = %time 1", "b = !ls", "b=!ls -l", "x?", "x??", "obj.method?",
                  "  %timeit f()", "if 1:\n    !ls\n", ",f a b", ";f a", "/f a", "x? ",
                  "x = (1 +\n%time 2)", "a = \\\n%time 1", "%%time\nx = 1", "!!ls", "?x"]
PLAIN_PYTHON = ["print('?')", "y = 3 % 2", "a != b", "x? # c", "  x = 1\n  y = 2", ">>> x = 1",
                "In [1]: x = 1", "s = '%d' % 3", "d = {'a': 1}  # is it?", "x = 1\n\n\n"]


def test_the_sandboxs_quick_transformer_is_ipythons() -> None:
    """The kernel skips IPython's token transforms where none can apply: every cell of the
    course's notebooks and every piece of IPython syntax turn into exactly what IPython makes."""
    import json

    from IPython.core.inputtransformer2 import TransformerManager

    from mlmcourse.grading.sandbox.kernel import MAYBE_IPYTHON_SYNTAX, quick_transformer

    root = Path(__file__).resolve().parents[2]
    cells = [
        "".join(c["source"])
        for path in [*root.glob("notebooks/*.ipynb"), *root.glob("autograder/source/*/*.ipynb")]
        for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"
    ]
    quick, reference = quick_transformer(), TransformerManager()
    for source in [*cells, *IPYTHON_SYNTAX, *PLAIN_PYTHON]:
        assert quick.transform_cell(source) == reference.transform_cell(source), source
    assert all(MAYBE_IPYTHON_SYNTAX.search(s) for s in IPYTHON_SYNTAX)
    assert not any(MAYBE_IPYTHON_SYNTAX.search(s) for s in PLAIN_PYTHON[:4])


ASYNC_CELLS = ["import asyncio\nawait asyncio.sleep(0)", "async with lock:\n    pass",
               "async for x in gen():\n    print(x)", "x = [await f() for f in fs]"]


def test_the_sandboxs_async_check_is_ipythons() -> None:
    """The kernel skips IPython's top-level-await compile where the words it looks for are
    missing: for every cell of the course and every kind of top-level await, the answer is
    IPython's."""
    import json

    from IPython.core.interactiveshell import InteractiveShell

    from mlmcourse.grading.sandbox.kernel import quick_async_check

    shell = InteractiveShell.instance()
    quick = quick_async_check(shell.should_run_async)
    root = Path(__file__).resolve().parents[2]
    cells = [
        "".join(c["source"])
        for path in [*root.glob("notebooks/*.ipynb"), *root.glob("autograder/source/*/*.ipynb")]
        for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"
    ]
    for source in [*cells, *PLAIN_PYTHON, *ASYNC_CELLS, "def f():\n    return 'await'"]:
        cell = shell.transform_cell(source)
        assert quick(source, transformed_cell=cell) == shell.should_run_async(
            source, transformed_cell=cell), source
    assert all(shell.should_run_async(s, transformed_cell=s) for s in ASYNC_CELLS)


EVERY_MESSAGE = [
    messages.Run("x = 1"), messages.Get("x"), messages.Call("f", [1, [2.0]], {"k": "v"}),
    messages.Forbid(("torch.softmax", "torch.Tensor.softmax"), "test_softmax"),
    messages.Ready(), messages.Refused("mount: EPERM"), messages.Ok(),
    messages.Raised("ValueError", "bad"), messages.Value({"w": [1, 2]}), messages.Missing(),
    messages.Returned(3, [1], {"k": 2}, None), messages.Returned([1], [[1]], {}, 0),
    messages.Returned(2, [], {"k": 2}, "k"),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_crosses_the_wire_as_itself(message: object) -> None:
    wire = protocol.decode(protocol.encode(message.to_wire()))  # type: ignore[attr-defined]
    reader = (messages.request_from_wire if isinstance(message, messages.Request)
              else messages.reply_from_wire)
    assert reader(wire) == message


@pytest.mark.parametrize("wire", [
    None, [], "ok", ["ok", 1], ["value"], ["returned", 1, [], {}], ["error", "ValueError"],
    ["error", 1, "message"], ["returned", 1, "args", {}, None], ["returned", 1, [], [], None],
    ["returned", 1, [], {}, 1.5], ["refused", None], ["run", "x = 1"], ["OK"], [b"ok"],
])
def test_the_grader_refuses_every_reply_outside_the_table(wire: object) -> None:
    """A kernel is student code: a forged or malformed reply is refused, never guessed at."""
    with pytest.raises(messages.BadReply):
        messages.reply_from_wire(wire)


@pytest.mark.parametrize("wire", [["run"], ["run", 1], ["call", "f", (), {}],
                                  ["forbid", ["a", 1], "q"], ["value", 1], ["get", "x", "y"]])
def test_the_kernel_refuses_every_request_outside_the_table(wire: object) -> None:
    with pytest.raises(messages.BadRequest):
        messages.request_from_wire(wire)


def test_reply_messages_are_cut_to_the_one_message_limit() -> None:
    reply = messages.reply_from_wire(["error", "E" * 5000, "m" * 5000])
    assert isinstance(reply, messages.Raised)
    assert len(reply.type_name) == len(reply.message) == MAX_MESSAGE_CHARS
