"""Mempool batch admission: ``add_many`` keeps every rule, error and counter of ``add``,
including with signature verdicts computed beforehand (as on the node's verify thread)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base.errors import AccordError, InvalidSignature
from accord.base.types import Tx
from accord.ledger.mempool import Mempool, verify_signatures

from .support.mempool import CHAIN, KEYS, Nonces, tx


def forged(t: Tx) -> Tx:
    """The same transaction with a signature that does not verify."""
    sig = bytes([t.signature[0] ^ 1]) + t.signature[1:]
    return dataclasses.replace(t, signature=sig)


def mixed_batch() -> list[Tx | bytes]:
    return [
        tx("a", 0),
        tx("a", 0),  # duplicate
        tx("a", 2),  # skips ahead
        tx("b", 0, chain_id="other"),  # wrong chain
        forged(tx("c", 0)),  # bad signature
        tx("c", 0),  # then the genuine one
        b"\x00garbage",  # undecodable
        tx("a", 1).encode(),  # bytes, in order
        tx("d", 0, pad=70_000).encode(),  # too large
    ]


def outcome(results: list[bytes | AccordError]) -> list[str]:
    return [r.hex() if isinstance(r, bytes) else r.code for r in results]


def one_by_one(mp: Mempool, items: list[Tx | bytes]) -> list[bytes | AccordError]:
    out: list[bytes | AccordError] = []
    for item in items:
        try:
            out.append(mp.add(item))
        except AccordError as e:
            out.append(e)
    return out


def test_add_many_equals_add_one_by_one() -> None:
    batch = mixed_batch()
    a, b = Mempool(CHAIN, Nonces()), Mempool(CHAIN, Nonces())
    got, want = a.add_many(batch), one_by_one(b, batch)
    assert outcome(got) == outcome(want)
    assert [type(r) for r in got] == [type(r) for r in want]
    assert sorted(a.verified) == sorted(b.verified) and a.rejected == b.rejected
    codes = outcome(got)
    assert codes.count("duplicate_tx") == 1 and codes.count("invalid_signature") == 1
    assert "wrong_chain" in codes and "bad_nonce" in codes and "too_large" in codes


def test_precomputed_verdicts_are_used_and_keep_rejections() -> None:
    good, bad = tx("a", 0), forged(tx("b", 0))
    verdicts = verify_signatures([good, bad])
    assert verdicts == {good.hash: True, bad.hash: False}
    mp = Mempool(CHAIN, Nonces())
    res = mp.add_many([good, bad], verdicts.get)
    assert res[0] == good.hash and isinstance(res[1], InvalidSignature)
    assert len(mp) == 1 and mp.rejected == {"invalid_signature": 1}


def test_a_lying_verdict_cannot_skip_other_rules() -> None:
    """Verdicts only replace the signature check: nonce and chain rules still apply first."""
    t = tx("a", 5)
    mp = Mempool(CHAIN, Nonces())
    res = mp.add_many([t], lambda _: True)
    assert isinstance(res[0], AccordError) and res[0].code == "bad_nonce" and len(mp) == 0


def test_missing_verdict_checks_inline() -> None:
    bad = forged(tx("a", 0))
    mp = Mempool(CHAIN, Nonces())
    res = mp.add_many([bad], {}.get)  # no verdict: the mempool checks the signature itself
    assert isinstance(res[0], InvalidSignature) and len(mp) == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3), st.booleans()), max_size=12))
def test_batch_matches_sequential_for_any_order(spec: list[tuple[str, int, bool]]) -> None:
    items: list[Tx | bytes] = [forged(tx(n, k)) if bad else tx(n, k) for n, k, bad in spec]
    a, b = Mempool(CHAIN, Nonces(), max_txs=5), Mempool(CHAIN, Nonces(), max_txs=5)
    txs = [i for i in items if isinstance(i, Tx)]
    got = a.add_many(items, verify_signatures(txs).get)
    assert outcome(got) == outcome(one_by_one(b, items))
    assert sorted(a.verified) == sorted(b.verified) and a.rejected == b.rejected


def test_keys_exist() -> None:
    assert set(KEYS) == {"a", "b", "c", "d"}
