"""Hostile review of validator-set changes (issue 19, deliverable 3): attacks on the node's
side of a handoff. Each test states a guarantee, plays the attacker, and fails while the
attack works; it passes once the weakness is fixed.

The attackers are peers a node still talks to after governance moved the set: a removed
validator keeps its key and stays in every roster (so it may follow), and it may serve
catch-up answers. Nothing here needs a Byzantine majority of any height's set.

Five of the six failed on the code before the fixes (held blocks checked on arrival where the
set is final, bounded and several per height; every height to head + 2 looked at after each
executed block; a rotated-away key retired by the transport) and pass now; the lagging
validator that could only catch up from an added one catches up now (node.json's
``new_validator_keys``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from accord.base.encoding import Value
from accord.base.types import Block, Certificate
from accord.node import Node

from .support.gov import add_validator_action, new_validator_folder, wait_until
from .support.inproc import ThreadedNetwork


def _head(nd: Node) -> int:
    assert nd.chain is not None
    return nd.chain.head()[0]


def _answer(items: list[tuple[Block, Certificate]]) -> list[Value]:
    """A catch-up answer as a peer sends it: [[block, certificate], ...]."""
    return [[b.to_obj(), c.to_obj()] for b, c in items]


def _network_with_isolated_newcomer(
    root: Path, name: str, *, with_key: bool = False
) -> tuple[ThreadedNetwork, Node]:
    """Four genesis validators and a fifth member set up apart, not added: no genesis peer
    accepts its key yet, so it hears only what the test hands it (a deterministic follower);
    ``with_key``: their node.json names its key, so they accept it for catch-up at once."""
    from accord.devnet import free_ports

    port, api_port = free_ports(2)
    made: list[Path] = []

    def prepare(r: Path) -> None:
        made.append(new_validator_folder(r, "validator-4", port, api_port, with_key=with_key))

    net = ThreadedNetwork(root, validators=4, name=name, prepare=prepare)
    return net, Node.from_dir(made[0])


def test_unverified_blocks_held_first_make_a_follower_drop_the_genuine_ones(
    tmp_path: Path,
) -> None:
    """Guarantee 5 (a lagging node catches up across a handoff) against a lying catch-up peer.

    A follower (or a member whose set is not known that far yet) holds certified blocks it
    cannot judge yet in ``CoreDriver._later``, one per height, first come first kept, and
    checks them only when they are next. A liar (a removed validator, say) answers a catch-up
    request with blocks whose certificates do not verify for heights 2..8; the honest answer
    for 1..8 then arrives and every genuine block but the first is dropped
    (``block.height in self._later``). The follower commits 1, refuses the forged 2 when it
    comes up, and has nothing left: without another peer it never moves again, and with
    honest peers it gains one block per request round (the liar, sending a genuine first
    block with its forgeries, has its distrust cleared each time).

    Fails on the current code: the follower stays at height 1. Fix: check a held block's
    certificate on arrival once its set is final (height <= head + 2), and beyond that keep
    more than one candidate per height (or let a later one replace an unchecked one and
    check both when due); distrust the peer whose held block was refused."""
    net, follower = _network_with_isolated_newcomer(tmp_path / "net", "setrev-later")
    try:
        src = net.nodes[0]
        wait_until(lambda: _head(src) >= 8, 60, "the chain reaches height 8")
        net.run(follower.start())
        assert follower.driver.following and _head(follower) == 0
        genuine = []
        for h in range(1, 9):
            block, cert = src.store.get_block(h), src.store.get_certificate(h)
            assert block is not None and cert is not None
            genuine.append((block, cert))
        # The liar: the genuine blocks 2..8 under certificates that do not verify (another
        # round than the one signed); any forgery the follower cannot check yet does the same.
        forged = [(b, dataclasses.replace(c, round=c.round + 1)) for b, c in genuine[1:]]

        async def deliver(answer: list[Value], peer: int) -> None:
            follower.catchup._apply(answer, peer)

        net.run(deliver(_answer(forged), 2))
        net.run(deliver(_answer(genuine), 1))  # the honest answer, right after
        wait_until(lambda: _head(follower) >= 1, 20, "the follower commits block 1")
        try:
            wait_until(lambda: _head(follower) >= 8, 20, "the follower commits blocks 2..8")
        except AssertionError:
            raise AssertionError(
                f"the follower stopped at height {_head(follower)} although an honest peer "
                f"delivered certified blocks 1..8: forged blocks held first for 2..8 made it "
                f"drop the genuine ones (held now: {sorted(follower.driver._later)})"
            ) from None
        for h in range(1, 9):
            assert follower.store.get_header(h).hash == genuine[h - 1][0].hash
    finally:
        net.run(follower.stop())
        net.close()


def test_a_peer_cannot_make_a_follower_hold_blocks_for_heights_it_never_asked_for(
    tmp_path: Path,
) -> None:
    """No unbounded memory from unauthenticated input, against a lying catch-up peer.

    ``_hold_or_follow`` keeps any block with a certificate for a height above the head, up
    to ``MAX_LATER`` (512), without checking anything (its set may not be known yet), and a
    follower releases them only in height order, so one far in the future stays until the
    chain gets there. Catch-up asks for at most ``MAX_SYNC_BLOCKS`` (16) heights past the
    head, so a block far beyond can only come from a liar; with the default
    ``max_block_bytes`` of 8 MiB, 512 of them are 4 GiB held for a peer that spent a few
    answers (the liar keeps being asked: a genuine first block in each answer clears its
    distrust, see the first attack).

    Fails on the current code: all 512 forged far-future blocks are held. Fix: hold only
    heights a request of ours could bring (head + 1 .. head + MAX_SYNC_BLOCKS, or what was
    asked by hash), bound the held bytes rather than the count, and check a held block as
    soon as its set is final."""
    from accord.node.catchup import MAX_SYNC_BLOCKS
    from accord.node.driver import LATER_WINDOW as MAX_LATER

    net, follower = _network_with_isolated_newcomer(tmp_path / "net", "setrev-far")
    try:
        src = net.nodes[0]
        wait_until(lambda: _head(src) >= 2, 60, "the chain reaches height 2")
        net.run(follower.start())
        assert follower.driver.following
        block, cert = src.store.get_block(1), src.store.get_certificate(1)
        assert block is not None and cert is not None

        def far(h: int) -> tuple[Block, Certificate]:
            b = Block(dataclasses.replace(block.header, height=h), block.txs)
            return b, dataclasses.replace(cert, height=h, block_hash=b.hash)

        async def deliver(answer: list[Value]) -> None:
            follower.catchup._apply(answer, 2)

        base = 100_000
        for start in range(0, MAX_LATER, MAX_SYNC_BLOCKS):  # answers of 16, as catch-up's
            net.run(deliver(_answer([far(base + start + i) for i in range(MAX_SYNC_BLOCKS)])))
        held = len(follower.driver._later)
        assert held <= MAX_SYNC_BLOCKS, (
            f"a follower at height {_head(follower)} holds {held} unverified blocks a peer sent "
            f"for heights {base}.. that no request of its own asked for"
        )
    finally:
        net.run(follower.stop())
        net.close()


def test_a_lagging_genesis_validator_catches_up_from_a_validator_governance_added(
    tmp_path: Path,
) -> None:
    """Guarantee 5 (a lagging or restarted node catches up across the handoff).

    A node's roster (the keys its transport accepts and dials) is genesis's validators plus
    the set of its head + 1, grown only as it executes the blocks that change the set. A
    genesis validator that was down while governance added validator-4 knows nothing of
    validator-4's key until it has executed the addition, which it can only fetch from a
    peer it knows. validator-4 is not in genesis, so it dials the genesis validators, and
    validator-3 refuses it (``unknown_key``); validator-3 never dials it. Its node.json
    names validator-4 in ``peers`` and ``new_validators``, and validator-4 is honest, up to
    date and reachable, yet once the genesis peers it knows are down (a consortium whose
    genesis members have left, or just an outage of the others) it never catches up.

    Schedule: validator-3 stops at once; validators 0-2 vote validator-4 in; the set of five
    makes progress with validator-4; validators 0-2 stop; validator-3 restarts.

    Failed on the code before (validator-3 stayed at its old head). Fixed: node.json carries
    the keys of the validators governance is to add (``new_validator_keys``, from their
    member cards, written here by ``new_validator_folder(with_key=True)``); the node accepts
    and dials them from the start, for catch-up only: their consensus messages count for
    nothing until a set names them, and the blocks they serve are judged by certificates
    checked against the set of each height. Without the fix (the keys not put in the
    roster) validator-3 stays at its old head again."""
    from .support.gov import NetworkGov

    net, newcomer = _network_with_isolated_newcomer(tmp_path / "net", "setrev-lag", with_key=True)
    lagging: Node | None = None
    try:
        net.run(newcomer.start())
        # Its key is known for catch-up, not for consensus: connected, yet outside the set
        # the driver maps messages through (what it says reaches no core).
        first = net.nodes[0]
        assert first.transport is not None
        j = first.transport.index_of(newcomer.public_key)
        assert j is not None
        wait_until(lambda: first.transport.is_connected(j), 30, "validator-0 accepts validator-4")
        assert first.driver.view is not None and j not in first.driver.view.from_transport
        behind = _head(net.nodes[3])
        net.run(net.nodes[3].stop())
        gov = NetworkGov(net, 3)
        added = gov.vote(add_validator_action(tmp_path / "net" / "validator-4"), [0, 1, 2])
        # The set of five (quorum 4) needs validator-4's votes to make progress.
        wait_until(lambda: _head(newcomer) >= added + 3, 90, "the set of five decides")
        assert not newcomer.driver.following
        for i in (0, 1, 2):
            net.run(net.nodes[i].stop())
        target = _head(newcomer)
        assert target > behind
        lagging = Node.from_dir(tmp_path / "net" / "validator-3")
        net.run(lagging.start())
        node = lagging
        try:
            wait_until(lambda: _head(node) >= target, 30, "validator-3 catches up from validator-4")
        except AssertionError:
            raise AssertionError(
                f"validator-3 stays at height {_head(node)} (the chain is at {target}): the "
                "only up-to-date peer is validator-4, whom its roster lacks until it executes "
                f"block {added - 1} (its peers: {node.transport and node.transport.peers()}, "
                f"heads {node.catchup.peer_heads}, deciding {node.ops.deciding}; "
                f"validator-4's: {newcomer.transport and newcomer.transport.peers()})"
            ) from None
    finally:
        if lagging is not None:
            net.run(lagging.stop())
        net.run(newcomer.stop())
        net.close()


class _LaggingAcrossAnAddition:
    """validator-3 is down while validators 0-2 vote validator-4 in (the set of five from
    height ``added``); the set of five goes on; then validator-3 restarts on a port nobody
    dials (no genesis peer knows it; it dials nobody: it is last in genesis and its roster
    lacks validator-4), so it hears only the catch-up answers the test hands it, built
    from validator-0's store as an honest peer serves them."""

    def __init__(self, root: Path, name: str) -> None:
        from accord.devnet import free_ports
        from accord.node.config import NodeConfig

        from .support.gov import NetworkGov

        self.net, self.newcomer = _network_with_isolated_newcomer(root, name)
        self.lagging: Node | None = None
        net = self.net
        net.run(self.newcomer.start())
        self.behind = _head(net.nodes[3])
        net.run(net.nodes[3].stop())
        self.added = NetworkGov(net, 3).vote(add_validator_action(root / "validator-4"), [0, 1, 2])
        assert self.behind < self.added - 2
        wait_until(lambda: _head(net.nodes[0]) >= self.added + 3, 90, "the set of five decides")
        folder = root / "validator-3"
        cfg = NodeConfig.load(folder)
        cfg.port = free_ports(1)[0]
        cfg.save(folder)
        self.lagging = Node.from_dir(folder)
        net.run(self.lagging.start())

    def genuine(self, h: int) -> tuple[Block, Certificate]:
        store = self.net.nodes[0].store
        block, cert = store.get_block(h), store.get_certificate(h)
        assert block is not None and cert is not None
        return block, cert

    def deliver(self, items: list[tuple[Block, Certificate]]) -> None:
        """One catch-up answer, as a peer's arrives (all of it stepped in one go)."""
        nd = self.lagging
        assert nd is not None

        async def apply() -> None:
            nd.catchup._apply(_answer(items), 0)

        self.net.run(apply())

    def one_by_one_to(self, last: int) -> None:
        """Blocks up to ``last`` one answer each, each executed before the next: the driver
        judges the set after every one of them."""
        nd = self.lagging
        assert nd is not None
        for h in range(_head(nd) + 1, last + 1):
            self.deliver([self.genuine(h)])
            wait_until(lambda: _head(nd) >= h, 20, f"validator-3 executes block {h}")  # noqa: B023

    def close(self) -> None:
        if self.lagging is not None:
            self.net.run(self.lagging.stop())
        self.net.run(self.newcomer.stop())
        self.net.close()

    def describe(self) -> str:
        nd = self.lagging
        assert nd is not None
        core = nd.driver.core
        st = None if core is None else core.status()
        n = None if nd.driver.view is None else len(nd.driver.view.keys)
        return (
            f"validator-3 at height {_head(nd)}, its core runs a set of {n} told it decides "
            f"through {None if st is None else st.through} (the set of five decides from "
            f"{self.added}); certificates it refused: "
            f"{None if st is None else st.stats['bad_signature']}"
        )


def test_a_lagging_validator_catching_up_across_a_handoff_is_not_stuck_in_the_old_set(
    tmp_path: Path,
) -> None:
    """Guarantee 5 (a lagging node catches up across the handoff); the driver's SetKnown.

    ``CoreDriver._after_executed`` returns early while more commits wait, so it says nothing
    for a block executed with the next one queued, and ``known_through(head, keys)`` assumes
    ``keys`` decides head + 1. A catch-up answer holding ``added - 2`` and ``added - 1``
    (any answer of several blocks spanning them, every other time) has the core commit both
    at once; the executed ``added - 2``, where the driver should say "final through
    added - 1", is skipped, and after ``added - 1`` ``known_through`` sees the set change
    at ``added + 1`` only and says ``SetKnown(added, final=True)``: the old set's core is
    told it decides ``added``, the new set's first height. Every certificate of that height
    (a quorum of five) fails against the four, so the node never gets past ``added - 1``.

    Schedule: blocks up to ``added - 3`` one by one, then one answer ``added - 2`` ..
    ``added + 3`` from an honest peer. Fails on the current code: validator-3 stays at
    ``added - 1`` with a core of four told it decides through ``added``. Fix: compute the
    SetKnown from the core's height, not the head's (the set of every height from the
    core's height to head + 2 must be ``keys``; final at the last such height), or judge
    after every executed block even while commits wait."""
    sc = _LaggingAcrossAnAddition(tmp_path / "net", "setrev-stuck")
    try:
        lagging = sc.lagging
        assert lagging is not None
        e = sc.added
        sc.one_by_one_to(e - 3)
        sc.deliver([sc.genuine(h) for h in range(e - 2, e + 4)])
        try:
            wait_until(lambda: _head(lagging) >= e + 3, 20, "validator-3 catches up")
        except AssertionError:
            raise AssertionError(sc.describe()) from None
    finally:
        sc.close()


def test_a_lagging_validator_never_commits_a_block_the_old_set_certified_past_the_handoff(
    tmp_path: Path,
) -> None:
    """Guarantees 1 and 2 (a certificate is checked against the set of its height), through
    the same driver flaw as the test above.

    Once validator-3's old-set core is told it decides ``added``, a quorum of the *old* set
    certifies a block there: here three of the four old keys sign an alternative block for
    ``added`` (the genuine header with another round: same transactions, same state root).
    The set of five never saw it. The lagging validator commits it and forks.

    The attack needs no Byzantine majority of the new set: in a schedule that replaces two of
    four validators ({0,1,2,3} -> {0,1,4,5}) the two removed ones, which keep their keys and
    may be fully malicious afterwards, plus the lagging honest validator's own old-set core
    (told it decides that height, it leads, votes and locks there) are a quorum of three of
    the old four, while the new set decides without it. This test signs with three old keys
    to keep the schedule to one vote; the flaw it needs is the same.

    Schedule: blocks up to ``added - 3`` one by one, one answer ``added - 2``, ``added - 1``,
    then the forged block for ``added``. Fails on the current code: validator-3's block at
    ``added`` is the forged one."""
    from accord.base.crypto import bls
    from accord.base.types import vote_message
    from accord.consensus import PHASE_C

    sc = _LaggingAcrossAnAddition(tmp_path / "net", "setrev-fork")
    try:
        lagging = sc.lagging
        assert lagging is not None
        e = sc.added
        sc.one_by_one_to(e - 3)
        sc.deliver([sc.genuine(e - 2), sc.genuine(e - 1)])
        wait_until(
            lambda: _head(lagging) >= e - 1, 20, "validator-3 reaches the old set's last height"
        )
        genuine, _ = sc.genuine(e)
        fake = Block(
            dataclasses.replace(genuine.header, round=genuine.header.round + 1), genuine.txs
        )
        msg = vote_message(sc.net.genesis.chain_id, e, fake.header.round, PHASE_C, fake.hash)
        old = [0, 1, 2]  # indexes in the old set of four (genesis order)
        sig = bls.aggregate([bls.sign(bls.demo_secret(f"validator-{i}"), msg) for i in old])
        cert = Certificate(
            e, fake.header.round, PHASE_C, fake.hash, bytes([sum(1 << i for i in old)]), sig
        )
        sc.deliver([(fake, cert)])
        sc.deliver([sc.genuine(h) for h in range(e, e + 4)])  # and the honest answer after it
        wait_until(lambda: _head(lagging) >= e or lagging.fault is not None, 20, "height e decided")
        got = lagging.store.get_header(e)
        assert got is not None and got.hash == genuine.hash, (
            f"validator-3 committed at height {e} a block only the old set certified (the "
            f"network's is {genuine.hash.hex()[:16]}); {sc.describe()}"
        )
    finally:
        sc.close()


def test_a_key_rotated_away_is_no_longer_accepted_by_the_transport(tmp_path: Path) -> None:
    """Guarantee 4 (the transport accepts a connection only from a key it should).

    A validator's BLS key is rotated by vote (the usual reason: the old one leaked). The
    roster only grows: the new key is added as another entry under the same name, and the
    old one stays in ``Transport._key_index`` for good, so whoever holds the old secret still
    completes the handshake with every node, as validator-3, long after no set names that
    key. Its consensus messages count for nothing, but it is a trusted-looking peer for
    everything else: it reports heads and clocks (catch-up's and the restore hold's order
    statistics, computed with genesis's f), is asked for and serves catch-up answers (the
    first two attacks above), and is served blocks. Every node also keeps dialing the old
    entry at validator-3's address, failing (``wrong_peer``) for ever.

    Fails on the current code: the old key's handshake ends in READY. Fix: accept only keys
    of the sets from the head on (plus, if removed validators are to follow, the removed
    ones, but not a key its own validator rotated away), and stop dialing entries no set
    from the head on names."""
    from accord.base.crypto import bls

    from .support.gov import NetworkGov
    from .support.rawpeer import completes_handshake

    net = ThreadedNetwork(tmp_path / "net", validators=4, name="setrev-rotate")
    try:
        old_sk, new_sk = bls.demo_secret("validator-3"), bls.demo_secret("validator-3-rotated")
        at = NetworkGov(net, 3).vote(
            {
                "kind": "rotate_validator_key",
                "name": "validator-3",
                "bls_public_key": bls.public_key(new_sk),
                "pop": bls.pop_prove(new_sk),
            },
            [0, 1, 2],
        )
        target = net.nodes[0]
        wait_until(lambda: _head(target) >= at + 2, 60, "the rotation is in force")
        net.run(net.nodes[3].stop())  # the operator moved validator-3 to its new key
        t = target.transport
        assert t is not None
        assert not net.run(completes_handshake(t, old_sk)), (
            f"validator-0 at height {_head(target)} accepted a connection from validator-3's "
            f"key rotated away at height {at}"
        )
    finally:
        net.close()
