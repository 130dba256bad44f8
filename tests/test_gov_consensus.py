"""Consensus parameters changed by vote take effect (issue 19): a block at height h is built
and judged with the parameters in force at h, by every validator, a restarted node and one
catching up alike; a forged block over a new limit is refused from the activation height on
and the same block is accepted below it; rounds keep counting up when ``round_ms`` changes.

The ledger side runs on real stores and the real runtime (tests/support/gov.py); the core's
side (one core per set and parameters) is in tests/test_node_consensus_params.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accord.base.genesis import ConsensusParams, Genesis
from accord.base.types import Block, Tx
from accord.contracts.runtime import ROUND_GAP, Runtime
from accord.ledger.application import InvalidProposal
from accord.ledger.chain import BLOCK_FRAMING_BYTES, Chain
from accord.storage import Store

from .support.gov import GovChain, governed_genesis, member_key, stranger_txs

M = [member_key(i) for i in range(4)]


class IgnoringRuntime(Runtime):
    """Executes by genesis's gas limit whatever governance put in force."""

    def execute_block(self, state: Any, txs: Any, **kw: Any) -> Any:
        kw["max_gas"] = self.genesis.consensus.max_block_gas
        return super().execute_block(state, txs, **kw)


class IgnoresGovernance(Chain):
    """A Byzantine proposer's chain: it builds by genesis's limits whatever governance put in
    force (its blocks are otherwise genuine: roots from a real execution)."""

    def params_at(self, height: int) -> ConsensusParams:
        return self.genesis.consensus


def _pass(gov: GovChain, params: dict[str, Any], activation: int) -> None:
    """Three members pass ``set_consensus(params)`` to take effect at ``activation``."""
    action = {"kind": "set_consensus", "params": params}
    r = gov.propose(M[0], action, activation)
    assert r.ok, r.error
    gov.call(M[1], "approve", proposal=r.result)
    r = gov.call(M[2], "approve", proposal=r.result)
    assert r.result == "passed", r.error
    assert r.events[-1].data["effective"] == activation


class Pair:
    """An honest chain and a forger's on identical stores, fed the same blocks."""

    def __init__(self, tmp: Path, gen: Genesis) -> None:
        self.gen = gen
        self.gov = GovChain(tmp / "honest", gen)
        self.forger = IgnoresGovernance(
            gen, Store(tmp / "forger", sync=False), IgnoringRuntime(gen)
        )

    def follow(self, chain: Chain | None = None) -> None:
        """The forger (or ``chain``) commits what the honest chain committed since it last
        looked, as catch-up does: certified blocks, no vote-time checks."""
        chain = self.forger if chain is None else chain
        while chain.head()[0] < self.gov.height:
            h = chain.head()[0] + 1
            block, _ = self.gov.chain.block_and_certificate(h)
            chain.commit(block, None)

    def forge(self, txs: list[Tx]) -> Block:
        self.follow()
        h = self.forger.head()[0] + 1
        return self.forger.build(txs, time_ms=h * 1000, verified={t.hash for t in txs})


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return Pair(tmp_path, governed_genesis(4))


def test_a_block_over_the_new_tx_limit_is_refused_from_the_activation_height_on(
    pair: Pair,
) -> None:
    gov = pair.gov
    at = gov.height + 8
    _pass(gov, {"max_block_txs": 2}, at)
    gov.empty(at - 2 - gov.height)
    assert gov.height == at - 2
    # Below the activation height the old limit holds: three transactions are a good block.
    early = pair.forge(stranger_txs(pair.gen.chain_id, 3, "early"))
    assert early.height == at - 1 and len(early.txs) == 3
    gov.chain.validate(early)
    gov.chain.commit(early, None)
    # At the activation height the same shape of block is refused by the honest chain...
    late = pair.forge(stranger_txs(pair.gen.chain_id, 3, "late"))
    assert late.height == at and len(late.txs) == 3
    with pytest.raises(InvalidProposal, match=r"3 transactions, past the limit of 2 .* height"):
        gov.chain.validate(late)
    # ...and a block within it accepted; the honest proposer cuts its own blocks to the limit.
    built = gov.chain.build(stranger_txs(pair.gen.chain_id, 3, "late"), time_ms=at * 1000)
    assert len(built.txs) == 2
    gov.chain.validate(built)
    assert gov.chain.params_at(at).max_block_txs == 2
    assert gov.chain.params_at(at - 1).max_block_txs == gov.genesis.consensus.max_block_txs


def test_a_block_over_the_new_byte_limit_is_refused_and_the_builder_keeps_within_it(
    pair: Pair,
) -> None:
    gov = pair.gov
    at = gov.height + 6
    limit = 2048
    _pass(gov, {"max_block_bytes": limit}, at)
    gov.empty(at - 1 - gov.height)
    big = pair.forge(stranger_txs(pair.gen.chain_id, 12, "big"))
    assert big.height == at and len(big.encode()) > limit
    with pytest.raises(InvalidProposal, match=rf"bytes, past the limit of {limit}"):
        gov.chain.validate(big)
    built = gov.chain.build(stranger_txs(pair.gen.chain_id, 12, "big"), time_ms=at * 1000)
    assert 0 < len(built.txs) < 12
    assert len(built.encode()) <= limit
    # The framing allowance covers the largest header: a 64-character chain id, every hash,
    # a sortition ticket and 64-bit integers.
    assert len(built.encode()) - sum(len(t.encode()) for t in built.txs) < BLOCK_FRAMING_BYTES
    gov.chain.validate(built)


def test_the_gas_limit_in_force_cuts_blocks_and_refuses_heavier_ones(pair: Pair) -> None:
    gov = pair.gov
    at = gov.height + 6
    _pass(gov, {"max_block_gas": 1_000_000}, at)
    gov.empty(at - 1 - gov.height)
    # Each failed approval costs far less than 1,000,000 gas; enough of them pass it.
    txs = stranger_txs(pair.gen.chain_id, 400, "gas")
    heavy = pair.forge(txs)
    assert pair.forger.execution(heavy.hash).gas_used > 1_000_000  # type: ignore[union-attr]
    with pytest.raises(InvalidProposal, match="past the limit of 1000000"):
        gov.chain.validate(heavy)
    built = gov.chain.build(stranger_txs(pair.gen.chain_id, 400, "gas"), time_ms=at * 1000)
    assert 0 < len(built.txs) < 400
    assert gov.chain.execution(built.hash).gas_used <= 1_000_000  # type: ignore[union-attr]


def test_restarted_and_catching_up_chains_apply_the_same_rules(tmp_path: Path) -> None:
    gen = governed_genesis(4)
    pair = Pair(tmp_path, gen)
    gov = pair.gov
    at = gov.height + 6
    _pass(gov, {"max_block_txs": 2, "round_ms": 3000, "stage2_ms": 1000}, at)
    while gov.height < at + 2:
        h = gov.height + 1
        gov.chain.commit(gov.chain.build([], round=h, time_ms=h * 1000), None)
    expected = [(gov.chain.params_at(h), gov.chain.round_anchor(h)) for h in (at - 1, at, at + 3)]
    assert expected[0] != expected[1]  # the change, and its round anchor, are in force
    # A node that executes every block from genesis (catch-up: commits by certificate, no
    # vote-time checks) and one restarted on the original's store agree with the original.
    catching_up = Chain(gen, Store(tmp_path / "late", sync=False), Runtime(gen))
    pair.follow(catching_up)
    forged = pair.forge(stranger_txs(gen.chain_id, 3, "again"))
    head = gov.chain.head()
    gov.chain.store.close()
    restarted = Chain(gen, Store(tmp_path / "honest" / "db", sync=False), Runtime(gen))
    for chain in (restarted, catching_up):
        assert chain.head() == head
        assert [(chain.params_at(h), chain.round_anchor(h)) for h in (at - 1, at, at + 3)] == (
            expected
        )
        with pytest.raises(InvalidProposal, match="past the limit of 2"):
            chain.validate(forged)


def test_rounds_keep_counting_up_when_round_ms_grows(tmp_path: Path) -> None:
    """Votes are monotone in the round number across heights: had rounds of the new length
    been counted from genesis time, today's round would be numbered far below the ones
    validators just voted in, and none could vote again for as long as the chain had run."""
    gen = governed_genesis(4)
    gov = GovChain(tmp_path, gen)
    # Rounds of 1 s for a while (block h stamped at h s, its header's round h).
    for _ in range(20):
        h = gov.height + 1
        b = gov.chain.build([], round=h, time_ms=h * 1000)
        gov.chain.commit(b, None)
    at = gov.height + 6
    _pass(gov, {"round_ms": 4000, "stage2_ms": 2000}, at)
    while gov.height < at - 1:
        h = gov.height + 1
        gov.chain.commit(gov.chain.build([], round=h, time_ms=h * 1000), None)
    last = gov.chain.head_header()  # the last block of 1 s rounds, of round at - 1
    assert last.round == at - 1
    anchor = gov.chain.round_anchor(at)
    assert gov.chain.round_anchor(at - 1) == gen.genesis_time_ms
    # Round last.round + ROUND_GAP starts when it did on the old schedule; then 4 s rounds.
    r = last.round + ROUND_GAP
    assert anchor + r * 4000 == gen.genesis_time_ms + r * 1000
    # At the time of the last block and after, the new numbering is never below the old one's
    # rounds of the last height (at most ROUND_GAP rounds of late votes there).
    now = last.time_ms
    assert (now - anchor) // 4000 >= last.round
    # A proposal at the activation height is judged on the new schedule.
    sched = gov.chain.scheduled(at)
    assert sched.consensus.round_ms == 4000 and sched.round_anchor_ms == anchor
    rnd = r + 1
    t = anchor + rnd * 4000 + 10
    block = gov.chain.build([], round=rnd, time_ms=t)
    gov.chain.check_time(block.header, now_ms=t)
    # Stamped in the slot round rnd had on the old, genesis-anchored schedule: refused.
    stale = gov.chain.build([], round=rnd, time_ms=gen.genesis_time_ms + rnd * 4000 + 10)
    with pytest.raises(InvalidProposal):
        gov.chain.check_time(stale.header, now_ms=t)


def test_an_ungoverned_chain_writes_no_round_anchor(tmp_path: Path) -> None:
    gen = Genesis.model_validate(
        {**governed_genesis(4).model_dump(mode="json"), "contracts": []}  # no governance
    )
    chain = Chain(gen, Store(tmp_path / "db", sync=False), Runtime(gen))
    b = chain.build([], round=3, time_ms=3000)
    chain.commit(b, None)
    assert chain.round_anchor(5) == gen.genesis_time_ms
    assert chain.params_at(5) == gen.consensus


def test_catch_up_answers_are_cut_by_the_limit_at_the_height_asked_for(tmp_path: Path) -> None:
    """A node ahead knows of a larger max_block_bytes scheduled later; a requester behind has
    sized its frames for the limits it knows. Cut by the larger limit, an answer of blocks
    from before the change (16 blocks of up to 8 MiB in a 33 MiB frame) would not fit."""
    from types import SimpleNamespace

    from accord.node.catchup import CatchUp

    gov = GovChain(tmp_path, governed_genesis(4))
    at = gov.height + 6
    big = 64 * 1024 * 1024
    _pass(gov, {"max_block_bytes": big}, at)
    catchup = CatchUp(SimpleNamespace(chain=gov.chain, genesis=gov.genesis))  # type: ignore[arg-type]
    small = gov.genesis.consensus.max_block_bytes
    assert catchup.answer_budget(1) == catchup.answer_budget(at - 1) == 2 * small
    assert catchup.answer_budget(at) == 2 * big
