"""Mempool: every admission rejection, per-sender nonce order, fairness, capacity, commits."""

from __future__ import annotations

import pytest

from accord.base import encoding
from accord.base.errors import (
    DecodeError,
    DuplicateTx,
    GasLimitTooHigh,
    InvalidSignature,
    MempoolFull,
    NonCanonical,
    NonceError,
    TooLarge,
    TrailingBytes,
    WrongChain,
)
from accord.base.types import Tx
from accord.ledger.mempool import Mempool

from .support.mempool import CHAIN, KEYS, pool, snapshot, tx


def test_add_object_and_bytes() -> None:
    mp, _ = pool()
    t0, t1 = tx("a", 0), tx("a", 1)
    assert mp.add(t0) == t0.hash
    assert mp.add(t1.encode()) == t1.hash
    assert len(mp) == 2 and mp.contains(t0.hash) and t1.hash in mp.verified
    assert mp.get(t1.hash) == t1
    assert mp.next_nonce(KEYS["a"].address) == 2


def test_rejections_change_nothing() -> None:
    mp, nonces = pool(max_tx_bytes=2_000, max_gas=2_000_000)
    mp.add(tx("a", 0))
    nonces.n[KEYS["b"].address] = 5
    good = tx("a", 1)
    raw = good.encode()
    bad_sig = Tx(*good.to_obj()[:7], signature=b"\x07" * 64)  # type: ignore[misc]
    obj = good.to_obj()
    tampered = Tx(obj[0], obj[1], obj[2], {**obj[3], "amount": 2}, obj[4], obj[5], obj[6], obj[7])
    cases: list[tuple[object, type[Exception], str]] = [
        (tx("a", 1, pad=3_000), TooLarge, "exceeds 2000"),
        (tx("a", 1, pad=3_000).encode(), TooLarge, "exceeds 2000"),
        (raw + b"\x00", TrailingBytes, "trailing"),
        (b"", DecodeError, "empty"),
        (encoding.encode([1, 2, 3]), DecodeError, "tx must have 8 fields"),
        (b"\x93\xcc\x01\x02\x03", NonCanonical, "canonical"),  # 1 as uint8: a longer form
        (tx("a", 1, chain_id="other"), WrongChain, "for chain 'other'"),
        (tx("a", 1, gas_limit=2_000_001), GasLimitTooHigh, "above the block gas limit 2000000"),
        (tx("a", 0), DuplicateTx, "already pending"),
        (tx("a", 0).encode(), DuplicateTx, "already pending"),
        (
            Tx.create(KEYS["a"], chain_id=CHAIN, contract="token", method="mint", args={}, nonce=0),
            NonceError,
            "already taken by a pending",
        ),
        (tx("a", 2), NonceError, "skips ahead: the next accepted nonce is 1"),
        (tx("b", 4), NonceError, "already used"),
        (tx("b", 6), NonceError, "skips ahead: the next accepted nonce is 5"),
        (bad_sig, InvalidSignature, "does not verify"),
        (tampered, InvalidSignature, "does not verify"),
    ]
    before = snapshot(mp)
    for item, err, msg in cases:
        with pytest.raises(err, match=msg):
            mp.add(item)  # type: ignore[arg-type]
        assert snapshot(mp) == before
    assert sum(mp.rejected.values()) == len(cases)
    assert mp.rejected["duplicate_tx"] == 2 and mp.rejected["bad_nonce"] == 4
    mp.add(good)
    mp.add(tx("b", 5, gas_limit=2_000_000))  # exactly the block gas limit fits
    assert len(mp) == 3


def test_capacity() -> None:
    mp, _ = pool(max_txs=3)
    for i in range(3):
        mp.add(tx("a", i))
    with pytest.raises(MempoolFull, match="mempool full"):
        mp.add(tx("b", 0))
    assert len(mp) == 3
    mp.remove([tx("a", 2).hash])
    mp.add(tx("b", 0))
    assert len(mp) == 3


def test_take_is_fair_and_in_nonce_order() -> None:
    mp, _ = pool()
    for i in range(5):
        mp.add(tx("a", i))
    mp.add(tx("b", 0))
    mp.add(tx("b", 1))
    mp.add(tx("c", 0))
    got = mp.take(100, 10**9)
    order = [(t.sender, t.nonce) for t in got]
    a, b, c = (KEYS[n].address for n in "abc")
    assert order == [(a, 0), (b, 0), (c, 0), (a, 1), (b, 1), (a, 2), (a, 3), (a, 4)]
    # Taking does not remove.
    assert len(mp) == 8
    # A small block gets one from each sender first.
    assert [(t.sender, t.nonce) for t in mp.take(3, 10**9)] == [(a, 0), (b, 0), (c, 0)]
    assert mp.take(0, 10**9) == []


def test_take_respects_bytes_and_sender_order() -> None:
    mp, _ = pool()
    big = tx("a", 0, pad=1_000)
    mp.add(big)
    mp.add(tx("a", 1))
    mp.add(tx("b", 0))
    mp.add(tx("b", 1))
    small = len(tx("b", 0).encode())
    got = mp.take(100, 3 * small)
    # a's first transaction does not fit, so none of a's may be taken (nonce order).
    assert [(t.sender, t.nonce) for t in got] == [(KEYS["b"].address, 0), (KEYS["b"].address, 1)]
    assert sum(len(t.encode()) for t in got) <= 3 * small


def test_on_commit_drops_committed_and_stale() -> None:
    mp, nonces = pool()
    for i in range(3):
        mp.add(tx("a", i))
    mp.add(tx("b", 0))
    committed = [tx("a", 0), tx("a", 1)]
    nonces.n[KEYS["a"].address] = 2
    mp.on_commit(committed)
    assert (
        len(mp) == 2 and not mp.contains(committed[0].hash) and committed[0].hash not in mp.verified
    )
    assert [t.nonce for t in mp.take(10, 10**9)] == [2, 0]
    # Another node's transaction with b's nonce 0 committed: ours is stale now.
    nonces.n[KEYS["b"].address] = 1
    other = Tx.create(KEYS["b"], chain_id=CHAIN, contract="token", method="mint", args={}, nonce=0)
    mp.on_commit([other])
    assert len(mp) == 1
    with pytest.raises(NonceError, match="already used"):
        mp.add(tx("b", 0))
    mp.add(tx("b", 1))


def test_committed_nonces_are_read_once_per_sender_until_a_commit() -> None:
    mp, nonces = pool()
    reads: list[bytes] = []
    read = mp.nonce_of
    mp.nonce_of = lambda a: (reads.append(a), read(a))[1]
    for i in range(3):
        mp.add(tx("a", i))
    assert reads == [KEYS["a"].address]  # cached between commits
    nonces.n[KEYS["a"].address] = 2  # a block with nonces 0 and 1 commits
    mp.on_commit([tx("a", 0), tx("a", 1)])
    assert len(mp) == 1 and mp.next_nonce(KEYS["a"].address) == 3
    assert reads == [KEYS["a"].address]  # the block itself tells the new committed nonce
    with pytest.raises(NonceError):
        mp.add(tx("a", 1))  # a replay of a committed nonce


def test_remove_drops_later_nonces_of_the_sender() -> None:
    mp, _ = pool()
    for i in range(4):
        mp.add(tx("a", i))
    mp.add(tx("b", 0))
    assert mp.remove([tx("a", 1).hash, b"\x00" * 32]) == 3
    assert [(t.sender, t.nonce) for t in mp.take(10, 10**9)] == [
        (KEYS["a"].address, 0),
        (KEYS["b"].address, 0),
    ]
    assert mp.next_nonce(KEYS["a"].address) == 1
    mp.add(tx("a", 1))
    assert mp.pending_count(KEYS["a"].address) == 2


def test_verified_is_accepted_by_runtime() -> None:
    """The mempool's verified set lets block execution skip signature checks."""
    from accord.contracts import Runtime
    from accord.node.config import builtin_contract_entries

    from .support.genesis import make_genesis

    g = make_genesis(
        1,
        chain_id=CHAIN,
        balances={KEYS["a"].address.hex(): 10},
        contracts=builtin_contract_entries(),
    )
    rt = Runtime(g)
    state = {k: v for k, v in rt.genesis_writes().items() if v is not None}

    class S:
        def get_state(self, key: bytes) -> bytes | None:
            return state.get(key)

    mp = Mempool(CHAIN, lambda addr: rt.nonce_of(S(), addr))
    t = Tx.create(
        KEYS["a"],
        chain_id=CHAIN,
        contract="token",
        method="transfer",
        args={"to": KEYS["b"].address, "amount": 3},
        nonce=0,
    )
    mp.add(t)
    r = rt.execute_block(S(), mp.take(10, 10**6), height=1, time_ms=0, verified=mp.verified)
    assert r.receipts[0].ok
