"""A restored validator must not vote where its key's earlier votes (which its backup does not
know) could conflict: the review's fork, replayed on real cores, and the peers that tried to
end or prolong the hold.

The fork (hostile review, finding 1): at height 2 round 1 the P-quorum for B reached 0, 1, 3,
the C-quorum reached 1 only, which committed B. Validator 3 was restored from a height-1
backup; the hold ended when the node was "level with f+1 peers" (peers at 1, 2, 1: at once),
it voted again unlocked, and Byzantine 0 with honest 2 and restored 3 committed B2 at height 2.
Now the hold ends only with a committed block proposed after the restore's boundary round,
which is at a height the original never reached.
"""

# mypy: ignore-errors
from __future__ import annotations

import asyncio
import types

from accord.consensus import PHASE_C, PHASE_P, Aggregate, Params, SafetyState
from accord.node.catchup import MAX_SYNC_BLOCKS, CatchUp
from accord.node.doublesign import DoubleSignGuard

from .support.consensus import Net, is_prop

ROUND_MS = 100
GENESIS = types.SimpleNamespace(
    f=1,
    n=4,
    genesis_time_ms=0,
    consensus=types.SimpleNamespace(round_ms=ROUND_MS, time_drift=lambda: 3 * ROUND_MS),
)


def _height_2_split() -> tuple[Net, bytes, bytes, object]:
    """Height 1 everywhere; at height 2 round 1 the original 3 C-votes B (locked), only
    validator 1 commits B. Returns the net, B, 3's record as backed up at height 1, and
    the block of height 1."""
    params = Params(chain_id="c", n=4, round_ms=ROUND_MS, stage2_ms=50, expected_leaders=4.0)
    net = Net(params, 4, honest=[0, 1, 2, 3])
    net.tick(1)
    net.deliver(is_prop())
    net.tick(60)
    net.deliver(lambda f, t, m: True)
    k1 = net.commits[3][0]
    net.pending.clear()
    backup_of_3 = net.persisted[3]
    net.tick(101)
    net.deliver(is_prop())
    net.tick(160)
    b = net.cores[1].status().p_hash
    net.deliver(lambda f, t, m: isinstance(m, Aggregate) and m.phase == PHASE_P and t in (0, 1, 3))
    net.deliver(lambda f, t, m: isinstance(m, Aggregate) and m.phase == PHASE_C and t == 1)
    assert [x.hash for x in net.commits[1] if x.height == 2] == [b]
    assert (net.cores[3].status().c_height, net.cores[3].status().c_hash) == (2, b)
    net.pending.clear()
    return net, b, backup_of_3, k1


def test_a_restored_validator_votes_only_above_the_heights_its_key_voted_at(tmp_path) -> None:
    net, b, backup_of_3, _ = _height_2_split()
    from accord.storage import backup as bk

    # The original 3 is gone; its folder is restored from the height-1 backup at t = 201.
    bk.write_restored_marker(tmp_path, {"restored_ms": 201})
    guard = DoubleSignGuard(GENESIS, 3, enabled=True)
    guard.open(tmp_path, 201)
    assert guard.holding and guard.boundary is not None
    assert guard.vouch_start({0: 201, 1: 201, 2: 201})  # the first statuses: clocks agree
    del net.cores[3]  # holding: its core is fed nothing but certified blocks
    # The other three go on (Byzantine 0 behaving, or the chain stalls anyway).
    t = 200
    while t < 3000 and not any(x.header.round >= guard.boundary for x in net.commits[1]):
        t += 10
        net.tick(t, who=[0, 1, 2])
        net.deliver(lambda f, to, m: f != 3 and to != 3)
    assert [x.hash for x in net.commits[2] if x.height == 2] == [b]  # 2 learnt B from 1
    # The restored node commits validator 1's blocks in order; the hold ends only with a
    # block proposed at or after the boundary round.
    released_at = None
    heads = {i: max(x.height for x in net.commits[i]) for i in (0, 1, 2)}
    clocks = {i: t for i in (0, 1, 2)}
    for block in net.commits[1]:
        if guard.ends_hold(block.header.round, block.height, heads, clocks, t):
            released_at = block
            break
    assert released_at is not None and released_at.height > 2, "released where the key voted"
    # Restart 3 at that head, on its backup record with the rounds closed, as release does.
    s = SafetyState.decode(backup_of_3, 4)
    s.p_round = max(s.p_round, guard.round_of(t + GENESIS.consensus.time_drift()))
    net.persisted[3] = s.encode()
    net.restart(
        3, head=(released_at.height, released_at.hash), head_sortition=released_at.header.sortition
    )
    # Keep going with everyone; no height ever gets two blocks, and 3's key never signs two
    # blocks in one (height, round, phase) (counting the original's votes).
    for _ in range(40):
        t += 10
        net.tick(t)
        net.deliver(lambda f, to, m: True)
    for h in {x.height for i in range(4) for x in net.commits[i]}:
        assert len({x.hash for i in range(4) for x in net.commits[i] if x.height == h}) == 1, h
    assert not net.honest_equivocations()
    votes_of_3 = {k for k in net.signed if k[0] == 3}
    assert all(k[1] <= 2 or k[1] > released_at.height for k in votes_of_3), votes_of_3


class _HeldNode:
    """What CatchUp reads of a node: a restored one, holding at height 5."""

    def __init__(self, liar: int) -> None:
        self.running = True
        self.fault = None
        self.name = "v3"
        self.genesis = GENESIS
        self.ops = types.SimpleNamespace(holds_catch_up=False)
        self.double_sign = types.SimpleNamespace(holding=True, start_vouched=True)
        self.worker = types.SimpleNamespace(busy=False, barrier=self._noop)
        self.chain = types.SimpleNamespace(head=lambda: (5, b"h"))
        self.driver = types.SimpleNamespace(step=lambda event: None)
        self.asked: list[int] = []
        counter = types.SimpleNamespace(inc=lambda *a, **k: None)
        self.meters = types.SimpleNamespace(sync=counter, bad_msgs=counter)

        async def request(peer, body, timeout):
            self.asked.append(peer)
            return [] if peer == liar else [[None, None]]

        self.transport = types.SimpleNamespace(request=request)

    async def _noop(self) -> None:
        return None


def test_a_peer_claiming_a_far_head_and_sending_nothing_is_not_the_only_one_asked() -> None:
    """A held node gets blocks only through catch-up, which asks the peer with the highest
    head. A liar claiming 10**9 and answering [] was asked for ever; now a peer that claims
    blocks it does not send is distrusted and the others are asked."""
    node = _HeldNode(liar=0)
    cu = CatchUp(node)
    cu._heads.update({0: 10**9, 1: 20, 2: 20})

    async def rounds() -> None:
        for _ in range(6):
            cu._inflight.clear()  # one status interval apart
            cu.maybe_sync()
            for _ in range(5):
                await asyncio.sleep(0)

    asyncio.run(rounds())
    assert node.asked[0] == 0 and any(p != 0 for p in node.asked), node.asked


def test_statuses_cannot_end_the_hold_or_claim_a_negative_head() -> None:
    """A restored node at 5, an honest peer at 100 and a liar at 0: the old rule ("level
    with f+1 peers") released it 95 heights behind. Statuses now decide nothing."""

    async def main() -> None:
        node = _HeldNode(liar=0)
        cu = CatchUp(node)
        cu.on_status(1, [100, b"x" * 32, 5])
        cu.on_status(0, [0, b"", 5])
        await asyncio.sleep(0)
        assert node.double_sign.holding
        try:
            cu.on_status(2, [-1, b"", 5])
        except Exception as e:  # noqa: BLE001 - the decoder's refusal is what we look for
            assert "height >= 0" in str(e)
        else:
            raise AssertionError("a negative head was accepted")

    asyncio.run(main())


def test_a_peer_claiming_a_far_head_and_never_answering_is_not_the_only_one_asked() -> None:
    """Third review: a liar that lets every request time out (no empty answer to judge) was
    the only peer ever asked; a failed request from a peer that claims more than we hold now
    distrusts it too."""
    from accord.base.errors import Unavailable

    node = _HeldNode(liar=-1)

    async def request(peer, body, timeout):
        node.asked.append(peer)
        if peer == 0:
            raise Unavailable("timed out")
        return [[None, None]]

    node.transport = types.SimpleNamespace(request=request)
    cu = CatchUp(node)
    cu._heads.update({0: 10**9, 1: 20, 2: 20})

    async def rounds() -> None:
        for _ in range(6):
            cu._inflight.clear()
            cu.maybe_sync()
            for _ in range(5):
                await asyncio.sleep(0)

    asyncio.run(rounds())
    assert node.asked[0] == 0 and any(p != 0 for p in node.asked), node.asked
    assert 0 in cu.distrusted


def _sync_rounds(cu: CatchUp, n: int) -> None:
    async def rounds() -> None:
        for _ in range(n):
            cu._inflight.clear()  # a status interval apart
            cu.maybe_sync()
            for _ in range(5):
                await asyncio.sleep(0)

    asyncio.run(rounds())


def test_a_liar_resending_a_stale_block_is_distrusted_and_cannot_hold_the_node() -> None:
    """Fourth review: a liar claiming head 10**9 answered every request with one decodable
    old block (no certificate: the core drops it). Catch-up counted blocks decoded, not
    blocks that landed, so the liar was never distrusted, stayed the only peer asked, and its
    claim held the node for ever. Now an answer that moves the head nowhere distrusts it,
    and the release reads the (f+1)-th highest head, which one liar cannot raise."""
    _, _, _, k1 = _height_2_split()
    node = _HeldNode(liar=-1)

    async def request(peer, body, timeout):
        node.asked.append(peer)
        return [[k1.to_obj(), None]]

    node.transport = types.SimpleNamespace(request=request)
    cu = CatchUp(node)
    cu._heads.update({0: 10**9, 1: 7, 2: 7})  # honest peers two ahead of us (5)
    _sync_rounds(cu, 6)
    assert 0 in cu.distrusted and node.asked[0] == 0, node.asked
    assert {1, 2} & set(node.asked), f"the honest peers were never asked: {node.asked}"
    guard = DoubleSignGuard(GENESIS, 3, enabled=True)
    guard.holding, guard.boundary, guard.start_vouched = True, 10, True
    heads = {0: 10**9, 1: 7, 2: 7}
    assert guard.ends_hold(10, 7, heads, {0: 1, 1: 1, 2: 1}, 1)


def test_a_failed_request_does_not_hide_an_honest_peers_head() -> None:
    """Fourth review: each honest peer's first request failed once (a busy peer); distrust
    then hid their heads from the release for 30 s, and the node left the hold 60 heights
    behind the network. Heads are no longer filtered by distrust, and an answer that moves the
    head clears it."""
    from accord.base.errors import Unavailable

    node = _HeldNode(liar=-1)
    height = [5]
    node.chain = types.SimpleNamespace(head=lambda: (height[0], b"h"))
    failed: set[int] = set()

    async def request(peer, body, timeout):
        node.asked.append(peer)
        if peer not in failed:
            failed.add(peer)
            raise Unavailable("timed out")
        return [[None, None]]

    def step(event) -> None:  # a good answer: its block lands
        height[0] += 1

    node.transport = types.SimpleNamespace(request=request)
    cu = CatchUp(node)
    cu._apply = lambda payload, peer: (step(None), 1)[1]  # each answer commits one block
    cu._heads.update({0: 100, 1: 100, 2: 100})
    _sync_rounds(cu, 8)
    # all three failed once and were avoided; asked again in turn, each served and is
    # trusted again (distrust only orders whom to ask)
    assert height[0] > 5 and not cu.distrusted, (height[0], cu.distrusted)
    guard = DoubleSignGuard(GENESIS, 3, enabled=True)
    guard.holding, guard.boundary, guard.start_vouched = True, 10, True
    clocks = {0: 1, 1: 1, 2: 1}
    assert not guard.ends_hold(10, 40, cu.peer_heads, clocks, 1), "released 60 behind"
    assert guard.ends_hold(10, 100, cu.peer_heads, clocks, 1)


def test_a_stalled_network_cannot_hide_a_clock_behind_the_margin(tmp_path) -> None:
    """Fourth review, replayed with its numbers: round 1 s, drift 3 s. Block H was decided at
    t = 1,000 s in round 1003; the original moved to H+1, voted there in round 1003 and went
    away; the network stalled at H+1. Restored at t = 1,000.6 s on a clock 15.601 s behind
    (past the margin), its boundary is 1003. The newest block is H, stamped 1,003 s: the block
    check, judging an old stamp, saw nothing, and the release closed rounds only to 997, so
    round 1003 at H+1 was open again. The peers' clocks (true time) now halt it instead."""
    from accord.storage import backup as bk

    R, d = 1000, 3000
    gen = types.SimpleNamespace(
        f=1,
        n=4,
        genesis_time_ms=0,
        consensus=types.SimpleNamespace(round_ms=R, time_drift=lambda: d),
    )
    behind, t_restore = 15_601, 1_000_600
    bk.write_restored_marker(tmp_path, {"restored_ms": 1})
    g = DoubleSignGuard(gen, 3, enabled=True)
    g.open(tmp_path, t_restore - behind)
    assert g.boundary == 1003
    t_commit = t_restore + 10_000
    local = t_commit - behind
    peers = {0: t_commit, 1: t_commit - 40, 2: local}  # 2 lies: it reports our clock
    assert g.check_clock(1_003_000, local) is None  # the stamp alone says nothing
    reason = g.check_clock(1_003_000, local, peers)
    assert reason is not None and "behind the clocks of 3 peers" in reason
    assert not g.ends_hold(1003, 41, {0: 41, 1: 41, 2: 41}, peers, local)


def test_a_liar_whose_request_hangs_does_not_keep_the_others_from_being_asked() -> None:
    """A liar claiming the highest head lets its request hang until the timeout; the next
    status (well within it) must ask an honest peer instead of waiting on the liar."""
    node = _HeldNode(liar=-1)

    async def request(peer, body, timeout):
        node.asked.append(peer)
        if peer == 0:
            await asyncio.sleep(3600)  # never answers within the test
        return []

    node.transport = types.SimpleNamespace(request=request)
    cu = CatchUp(node)
    cu._heads.update({0: 10**9, 1: 9, 2: 9})

    async def main() -> None:
        cu.maybe_sync()
        await asyncio.sleep(0)
        cu._inflight[0] -= 2.5  # the next status, 2.5 s later: the liar's request still hangs
        cu.maybe_sync()
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 5))
    assert node.asked[:1] == [0] and node.asked[1:2] in ([1], [2]), node.asked


def test_a_liar_serving_one_block_per_answer_does_not_throttle_catch_up() -> None:
    """Fifth review: a Byzantine validator with the real chain claims head 10**9 and answers
    each request with one genuine block. Each answer moves the head, so it stays trusted and,
    as the highest head, was the only peer asked: one block per answer instead of 16, and a
    held node never reached a tip growing faster. Claims are capped at the (f+1)-th highest
    head and ties asked in turn, so the honest peers serve their share."""
    node = _HeldNode(liar=-1)
    height = [5]
    node.chain = types.SimpleNamespace(head=lambda: (height[0], b"h"))

    async def request(peer, body, timeout):
        node.asked.append(peer)
        return [[None, None]] * (1 if peer == 0 else MAX_SYNC_BLOCKS)

    def apply(payload, peer):  # each block of an answer lands
        height[0] += len(payload)
        return len(payload)

    node.transport = types.SimpleNamespace(request=request)
    cu = CatchUp(node)
    cu._apply = apply
    cu._heads.update({0: 10**9, 1: 100, 2: 100})
    _sync_rounds(cu, 20)
    assert {1, 2} <= set(node.asked), node.asked
    assert height[0] >= 100, f"caught up only to {height[0]} in 20 requests: {node.asked}"
