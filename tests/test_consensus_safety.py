"""Regression tests for the Gosig core's safety and liveness findings, each written as the
exact schedule that broke the old core: four cores, a router the test controls message by
message, and the application's answers given by hand.

* the fork with four honest validators (late P votes of an earlier round arriving after the
  validators voted P in a later round);
* a lock on a block whose body never arrived (nothing fetched it: the validator stalled);
* P-quorums older than ``KEEP_ROUNDS`` dropped as stale (the lock of a healed partition could
  not reach the validators locked below it);
* an abstention that was not persisted;
* the sortition seed taken from the parent's hash (its proposer could grind it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from accord.base.types import Block, Header, vote_message
from accord.consensus import (
    PHASE_C,
    PHASE_P,
    Aggregate,
    BlockFetched,
    BlockValidated,
    Broadcast,
    BuildBlock,
    Core,
    CostModelCrypto,
    FetchBlock,
    MessageReceived,
    Params,
    Persist,
    Proposal,
    SafetyState,
    Tick,
    ValidateBlock,
    decode_message,
)
from accord.consensus.sortition import sortition_message, sortition_seed
from accord.consensus.state import KEEP_ROUNDS

from .support.consensus import Net

GENESIS_HASH = hashlib.sha256(b"g").digest()
N = 4


def _block(a: BuildBlock) -> Block:
    h = Header(
        "c",
        a.height,
        a.round,
        a.parent_hash,
        bytes(32),
        bytes(32),
        0,
        a.proposer_index,
        0,
        a.sortition,
    )
    return Block(h, ())


def is_vote(phase: int, rnd: int) -> Callable[[int, int, object], bool]:
    return lambda frm, to, m: isinstance(m, Aggregate) and m.phase == phase and m.round == rnd


def proposals(frm: int, to: int, m: object) -> bool:
    return isinstance(m, Proposal)


def test_late_p_votes_of_an_earlier_round_cannot_fork_four_honest_validators() -> None:
    """The review's schedule: everyone signs P(B0, 0), those votes are held; everyone signs
    P(B1, 1); the round-0 votes then arrive, and the C votes they cause reach validator 0
    only; then the round-1 votes reach validators 1-3. The old core signed C(B0, 0) after
    having voted P in round 1, so validator 0 committed B0 and validators 1-3 committed B1."""
    params = Params(chain_id="c", n=N, round_ms=100, stage2_ms=50, expected_leaders=4.0)
    net = Net(params, N, honest=range(N))
    net.tick(1)  # round 0: every validator is a leader (expected_leaders = n)
    net.deliver(proposals)
    net.tick(60)  # stage II: P votes for round 0's best block, held
    assert net.deliver(lambda f, t, m: False) == 0
    p0 = {
        m.block_hash
        for _, _, raw in net.pending
        if isinstance(m := decode_message(raw, N, 1 << 20), Aggregate)
    }
    assert len(p0) == 1
    net.tick(110)  # round 1
    net.deliver(proposals)
    net.tick(160)  # P votes for round 1's best block, held too
    # The round-0 votes arrive everywhere; whatever C votes they cause reach validator 0 only.
    net.deliver(
        lambda f, t, m: is_vote(PHASE_P, 0)(f, t, m) or (is_vote(PHASE_C, 0)(f, t, m) and t == 0)
    )
    # Then the round-1 votes reach validators 1-3, and the C votes they cause too.
    net.deliver(lambda f, t, m: t != 0 and isinstance(m, Aggregate) and m.round == 1)
    committed = {b.hash for blocks in net.commits.values() for b in blocks if b.height == 1}
    assert len(committed) <= 1, "two blocks committed at height 1"
    # Liveness: once everything is delivered, all four commit the same block.
    net.deliver(lambda f, t, m: True)
    for t in range(170, 1000, 10):
        net.tick(t)
        net.deliver(lambda f, t, m: True)
    assert all(blocks and blocks[0].height == 1 for blocks in net.commits.values())
    assert len({blocks[0].hash for blocks in net.commits.values()}) == 1
    # Nobody signed C for round 0 after its P vote of round 1.
    assert all(
        c.status().c_round != 0 or c.status().c_hash not in p0 for c in net.cores.values()
    ) or all(b[0].hash in p0 for b in net.commits.values())


def test_a_validator_that_voted_p_in_a_later_round_does_not_sign_c_for_an_earlier_one() -> None:
    """The rule itself, on one core: P-quorum for (B0, 0) arrives after our P vote of round 1:
    lock on it (locks only move up), but no C vote."""
    crypto = CostModelCrypto(N)
    params = Params(chain_id="c", n=N, round_ms=100, stage2_ms=50, expected_leaders=0.01)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    b0, b1 = (_block(BuildBlock(1, r, GENESIS_HASH, 1, b"")) for r in (0, 1))
    core.handle(Tick(110))
    s = core._safety  # white-box: the state a crash after voting P(B1, 1) leaves
    s.p_round, s.p_height, s.p_hash = 1, 1, b1.hash
    out: list[object] = []
    for i in (1, 2, 3):
        sig = crypto.signer(i).sign(vote_message("c", 1, 0, PHASE_P, b0.hash))
        out += core.handle(
            MessageReceived(i, Aggregate.single(N, 1, 0, PHASE_P, b0.hash, i, sig).encode())
        )
    assert core.status().lock is not None and core.status().lock.round == 0
    c_votes = [
        a
        for a in out
        if isinstance(a, Broadcast)
        and isinstance(m := decode_message(a.payload, N, 1 << 20), Aggregate)
        and m.phase == PHASE_C
    ]
    assert c_votes == [] and core.status().c_round == -1


def _quorum(crypto: CostModelCrypto, rnd: int, bh: bytes, signers: tuple[int, ...]) -> Aggregate:
    agg = None
    for i in signers:
        sig = crypto.signer(i).sign(vote_message("c", 1, rnd, PHASE_P, bh))
        single = Aggregate.single(N, 1, rnd, PHASE_P, bh, i, sig)
        if agg is None:
            agg = single
        else:
            agg.merge(single, crypto)
    assert agg is not None
    return agg


def test_a_lock_on_a_block_never_received_fetches_its_body_and_can_repropose_it() -> None:
    """The old core locked with ``lock_block=None`` and nothing fetched the body: it could not
    re-propose the block and abstained on everything else for good."""
    crypto = CostModelCrypto(N)
    params = Params(chain_id="c", n=N, round_ms=100, stage2_ms=50, expected_leaders=4.0)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    core.handle(Tick(1))
    sig = crypto.signer(1).sign(sortition_message("c", 1, 0, GENESIS_HASH))
    body = _block(BuildBlock(1, 0, GENESIS_HASH, 1, sig))
    out = core.handle(MessageReceived(1, _quorum(crypto, 0, body.hash, (1, 2, 3)).encode()))
    assert core.status().lock is not None and core.locked_block() is None
    fetches = [a for a in out if isinstance(a, FetchBlock)]
    assert fetches and fetches[0].block_hash == body.hash and fetches[0].from_index in (1, 2, 3)
    # A body that is not the block's (a lying peer) is refused by validation and fetched again.
    out = core.handle(BlockFetched(body, None))
    assert [a.block.hash for a in out if isinstance(a, ValidateBlock)] == [body.hash]
    out = core.handle(BlockValidated(body.hash, False))
    assert [a.block_hash for a in out if isinstance(a, FetchBlock)] == [body.hash]
    assert core.status().stats["bad_body"] == 1
    core.handle(BlockFetched(body, None))
    out = core.handle(BlockValidated(body.hash, True))
    assert core.locked_block() is not None and core.locked_block().hash == body.hash
    persisted = [SafetyState.decode(a.value, N) for a in out if isinstance(a, Persist)]
    assert persisted and persisted[-1].lock_block is not None  # it survives a restart
    # As a leader of the next round it re-proposes the locked block with its quorum.
    out = core.handle(Tick(101))
    props = [
        m
        for a in out
        if isinstance(a, Broadcast)
        and isinstance(m := decode_message(a.payload, N, 1 << 20), Proposal)
    ]
    assert props and props[0].block.hash == body.hash and props[0].justify is not None


def test_the_highest_lock_is_accepted_however_old_its_round() -> None:
    """After a long partition the highest P-quorum can be more than KEEP_ROUNDS old; the old
    core dropped it as stale, so a validator locked below it never unlocked."""
    crypto = CostModelCrypto(N)
    params = Params(chain_id="c", n=N, round_ms=100, stage2_ms=50, expected_leaders=0.01)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    core.handle(Tick(1))
    low = hashlib.sha256(b"low").digest()
    high = hashlib.sha256(b"high").digest()
    core.handle(MessageReceived(1, _quorum(crypto, 0, low, (1, 2, 3)).encode()))
    assert core.status().lock is not None and core.status().lock.block_hash == low
    core.handle(Tick(1 + 100 * (KEEP_ROUNDS + 10)))
    core.handle(MessageReceived(1, _quorum(crypto, 3, high, (1, 2, 3)).encode()))
    lock = core.status().lock
    assert lock is not None and (lock.round, lock.block_hash) == (3, high)
    # An old quorum that does not beat the lock is still stale.
    stale = core.status().stats["stale"]
    core.handle(MessageReceived(2, _quorum(crypto, 1, low, (1, 2, 3)).encode()))
    assert core.status().stats["stale"] == stale + 1 and core.status().lock.round == 3


def test_an_abstention_is_persisted_before_anything_else() -> None:
    """A locked validator abstaining on a block its lock forbids closes that round for P; the
    old core did not persist it, so a restart forgot it."""
    crypto = CostModelCrypto(N)
    params = Params(chain_id="c", n=N, round_ms=100, stage2_ms=50, expected_leaders=4.0)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    core.handle(Tick(1))
    locked = hashlib.sha256(b"locked").digest()
    core.handle(MessageReceived(1, _quorum(crypto, 0, locked, (1, 2, 3)).encode()))
    core.handle(Tick(101))  # round 1: a fresh proposal the lock forbids
    sig = crypto.signer(1).sign(sortition_message("c", 1, 1, GENESIS_HASH))
    fresh = _block(BuildBlock(1, 1, GENESIS_HASH, 1, sig))
    core.handle(MessageReceived(1, Proposal(1, 1, sig, fresh).encode()))
    core.handle(BlockValidated(fresh.hash, True))
    out = core.handle(Tick(160))
    assert core.status().stats.get("abstain", 0) >= 1
    persisted = [SafetyState.decode(a.value, N) for a in out if isinstance(a, Persist)]
    assert persisted and persisted[-1].p_round == 1


def test_the_sortition_seed_is_not_the_parent_hash() -> None:
    """A proposer chooses its block's contents, hence its hash: a seed from the hash lets it
    grind its block until it wins the next lottery too. The seed comes from its ticket."""
    ticket = bytes(range(96))
    b1 = Block(Header("c", 1, 0, GENESIS_HASH, bytes(32), bytes(32), 0, 0, 0, ticket), ())
    b2 = Block(Header("c", 1, 0, GENESIS_HASH, b"\x01" * 32, bytes(32), 0, 0, 0, ticket), ())
    assert b1.hash != b2.hash
    assert sortition_seed(b1.hash, ticket) == sortition_seed(b2.hash, ticket) != b1.hash
    # The core uses it: after committing a block its tickets are signed over the seed.
    crypto = CostModelCrypto(1)
    core = Core(
        Params(chain_id="c", n=1, round_ms=100, stage2_ms=50),
        crypto.signer(0),
        crypto,
        head=(1, b1.hash),
        head_sortition=ticket,
    )
    out = core.handle(Tick(1))
    build = [a for a in out if isinstance(a, BuildBlock)][0]
    assert crypto.verify(
        0, sortition_message("c", 2, 0, sortition_seed(b1.hash, ticket)), build.sortition
    )
    assert not crypto.verify(0, sortition_message("c", 2, 0, b1.hash), build.sortition)
