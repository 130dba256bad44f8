"""Block time is bounded: one proposer cannot move the chain's clock forward for good.

The attacker is a validator that stamps its proposals ten years ahead. Before the bound, honest
validators voted for such a block (the only rule was "not before the parent"), and since every
later block must be at least as late, the chain's time stayed in 2036. Now each validator
refuses to vote for a proposal too far ahead of its own clock or outside its round's slot, and
a certified block is still committed whatever its time (catch-up must not depend on the clock).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import GenesisError
from accord.base.genesis import Genesis
from accord.base.types import Block, Certificate, Tx, bitmap_from, vote_message
from accord.contracts.runtime import Runtime
from accord.ledger.blocktime import block_time_error
from accord.ledger.chain import Chain, InvalidProposal
from accord.node.config import builtin_contract_entries
from accord.sim import SimConfig, Simulator
from accord.storage import Store

from .support.genesis import make_genesis
from .support.inproc import ThreadedNetwork

ALICE = AccountKey.from_name("alice")
BOB = AccountKey.from_name("bob")
ROUND_MS = 1000
DRIFT = 3 * ROUND_MS  # the default tolerance: three rounds
TEN_YEARS = 10 * 365 * 24 * 3600 * 1000


def _rule(time_ms: int, rnd: int, parent: int, now: int) -> str | None:
    return block_time_error(
        time_ms=time_ms,
        round=rnd,
        parent_time_ms=parent,
        now_ms=now,
        genesis_time_ms=0,
        round_ms=ROUND_MS,
        drift_ms=DRIFT,
    )


@given(
    rnd=st.integers(0, 10**9),
    into=st.integers(0, ROUND_MS - 1),
    skew=st.integers(-DRIFT // 2, DRIFT // 2),
    delay=st.integers(0, 3 * ROUND_MS),
    parent_back=st.integers(0, 10**7),
)
def test_an_honest_stamp_is_always_accepted(
    rnd: int, into: int, skew: int, delay: int, parent_back: int
) -> None:
    """An honest proposer stamps max(its clock, parent's time), its clock inside the round it
    builds for; a validator whose clock differs by up to half the tolerance, validating up to
    three rounds later, accepts it."""
    built_at = rnd * ROUND_MS + into  # the proposer's clock, in the round's slot
    parent = max(0, built_at - parent_back)
    stamp = max(built_at, parent)
    assert _rule(stamp, rnd, parent, built_at + skew + delay) is None


@given(rnd=st.integers(0, 10**9), ahead=st.integers(DRIFT + ROUND_MS + 1, 10**13))
def test_a_stamp_far_ahead_is_refused(rnd: int, ahead: int) -> None:
    now = rnd * ROUND_MS + ROUND_MS // 2
    parent = now - ROUND_MS
    assert _rule(now + ahead, rnd, parent, now) is not None


@given(rnd=st.integers(5, 10**9), behind=st.integers(DRIFT + 1, 10**9))
def test_a_stamp_behind_its_round_is_refused_unless_it_is_the_parents(
    rnd: int, behind: int
) -> None:
    """A proposer cannot freeze the clock by stamping old times (below its round's slot)..."""
    now = rnd * ROUND_MS
    parent = max(0, now - behind - ROUND_MS)
    assert _rule(now - behind, rnd, parent, now) is not None
    # ...but a block carrying exactly a parent's time that is already ahead stays acceptable
    # (a head stamped ahead by an older rule must not halt the chain)
    assert _rule(now + TEN_YEARS, rnd, now + TEN_YEARS, now) is None
    assert _rule(now + TEN_YEARS + 1, rnd, now + TEN_YEARS, now) is not None


# --- the chain: the vote-time check and the commit of a certified block ----------------------


def _chain(tmp_path: Path) -> Chain:
    g = make_genesis(
        1,
        balances={ALICE.address.hex(): 1000},
        contracts=builtin_contract_entries(),
        round_ms=ROUND_MS,
        stage2_ms=500,
    )
    return Chain(g, Store(tmp_path / "db", sync=False), Runtime(g))


def _certificate(chain: Chain, block: Block) -> Certificate:
    sk = bls.demo_secret("v0")
    msg = vote_message(chain.chain_id, block.height, block.header.round, 2, block.hash)
    return Certificate(
        block.height, block.header.round, 2, block.hash, bitmap_from([0], 1), bls.sign(sk, msg)
    )


def _transfer(nonce: int) -> Tx:
    return Tx.create(
        ALICE,
        chain_id="accord-test",
        contract="token",
        method="transfer",
        args={"to": BOB.address, "amount": 1},
        nonce=nonce,
    )


def test_a_validator_refuses_to_vote_for_a_block_ten_years_ahead(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    try:
        rnd = 50
        now = rnd * ROUND_MS + 300
        # the Byzantine proposer executes honestly but stamps +10 years
        future = chain.build([_transfer(0)], round=rnd, time_ms=now + TEN_YEARS)
        with pytest.raises(InvalidProposal, match="ahead of this validator's clock"):
            chain.validate(future, now_ms=now)
        # a cached execution (e.g. this node built it) does not bypass the check
        assert chain.execution(future.hash) is not None
        with pytest.raises(InvalidProposal):
            chain.validate(future, now_ms=now)
        # an honest block of the same round is fine, and the head's time stays now
        chain2 = _chain(tmp_path / "b")
        try:
            honest = chain2.build([_transfer(0)], round=rnd, time_ms=now)
            chain.validate(honest, now_ms=now + 50)
            chain.commit(honest, _certificate(chain, honest))
            assert chain.head_header().time_ms == now
        finally:
            chain2.store.close()
    finally:
        chain.store.close()


def test_a_certified_block_commits_whatever_its_time(tmp_path: Path) -> None:
    """Catch-up replays certified blocks: the local clock must not stop it (determinism)."""
    chain = _chain(tmp_path)
    try:
        block = chain.build([_transfer(0)], round=7, time_ms=7 * ROUND_MS + TEN_YEARS)
        chain.commit(block, _certificate(chain, block))  # no clock: accepted
        assert chain.head()[0] == 1
        # and the chain stays live: a block carrying its parent's time may still be voted for
        nxt = chain.build([_transfer(1)], round=8, time_ms=8 * ROUND_MS)
        assert nxt.header.time_ms == block.header.time_ms  # max(now, parent's time)
        chain.validate(nxt, now_ms=8 * ROUND_MS + 10)
    finally:
        chain.store.close()


# --- the simulator: a Byzantine leader among honest ones --------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_simulated_future_stamping_leader_cannot_move_the_chain_clock(seed: int) -> None:
    sim = Simulator(
        SimConfig(
            nodes=4,
            byzantine=1,
            strategy="future_time",
            rounds=30,
            seed=seed,
            latency_ms=20,
            drift_ms=10,
        )
    )
    r = sim.run()
    assert r.safety_violations == 0, r.violations
    assert r.committed_heights >= 10, r.summary()
    byz = [nd for nd in sim.nodes if not nd.honest]
    assert sum(nd.state.get("future_blocks", 0) for nd in byz) >= 1  # it did propose
    end_ms = sim.c.rounds * sim.c.round_ms
    for nd in sim.nodes:
        if nd.honest:
            for b, _ in nd.chain:
                assert b.header.time_ms <= end_ms + 3 * sim.c.round_ms, b.header


# --- real validators: one of four stamps its proposals ten years ahead ------------------------


@pytest.mark.timeout(180)
def test_a_byzantine_proposer_cannot_move_a_real_chain_clock(tmp_path: Path) -> None:
    net = ThreadedNetwork(tmp_path, validators=4, round_ms=400, stage2_ms=200, name="future-net")
    try:
        byz = net.nodes[0]
        assert byz.chain is not None
        honest_build = byz.chain.build
        built: list[int] = []

        def future_build(txs: Any, **kw: Any) -> Block:
            kw["time_ms"] = kw["time_ms"] + TEN_YEARS
            block = honest_build(txs, **kw)
            built.append(block.height)
            return block

        byz.chain.build = future_build
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            heights = [n.chain.head()[0] for n in net.nodes[1:] if n.chain is not None]
            if len(built) >= 2 and min(heights) >= 6:
                break
            time.sleep(0.2)
        assert len(built) >= 2, "the Byzantine validator never proposed"
        now = int(time.time() * 1000)
        drift = net.genesis.consensus.time_drift()
        for n in net.nodes[1:]:
            assert n.chain is not None
            top = n.chain.head()[0]
            assert top >= 6
            for h in range(1, top + 1):
                header = n.store.get_header(h)
                assert header.time_ms <= now + drift, (n.name, h, header.time_ms - now)
        refused = sum(n.worker.m_invalid.get() for n in net.nodes[1:])
        assert refused >= 1
    finally:
        net.close()


@given(
    st.integers(min_value=0, max_value=10**13),
    st.integers(min_value=0, max_value=10**13),
    st.integers(min_value=0, max_value=10**6),
)
def test_only_a_stamp_ahead_of_the_clock_is_cured_by_waiting(
    time_ms: int, now_ms: int, drift_ms: int
) -> None:
    """``ahead_of_clock_ms`` is the wait after which the clock bound no longer refuses the
    stamp (the node judges such a proposal again then, instead of telling its core it is
    invalid for the height): zero exactly when the stamp is within the tolerance now."""
    from accord.ledger.blocktime import ahead_of_clock_ms

    wait = ahead_of_clock_ms(time_ms=time_ms, now_ms=now_ms, drift_ms=drift_ms)
    assert wait >= 0
    assert (wait == 0) == (time_ms <= now_ms + drift_ms)
    assert time_ms <= now_ms + wait + drift_ms  # after the wait the stamp is within the tolerance
    if wait:
        assert time_ms > now_ms + wait - 1 + drift_ms  # and not a millisecond earlier


@pytest.mark.parametrize(
    ("consensus", "why"),
    [
        ({"round_ms": 1000, "max_time_drift_ms": 1000}, "between two rounds"),  # one round halts
        ({"round_ms": 1000, "max_time_drift_ms": 1}, "between two rounds"),
        ({"round_ms": 1000, "max_time_drift_ms": 10**12}, "between two rounds"),  # 31 years
        ({"round_ms": 1000, "stage2_ms": 1000}, "shorter than round_ms"),
    ],
)
def test_a_block_time_tolerance_that_halts_or_means_nothing_is_refused_at_load(
    tmp_path: Path, consensus: dict[str, int], why: str
) -> None:
    """Found by the operations review: ``max_time_drift_ms`` took any value, and one round of
    tolerance let a skewed clock and a fast one halt the chain. The old genesis loaded these."""
    good = make_genesis(4)
    doc = good.model_dump(mode="json")
    doc["consensus"].update(consensus)
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(GenesisError, match=why):
        Genesis.load(path)


@pytest.mark.parametrize("drift", [0, 2000, 3000, 10_000, 60_000])
def test_tolerances_in_range_load(drift: int) -> None:
    assert make_genesis(4, round_ms=1000, max_time_drift_ms=drift).consensus.time_drift() in (
        drift or 3000,
    )
