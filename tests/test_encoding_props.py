"""Canonical encoding: round trips, one encoding per value, strict rejection of everything else."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.errors import DecodeError, NonCanonical, TooLarge, TrailingBytes

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(v: object) -> None:
    data = encoding.encode(v)
    assert encoding.decode(data) == v
    assert encoding.encode(encoding.decode(data)) == data


@given(st.dictionaries(st.text(max_size=8), scalars, min_size=2, max_size=8))
def test_map_order_does_not_change_bytes(d: dict) -> None:
    reversed_d = dict(reversed(list(d.items())))
    assert encoding.encode(d) == encoding.encode(reversed_d)


@given(st.dictionaries(st.text(max_size=8), scalars, min_size=2, max_size=8))
def test_unsorted_map_rejected(d: dict) -> None:
    keys = sorted(d, key=str.encode)
    unsorted = {k: d[k] for k in reversed(keys)}
    raw = msgpack.packb(unsorted, use_bin_type=True)
    if raw != encoding.encode(d):
        with pytest.raises(NonCanonical):
            encoding.decode(raw)


@given(values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_rejected(v: object, extra: bytes) -> None:
    with pytest.raises(TrailingBytes):
        encoding.decode(encoding.encode(v) + extra)


@given(values)
def test_truncation_rejected(v: object) -> None:
    data = encoding.encode(v)
    for cut in range(len(data)):
        if cut == 0:
            continue
        with pytest.raises(DecodeError):
            encoding.decode(data[:cut])


def test_non_minimal_integer_rejected() -> None:
    assert encoding.encode(1) == b"\x01"
    for raw in (b"\xcc\x01", b"\xcd\x00\x01", b"\xd0\x01", b"\xcf" + (1).to_bytes(8, "big")):
        with pytest.raises(NonCanonical):
            encoding.decode(raw)


def test_long_form_string_rejected() -> None:
    with pytest.raises(NonCanonical):
        encoding.decode(b"\xd9\x01a")  # str8 holding a 1-byte string (fixstr is canonical)


def test_duplicate_keys_rejected() -> None:
    raw = b"\x82\xa1a\x01\xa1a\x02"  # {"a": 1, "a": 2}
    with pytest.raises(NonCanonical):
        encoding.decode(raw)


def test_floats_ext_and_non_str_keys_rejected() -> None:
    for raw in (msgpack.packb(1.5), msgpack.packb(msgpack.ExtType(1, b"x")), msgpack.packb({1: 2})):
        with pytest.raises(DecodeError):
            encoding.decode(raw)
    with pytest.raises(DecodeError):
        encoding.encode(1.5)
    with pytest.raises(DecodeError):
        encoding.encode(2**64)


def test_size_limit() -> None:
    with pytest.raises(TooLarge):
        encoding.decode(encoding.encode(b"x" * 100), max_size=50)
    with pytest.raises(DecodeError):
        encoding.decode(b"")
