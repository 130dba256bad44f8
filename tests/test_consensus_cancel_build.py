"""CancelBuild: the core tells its driver to stop a build once a better ticket's proposal for
that round is here (the block could not win), and at no other time. The node used to poll
the core's best ticket after every message to decide this itself."""

from __future__ import annotations

import hashlib

from accord.base.types import Block, Header
from accord.consensus import (
    BlockBuilt,
    BuildBlock,
    CancelBuild,
    Core,
    CostModelCrypto,
    MessageReceived,
    Params,
    Proposal,
    Tick,
    sortition_message,
    sortition_value,
)

GENESIS_HASH = hashlib.sha256(b"g").digest()
N = 4
CRYPTO = CostModelCrypto(N)
# Every validator wins sortition (expected_leaders = n) and builds at once (no ticket wait).
PARAMS = Params(chain_id="c", n=N, round_ms=100, stage2_ms=50, expected_leaders=4.0)


def _ticket(i: int, rnd: int) -> bytes:
    return CRYPTO.signer(i).sign(sortition_message("c", 1, rnd, GENESIS_HASH))


def _order(rnd: int) -> list[int]:
    """Validators by ticket quality in round ``rnd``, best first."""
    return sorted(range(N), key=lambda i: sortition_value(_ticket(i, rnd)))


def _proposal(i: int, rnd: int) -> bytes:
    t = _ticket(i, rnd)
    h = Header("c", 1, rnd, GENESIS_HASH, bytes(32), bytes(32), 0, i, 0, t)
    return Proposal(rnd, i, t, Block(h, ())).encode()


def _cancels(out: list[object]) -> list[CancelBuild]:
    return [a for a in out if isinstance(a, CancelBuild)]


def _leader(i: int) -> tuple[Core, BuildBlock]:
    core = Core(PARAMS, CRYPTO.signer(i), CRYPTO, head=(0, GENESIS_HASH))
    builds = core.handle(Tick(1))
    build = next(a for a in builds if isinstance(a, BuildBlock))
    assert (build.height, build.round) == (1, 0) and _cancels(builds) == []
    return core, build


def test_a_better_proposal_for_the_pending_build_cancels_it_once() -> None:
    order = _order(0)
    best, me, worse = order[0], order[1], order[2]
    core, _ = _leader(me)
    # A worse proposal of the round, and any proposal of the next round: no cancel.
    assert _cancels(core.handle(MessageReceived(worse, _proposal(worse, 0)))) == []
    nxt = _order(1)[0]
    assert _cancels(core.handle(MessageReceived(nxt, _proposal(nxt, 1)))) == []
    # The better one: exactly one CancelBuild for (height, round) of the build.
    out = core.handle(MessageReceived(best, _proposal(best, 0)))
    assert _cancels(out) == [CancelBuild(1, 0)]
    # Said once: another better proposal (a re-send of the same one) says nothing more.
    assert _cancels(core.handle(MessageReceived(best, _proposal(best, 0)))) == []


def test_no_cancel_for_the_best_leader_or_after_the_build_is_answered() -> None:
    order = _order(0)
    best, me = order[0], order[1]
    # The best leader's build is never beaten.
    top, _ = _leader(best)
    for i in order[1:]:
        assert _cancels(top.handle(MessageReceived(i, _proposal(i, 0)))) == []
    # Once BlockBuilt came, the build is over: a better proposal cancels nothing.
    core, build = _leader(me)
    t = build.sortition
    block = Block(Header("c", 1, 0, GENESIS_HASH, bytes(32), bytes(32), 0, me, 0, t), ())
    assert _cancels(core.handle(BlockBuilt(block))) == []
    assert _cancels(core.handle(MessageReceived(best, _proposal(best, 0)))) == []


def test_a_better_proposal_already_held_cancels_the_build_in_its_batch() -> None:
    """A proposal of round 1 may arrive during round 0; a leader asked to build in round 1
    is told at once that its block cannot win (the node then never starts it)."""
    order = _order(1)
    best, me = order[0], order[1]
    core = Core(PARAMS, CRYPTO.signer(me), CRYPTO, head=(0, GENESIS_HASH))
    core.handle(Tick(1))
    core.handle(MessageReceived(best, _proposal(best, 1)))
    out = core.handle(Tick(100))
    kinds = [type(a) for a in out]
    assert BuildBlock in kinds and _cancels(out) == [CancelBuild(1, 1)]
    assert kinds.index(CancelBuild) > kinds.index(BuildBlock)
