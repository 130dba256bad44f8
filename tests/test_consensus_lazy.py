"""Lazy validation in the Gosig core: only the round's best proposal not known invalid is
sent to the application (plus a re-proposed locked block); a worse one only if every better
one turns out invalid. Also: decoded proposals are reused for identical bytes."""

from __future__ import annotations

import hashlib

from accord.base.errors import DecodeError
from accord.base.types import Block, Header
from accord.consensus import (
    PHASE_P,
    BlockValidated,
    Core,
    CostModelCrypto,
    MessageReceived,
    Params,
    Persist,
    Proposal,
    Tick,
    ValidateBlock,
    sortition_value,
)
from accord.consensus.messages import ProposalCache, decode_message
from accord.consensus.sortition import sortition_message

GENESIS_HASH = hashlib.sha256(b"g").digest()
N = 4


def setup() -> tuple[Core, list[Proposal]]:
    """Core 0 in round 0 (not answering its own BuildBlock) and the winning proposals of
    validators 1..3, best (lowest ticket) first."""
    crypto = CostModelCrypto(N)
    params = Params(chain_id="c", n=N, round_ms=1000, stage2_ms=500, expected_leaders=N)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    core.handle(Tick(10))  # round 0 starts; its own BuildBlock is left unanswered
    props = []
    for i in range(1, N):
        ticket = crypto.signer(i).sign(sortition_message("c", 1, 0, GENESIS_HASH))
        if sortition_value(ticket) >= core.d:
            continue
        h = Header("c", 1, 0, GENESIS_HASH, bytes(32), bytes(32), 0, i, 0, ticket)
        props.append(Proposal(0, i, ticket, Block(h, ())))
    props.sort(key=lambda p: (sortition_value(p.sortition), p.block.hash))
    assert len(props) >= 3, "expected_leaders=n makes every ticket win"
    return core, props


def validations(actions: list[object]) -> list[bytes]:
    return [a.block.hash for a in actions if isinstance(a, ValidateBlock)]


def test_worse_proposal_is_not_validated_while_the_best_is_valid() -> None:
    core, (best, mid, worst) = setup()
    # The worst arrives first: it is the best known, so it is validated.
    assert validations(core.handle(MessageReceived(worst.proposer, worst.encode()))) == [
        worst.block.hash
    ]
    # The best arrives: validated too.
    assert validations(core.handle(MessageReceived(best.proposer, best.encode()))) == [
        best.block.hash
    ]
    # A proposal worse than the current best is not validated.
    assert validations(core.handle(MessageReceived(mid.proposer, mid.encode()))) == []
    core.handle(BlockValidated(best.block.hash, True))
    out = core.handle(Tick(600))  # stage II: prepare the best
    assert validations(out) == []
    assert core.status().p_hash == best.block.hash and core.status().p_round == 0
    assert any(isinstance(a, Persist) for a in out)  # the P vote is persisted first
    assert mid.block.hash not in core._valid


def test_worse_proposal_is_validated_once_the_best_is_invalid() -> None:
    core, (best, mid, worst) = setup()
    for p in (best, mid, worst):
        core.handle(MessageReceived(p.proposer, p.encode()))
    assert core._valid == {best.block.hash: None}
    out = core.handle(BlockValidated(best.block.hash, False))
    assert validations(out) == [mid.block.hash]  # the next best, not the worst
    out = core.handle(BlockValidated(mid.block.hash, False))
    assert validations(out) == [worst.block.hash]
    core.handle(BlockValidated(worst.block.hash, True))
    core.handle(Tick(600))
    assert core.status().p_hash == worst.block.hash  # the best valid one gets the P vote


def test_stage2_waits_for_the_best_verdict() -> None:
    core, (best, mid, _) = setup()
    core.handle(MessageReceived(best.proposer, best.encode()))
    core.handle(MessageReceived(mid.proposer, mid.encode()))
    core.handle(Tick(600))
    assert core.status().p_round == -1  # no verdict yet: no vote
    out = core.handle(BlockValidated(best.block.hash, True))
    assert core.status().p_hash == best.block.hash
    assert any(isinstance(a, Persist) for a in out)
    p_votes = [a for a in out if not isinstance(a, Persist)]
    assert p_votes and core._aggs.get((1, 0, PHASE_P, best.block.hash)) is not None


def test_identical_proposal_bytes_decode_once_and_tampered_bytes_do_not_hit() -> None:
    _, (best, mid, _) = setup()
    cache = ProposalCache(size=2)
    raw = best.encode()
    first = decode_message(raw, N, 1 << 20, cache)
    again = decode_message(bytes(raw), N, 1 << 20, cache)
    assert again is first and cache.hits == 1
    tampered = bytearray(raw)
    tampered[-40] ^= 1
    other = decode_message(mid.encode(), N, 1 << 20, cache)
    assert other is not first
    # the flip lands in the block's transactions: either the bytes no longer decode, or they
    # decode to another proposal; never to the cached one
    try:
        got = decode_message(bytes(tampered), N, 1 << 20, cache)
    except DecodeError:
        got = None
    assert got is not first and cache.hits == 1
    # bounded: a third distinct proposal evicts the oldest
    decode_message(raw, N, 1 << 20, cache)
    assert len(cache._items) <= 2


def test_resent_proposal_is_handled_once() -> None:
    core, (best, _, _) = setup()
    assert validations(core.handle(MessageReceived(best.proposer, best.encode()))) == [
        best.block.hash
    ]
    assert core.handle(MessageReceived(best.proposer, best.encode())) == []
    assert core._proposals is not None and core._proposals.hits == 1
