"""The non-copying encode path gives exactly the bytes (and errors) of the reference walk."""

from __future__ import annotations

import enum
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord import encoding
from accord.errors import DecodeError


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
    lambda inner: st.lists(inner, max_size=20)
    | st.lists(inner, max_size=5).map(tuple)
    | st.dictionaries(st.text(max_size=6), inner, max_size=6)
    # maps built in reverse key order: not canonical as given
    | st.dictionaries(st.text(max_size=6), inner, max_size=6).map(lambda d: dict(reversed(list(d.items())))),
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


bad = st.sampled_from([1.5, 2**64, -(2**63) - 1, {1: 2}, object(), {"a": [1, {"b": 2**70}]}, [1, (2, 3.0)]])


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
    assert encoding.encode_encoded_list([encoding.encode(x) for x in items]) == encoding.encode(items)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_array_header_is_shortest(n: int) -> None:
    assert encoding.encode_encoded_list([b"\xc0"] * n) == encoding.encode([None] * n)
