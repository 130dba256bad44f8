"""Proposals are decoded transaction by transaction, reusing the ones a validator already has.

The fast decoder must return exactly what strict generic decoding returns, accept exactly the
same payloads, and never let a known transaction stand in for different bytes.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import DecodeError
from accord.base.types import Block, Certificate, Header, Tx, body_hash
from accord.consensus.messages import Proposal, _decode_other, decode_message

N = 4
MAX = 1 << 22
KEY = AccountKey.from_name("proposal-decoding")


def _txs(count: int, salt: int = 0) -> list[Tx]:
    return [
        Tx.create(
            KEY,
            chain_id="c",
            contract="token",
            method="transfer",
            args={"to": bytes(20), "amount": salt + i},
            nonce=i,
            gas_limit=100_000,
        )
        for i in range(count)
    ]


def _proposal(txs: list[Tx], *, cert: bool = False) -> Proposal:
    header = Header(
        "c",
        5,
        2,
        b"\x01" * 32,
        b"\x02" * 32,
        b"\x03" * 32,
        len(txs),
        1,
        1000,
        b"\x04" * 96,
        body_hash(txs),
    )
    parent = Certificate(4, 0, 2, b"\x05" * 32, b"\x0f", b"\x06" * 96) if cert else None
    return Proposal(2, 1, b"\x04" * 96, Block(header, tuple(txs)), None, parent)


def _pool(txs: list[Tx]) -> dict[bytes, Tx]:
    return {t.hash: t for t in txs}


@settings(max_examples=30, deadline=None)
@given(count=st.integers(0, 40), known_share=st.floats(0, 1), cert=st.booleans())
def test_fast_decoding_equals_strict_decoding(count: int, known_share: float, cert: bool) -> None:
    txs = _txs(count)
    prop = _proposal(txs, cert=cert)
    payload = prop.encode()
    assert payload == encoding.encode(prop.to_obj())  # the assembled encoding is the canonical one
    pool = _pool(txs[: int(count * known_share)])
    fast = decode_message(payload, N, MAX, known=pool.get)
    assert fast == _decode_other(payload, N, MAX) == prop
    assert isinstance(fast, Proposal)
    assert [t.hash for t in fast.block.txs] == [t.hash for t in txs]
    for t in fast.block.txs:  # known ones are reused, the others decoded with their bytes kept
        assert t.encode() == (pool[t.hash].encode() if t.hash in pool else t.encode())


def test_known_transactions_are_reused_not_decoded() -> None:
    txs = _txs(5)
    pool = _pool(txs)
    got = decode_message(_proposal(txs).encode(), N, MAX, known=pool.get)
    assert isinstance(got, Proposal)
    assert all(a is b for a, b in zip(got.block.txs, txs, strict=True))


def test_a_lookup_that_lies_cannot_substitute_a_transaction() -> None:
    """Even a lookup returning the wrong transaction cannot change what the bytes say: the
    canonical re-encoding of the decoded proposal must equal the payload."""
    txs, other = _txs(3), _txs(3, salt=100)
    wrong = {t.hash: o for t, o in zip(txs, other, strict=True)}
    with pytest.raises(DecodeError):
        decode_message(_proposal(txs).encode(), N, MAX, known=wrong.get)


@pytest.mark.parametrize("known", [False, True])
def test_tampered_and_malformed_proposals_are_refused(known: bool) -> None:
    txs = _txs(4)
    lookup = _pool(txs).get if known else None
    good = _proposal(txs).encode()
    raw_tx = txs[1].encode()
    at = good.index(raw_tx)
    obj = _proposal(txs).to_obj()
    obj[4][1] = obj[4][1][:3]  # three transactions under a header that counts four
    cases = {
        "truncated": good[:-1],
        "trailing": good + b"\x00",
        "tx count not the header's": encoding.encode(obj),
        "wrong field count": bytes([0x96]) + good[1:],
        "not msgpack": b"\x97\x01\xc1\xc1",
        "empty": b"",
    }
    for name, payload in cases.items():
        with pytest.raises(DecodeError):
            decode_message(payload, N, MAX, known=lookup)
            pytest.fail(f"accepted: {name}")
    # A flipped byte inside a transaction's public key is another, well-formed transaction:
    # the known one does not stand in for it (it would match the header), and the header's
    # body hash refuses the other one.
    pk_at = at + raw_tx.index(txs[1].public_key)
    flipped = good[:pk_at] + bytes([good[pk_at] ^ 1]) + good[pk_at + 1 :]
    with pytest.raises(DecodeError, match="body hash"):
        decode_message(flipped, N, MAX, known=lookup)


def test_non_canonical_transaction_inside_a_proposal_is_refused() -> None:
    """A transaction re-encoded with a longer integer form is the same value in other bytes:
    generic and fast decoding both refuse the proposal."""
    txs = _txs(2)
    prop = _proposal(txs)
    good = prop.encode()
    raw = txs[0].encode()
    # nonce 0 is the positive fixint 0x00; 0xcc 0x00 is the same value as uint8.
    obj_bytes = raw.replace(b"\x00\xce\x00\x01\x86\xa0", b"\xcc\x00\xce\x00\x01\x86\xa0", 1)
    assert obj_bytes != raw
    bad = good.replace(raw, obj_bytes, 1)
    assert len(bad) == len(good) + 1
    with pytest.raises(DecodeError):
        _decode_other(bad, N, MAX)
    with pytest.raises(DecodeError):
        decode_message(bad, N, MAX, known=_pool(txs).get)
    # The lookup misses (the hash of the loose bytes is another hash): no stand-in either.
    assert hashlib.sha256(obj_bytes).digest() not in _pool(txs)
