"""Cached and concatenated encodings of blocks and receipts equal the generic encoding."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.base.types import Block, Event, Header, Receipt, Tx, body_hash

KEY = AccountKey.from_name("fastpath")
H32 = st.binary(min_size=32, max_size=32)


def make_tx(nonce: int, amount: int, extra: dict[str, Any]) -> Tx:
    # Unsigned with a raw (possibly unsorted) args map: the encoding must still be canonical.
    return Tx(
        "c",
        "token",
        "transfer",
        {**extra, "to": b"\x01" * 20, "amount": amount},
        KEY.public_key,
        nonce,
        10,
        bytes(64),
    )


@settings(max_examples=40)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**64 - 1),
            st.integers(0, 10**9),
            st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=3),
        ),
        max_size=40,
    ),
    st.integers(0, 2**64 - 1),
    H32,
)
def test_block_encode_equals_generic(
    rows: list[tuple[int, int, dict[str, Any]]], height: int, root: bytes
) -> None:
    txs = tuple(make_tx(n, a, e) for n, a, e in rows)
    header = Header("c", height, 0, root, root, root, len(txs), 0, 5, body_hash=body_hash(txs))
    block = Block(header, txs)
    assert block.encode() == encoding.encode(block.to_obj())
    assert Block.decode(block.encode()) == block


def test_block_encode_long_lists() -> None:
    txs = tuple(make_tx(i, i, {}) for i in range(17))
    for n in (0, 15, 16, 17):
        block = Block(
            Header(
                "c", 1, 0, bytes(32), bytes(32), bytes(32), n, 0, 5, body_hash=body_hash(txs[:n])
            ),
            txs[:n],
        )
        assert block.encode() == encoding.encode(block.to_obj())


@given(
    H32,
    st.booleans(),
    st.integers(0, 2**64 - 1),
    st.none()
    | st.integers(0, 9)
    | st.dictionaries(st.text(max_size=4), st.binary(max_size=4), max_size=3),
    st.lists(st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=3), max_size=3),
)
def test_receipt_encoding_and_hash(
    tx_hash: bytes, ok: bool, gas: int, result: Any, events: list[dict[str, Any]]
) -> None:
    r = Receipt(tx_hash, ok, gas, result, "", "", tuple(Event("token", "e", d) for d in events))
    assert r.encode() == encoding.encode(r.to_obj())
    assert r.hash == encoding.hash_value(r.to_obj())
    assert Receipt.from_obj(encoding.decode(r.encode())) == r


@given(st.binary(min_size=30, max_size=34), st.binary(min_size=30, max_size=34))
def test_tx_leaf_fast_path(a: bytes, b: bytes) -> None:
    from accord.base.merkle import tx_leaf

    assert tx_leaf(a, b) == encoding.hash_value([a, b])


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=6)
    | st.text(max_size=6)
)
nested = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=8,
)


@given(
    H32,
    st.booleans(),
    st.integers(0, 2**64 - 1),
    nested,
    st.lists(st.dictionaries(st.text(max_size=5), nested, max_size=4), max_size=3),
)
def test_trusted_receipt_bytes_equal_the_generic_encoding(
    tx_hash: bytes, ok: bool, gas: int, result: Any, events: list[dict[str, Any]]
) -> None:
    """Receipt.canonical skips the canonical walk for shapes the runtime built itself
    (result through encoding.canonical, event data sorted as emit sorts it): same bytes."""
    evs = tuple(Event("token", "e", encoding.canonical(d)) for d in events)
    fast = Receipt.canonical(tx_hash, ok, gas, encoding.canonical(result), "", "", evs)
    slow = Receipt(tx_hash, ok, gas, encoding.canonical(result), "", "", evs)
    assert fast.encode() == slow.encode() == encoding.encode(slow.to_obj())
    assert fast.hash == slow.hash
