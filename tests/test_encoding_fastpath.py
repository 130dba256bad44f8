"""The non-copying encode path gives exactly the bytes (and errors) of the reference walk."""

from __future__ import annotations

import enum
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.errors import DecodeError


class Kind(enum.IntEnum):
    A = 1
    B = 300


def reference(v: Any) -> bytes:
    """The original definition: copy into canonical shape, then pack."""
    return msgpack.packb(encoding._canon(v), use_bin_type=True)  # type: ignore[no-any-return]


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=16)
    | st.sampled_from([Kind.A, Kind.B])
    | st.binary(max_size=8).map(bytearray)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=20)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(st.text(max_size=6), inner, max_size=6)
        # maps built in reverse key order: not canonical as given
        | st.dictionaries(st.text(max_size=6), inner, max_size=6).map(
            lambda d: dict(reversed(list(d.items())))
        )
    ),
    max_leaves=40,
)


@given(values)
def test_fast_path_bytes_equal_reference(v: Any) -> None:
    assert encoding.encode(v) == reference(v)


@given(values)
def test_fast_path_does_not_mutate(v: Any) -> None:
    before = reference(v)
    encoding.encode(v)
    assert reference(v) == before


bad = st.sampled_from(
    [1.5, 2**64, -(2**63) - 1, {1: 2}, object(), {"a": [1, {"b": 2**70}]}, [1, (2, 3.0)]]
)


@given(st.lists(scalars, max_size=5), bad, st.integers(0, 5))
def test_fast_path_rejects_what_reference_rejects(items: list[Any], b: Any, at: int) -> None:
    v = [*items[:at], b, *items[at:]]
    with pytest.raises(DecodeError):
        reference(v)
    with pytest.raises(DecodeError):
        encoding.encode(v)
    with pytest.raises(DecodeError):
        encoding.encode({"k": v})


@given(st.lists(values, max_size=40))
def test_encoded_list_concatenation(items: list[Any]) -> None:
    assert encoding.encode_encoded_list([encoding.encode(x) for x in items]) == encoding.encode(
        items
    )


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_array_header_is_shortest(n: int) -> None:
    assert encoding.encode_encoded_list([b"\xc0"] * n) == encoding.encode([None] * n)


# --- the narrower fast paths other modules use (encode_shaped, decode_mapless, decode_stored,
# Reader): each agrees with encode/decode on the inputs it is for --------------------------

mapless = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=12),
    max_leaves=30,
)


@given(values)
def test_encode_shaped_equals_encode_on_canonical_shapes(v: Any) -> None:
    canon = encoding.canonical(v)
    assert encoding.encode_shaped(canon) == encoding.encode(v)


@given(mapless)
def test_decode_mapless_equals_decode(v: Any) -> None:
    data = encoding.encode(v)
    assert encoding.decode_mapless(data) == encoding.decode(data) == v
    assert encoding.decode_stored(data) == v


@given(mapless, st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
def test_decode_mapless_refuses_what_decode_refuses(v: Any, at: int, byte: int) -> None:
    data = bytearray(encoding.encode(v))
    data[at % len(data)] = byte
    try:
        expected: Any = encoding.decode(bytes(data))
    except DecodeError:
        with pytest.raises(DecodeError):
            encoding.decode_mapless(bytes(data))
        return
    if isinstance(expected, list) and encoding._has_map(expected, 0) or isinstance(expected, dict):
        with pytest.raises(DecodeError):  # a map is outside what it reads
            encoding.decode_mapless(bytes(data))
    else:
        assert encoding.decode_mapless(bytes(data)) == expected


def test_decode_mapless_refuses_maps_and_non_minimal_forms() -> None:
    with pytest.raises(DecodeError):
        encoding.decode_mapless(encoding.encode([1, {"a": 1}]))
    with pytest.raises(DecodeError):
        encoding.decode_mapless(b"\x91\xcc\x01")  # [1] with a one-byte uint form
    with pytest.raises(DecodeError):
        encoding.decode_mapless(encoding.encode([1]) + b"\x00")
    with pytest.raises(DecodeError):
        encoding.decode_mapless(b"")


@given(st.lists(values, min_size=1, max_size=8))
def test_reader_cuts_a_list_into_its_items_bytes(items: list[Any]) -> None:
    payload = encoding.encode(items)
    r = encoding.Reader(payload)
    assert r.array_header() == len(items)
    start = r.offset()
    for item in items:
        r.skip()
        assert payload[start : r.offset()] == encoding.encode(item)
        start = r.offset()
    assert r.offset() == len(payload)


def test_reader_errors_are_decode_errors() -> None:
    r = encoding.Reader(encoding.encode([1, 2])[:-1])
    assert r.array_header() == 2
    r.value()
    with pytest.raises(DecodeError):
        r.value()
    with pytest.raises(DecodeError):
        encoding.Reader(b"\xc1").value()  # a byte MessagePack never uses
