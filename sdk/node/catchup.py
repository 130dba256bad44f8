"""Catch-up: how a validator that fell behind gets the blocks it missed, and serves others.

Validators exchange their heads and clocks (``STATUS``: ``[height, head hash, time_ms]``)
every ``status_interval``. A node two or more
heights behind asks the most advanced peer it trusts for the missing blocks by height
(:data:`MAX_SYNC_BLOCKS` per answer, one request per peer at a time) and hands each, with its
certificate, to the core as ``BlockFetched``: the core checks the certificate and commits it
like any other block. The core's own ``FetchBlock`` (a proposal or commit it has votes for but
not the body of) asks by hash. Rules this module keeps:

* **Nothing a peer sends is believed**: every answer is decoded in full before the core sees
  any of it, and the core verifies each certificate. A peer is avoided for :data:`DISTRUST_S`
  (asked only if nobody else can answer) when its answer does not decode, its block body does
  not apply under its certificate, or it claims more than we hold and its request failed or
  its answer moved our head nowhere once the commits landed (blocks that merely decode are
  not progress: fourth review, a liar resending one stale block was asked for ever). An
  answer that moves the head clears the peer's distrust.
* **Pruned is said, not hidden**: a request by height below what a peer keeps is answered
  ``pruned``; that peer is not asked for those heights again, and once f+1 members said it of
  the next height and no other member is left to ask, the node reports unhealthy with the
  reason (a newer backup or state sync from an empty folder is needed) instead of asking on
  for ever; a block that lands after all clears it.
* Reported heads and clocks are claims: what reads them (the restore hold,
  :mod:`accord.node.doublesign`) takes order statistics that f liars cannot move.
* **Requests never block a read loop**: each runs in a task of its own, so two peers
  fetching from each other cannot deadlock.
* Answers are bounded by count and by size (two blocks' worth of the ``max_block_bytes`` in
  force at the first height asked for).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import AccordError, DecodeError, NetError
from accord.base.types import Block, Certificate
from accord.consensus import BlockFetched
from accord.net.frames import Kind
from accord.node.doublesign import vouched
from accord.node.driver import now_ms, spawn
from accord.node.sets import governed
from accord.storage.store import Pruned

if TYPE_CHECKING:
    from accord.node.node import Node

log = logging.getLogger("accord.node")

MAX_SYNC_BLOCKS = 16
"""Blocks per catch-up answer (a 5,000-tx block is ~1.3 MB; frames allow four blocks' worth
of ``max_block_bytes``, and answers are also cut by size)."""

DISTRUST_S = 30.0
"""How long catch-up avoids a peer that sent a block body that did not apply."""

REQUEST_TIMEOUT_S = 10.0
"""How long a catch-up request waits for its answer (a request in flight is not repeated)."""

RECENT_BLOCKS = 64
"""Uncommitted blocks kept to answer a peer's request by hash (proposals seen lately)."""


class CatchUp:
    """One node's catch-up state: peers' heads, requests in flight, distrusted peers."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._heads: dict[int, int] = {}
        self._clocks: dict[int, tuple[int, float]] = {}  # peer -> (its time_ms, our monotonic)
        self._asked: dict[int, float] = {}  # peer -> when it was last asked by height
        self._inflight: dict[
            int, float
        ] = {}  # peer -> when its request by height in flight was sent
        self.distrusted: dict[int, float] = {}  # peer -> monotonic time until which it is avoided
        self.body_source: dict[bytes, int] = {}  # who sent a fetched block (a bad body is theirs)
        self.pruned: dict[int, int] = {}
        """peer -> a height it answered it no longer keeps (pruned): not asked by height
        again until our next height is above it (it will never have the blocks again)."""
        self.stranded: str | None = None
        """Why this node cannot catch up (every peer that could send its next block pruned
        it), None otherwise; reported as unhealthy until a block arrives after all."""
        self._stranded_at = 0  # the next height that was pruned everywhere
        self.recent: OrderedDict[bytes, Block] = OrderedDict()

    def bad_body(self, block: Block) -> int | None:
        """A certified block's body did not apply: avoid whoever sent it, forget the body;
        return that peer (None: it was not fetched)."""
        source = self.body_source.pop(block.hash, None)
        if source is not None:
            self.distrusted[source] = time.monotonic() + DISTRUST_S
        self.recent.pop(block.hash, None)
        return source

    def remember(self, block: Block) -> None:
        self.recent[block.hash] = block
        while len(self.recent) > RECENT_BLOCKS:
            self.recent.popitem(last=False)

    async def status_loop(self) -> None:
        node = self.node
        while node.running:
            if node.ops.syncing:  # no head to tell while a snapshot installs
                await asyncio.sleep(node.status_interval)
                continue
            height, head = node.chain.head()  # type: ignore[union-attr]
            node.transport.broadcast(Kind.STATUS, [height, head, now_ms()])  # type: ignore[union-attr]
            self.maybe_sync()
            await asyncio.sleep(node.status_interval)

    async def on_peer(self, index: int, connected: bool) -> None:
        node = self.node
        if (
            connected
            and node.chain is not None
            and node.transport is not None
            and not node.ops.syncing
        ):
            height, head = node.chain.head()
            node.transport.send(index, Kind.STATUS, [height, head, now_ms()])
        if not connected:
            self.pruned.pop(index, None)
            self._heads.pop(index, None)
            self._clocks.pop(index, None)
            self._asked.pop(index, None)
            self._inflight.pop(index, None)

    def on_status(self, frm: int, payload: Value) -> None:
        if (
            type(payload) is not list
            or len(payload) != 3
            or type(payload[0]) is not int
            or payload[0] < 0
            or type(payload[2]) is not int
            or not 0 <= payload[2] < 2**53
        ):
            raise DecodeError("status is [height >= 0, head hash, time_ms >= 0]")
        self._heads[frm] = payload[0]
        self._clocks[frm] = (payload[2], time.monotonic())
        guard = self.node.double_sign
        if guard.holding and not guard.start_vouched:
            guard.vouch_start(self.peer_clocks(), int(time.time() * 1000), self.set_size())
        self.maybe_sync()

    def _members(self) -> set[int] | None:
        """The transport indices of the other validators of the set the node runs (None:
        before the driver has one: every peer). A removed validator's status counts for
        nothing: no bound on Byzantine members covers it (ninth review)."""
        view = getattr(self.node.driver, "view", None)
        if view is None:
            return None
        own = None if view.me is None else view.to_transport[view.me]
        return {t for t in view.to_transport if t != own}

    def set_size(self) -> int:
        """Validators in the set the node runs (genesis's before the driver has one)."""
        view = getattr(self.node.driver, "view", None)
        return int(self.node.genesis.n) if view is None else len(view.keys)

    @property
    def peer_heads(self) -> dict[int, int]:
        """The heads the set's other members last reported."""
        members = self._members()
        if members is None:
            return dict(self._heads)
        return {p: h for p, h in self._heads.items() if p in members}

    def peer_clocks(self) -> dict[int, int]:
        """Each of the set's other members' clock now, as its last status said plus the time
        since it arrived (a claim: the trip makes it low, and a liar's is anything)."""
        mono = time.monotonic()
        members = self._members()
        return {
            p: ms + int((mono - at) * 1000)
            for p, (ms, at) in self._clocks.items()
            if members is None or p in members
        }

    # --- catch-up (request / response through the transport) -----------------------------

    def maybe_sync(self) -> None:
        """Ask the most advanced peer for the blocks we miss (one request per peer at a time)."""
        node = self.node
        if (
            not node.running
            or node.chain is None
            or node.transport is None
            or not self._heads
            or node.fault is not None
            or node.ops.holds_catch_up
        ):
            return
        height, _ = node.chain.head()
        if self.stranded is not None and height >= self._stranded_at:
            self._unstrand(height)
        guard = node.double_sign
        if guard.holding and not guard.start_vouched and self.set_size() > 1:
            return  # no certificate is judged before the peers vouch for the boundary
        now = time.monotonic()

        # Peers that lately sent a body that did not apply are asked only if nobody else can.
        # One height behind is the normal state while a commit propagates; the core catches
        # that up from the next proposal. Two or more means we missed commits. A restored
        # node that holds sees no proposals (accord.node.doublesign): it fetches the last too.
        # A peer whose request is in flight is not asked again, nor waited for: a liar letting
        # its requests time out must not keep the others from being asked meanwhile.
        def ahead_of(heads: dict[int, int]) -> dict[int, int]:
            return {
                p: h
                for p, h in heads.items()
                if h > height + (0 if guard.holding or node.driver.following else 1)
                and (p not in self._inflight or now - self._inflight[p] >= REQUEST_TIMEOUT_S)
                and self.pruned.get(p, -1) <= height
            }

        # The set's members first. Only if none is ahead, any peer: a validator governance
        # added that this node has not executed the addition of yet (node.json's
        # new_validator_keys), or a removed one. Their blocks are judged like any peer's, by
        # certificates checked against the set of each height; their heads decide nothing
        # else (the restore hold reads members only).
        ahead = ahead_of(self.peer_heads) or ahead_of(self._heads)
        if not ahead:
            return
        trusted = {p: h for p, h in ahead.items() if self.distrusted.get(p, 0.0) <= now}
        if trusted:
            # Claims above the (f+1)-th highest head may all be lies: capped there, so a liar
            # claiming a far head ties with the honest peers instead of being the only one
            # asked (fifth review: serving one block per answer, it throttled catch-up for
            # ever); ties go to the peer asked least lately, in turn.
            cap = vouched(self.peer_heads, (self.set_size() - 1) // 3, highest=True)
            peer = max(
                trusted,
                key=lambda p: (
                    min(trusted[p], trusted[p] if cap is None else cap),
                    -self._asked.get(p, 0.0),
                ),
            )
        else:  # everyone ahead is distrusted: the one whose distrust ends first, in turn
            peer = min(ahead, key=lambda p: self.distrusted.get(p, 0.0))
        self._inflight[peer] = self._asked[peer] = now
        spawn(self.fetch(peer, ["height", height + 1, MAX_SYNC_BLOCKS], sync=True))

    async def fetch(self, peer: int, body: Value, *, sync: bool = False) -> None:
        """One catch-up request (by height or by hash); its answer goes to the core.

        Runs as its own task: the transport's read loops never wait on it, so two peers
        fetching from each other cannot deadlock."""
        node = self.node
        assert node.transport is not None
        before = self._height()
        try:
            answer = await node.transport.request(peer, body, timeout=REQUEST_TIMEOUT_S)
        except AccordError as e:  # not connected, timeout, busy: the next status or resend retries
            log.info("%s: catch-up request to validator %d failed: %s", node.name, peer, e)
            if sync and isinstance(e, NetError) and e.remote == Pruned.code:
                # Not a lie to punish (pruning is ordinary), but never asked for it again.
                self.pruned[peer] = before + 1
                self._inflight.pop(peer, None)
                self._check_stranded()
                return
            if sync:
                # a liar that lets every request time out was otherwise the only peer asked
                self._no_progress(peer)
                self._inflight.pop(peer, None)
            return
        try:
            fetched = self._apply(answer, peer)
        except AccordError as e:
            node.meters.bad_msgs.inc(kind="block_response")
            log.info("%s: bad catch-up answer from validator %d: %s", node.name, peer, e)
            self.distrusted[peer] = time.monotonic() + DISTRUST_S  # ask the others first
            fetched = 0
        if sync:
            if not fetched:
                self._no_progress(peer)
            else:
                # the commits run on the chain thread; judge and ask for more once they landed
                spawn(self._after_commits(peer, before))
            self._inflight.pop(peer, None)

    def _check_stranded(self) -> None:
        """Say so, once, when the blocks this node needs next are gone from every peer that
        could send them: at least f+1 members (so at least one honest) said they pruned our
        next height, and every other member claiming to be ahead said so too or is
        distrusted (a liar). Catch-up by blocks cannot proceed then; the peers that said so
        are not asked again (no spinning), the node reports unhealthy with the reason
        (``stranded``, ``accord_catch_up_stranded 1``), and the operator is told what helps
        (a newer backup, or state sync from an empty data folder). It is not a halt: a
        member that has the blocks after all (one that was down) is asked when it reports
        its head, and the first block that lands clears it. Liars cannot cause it: f of
        them saying "pruned" are not f+1."""
        node = self.node
        if self.stranded is not None:
            return
        nxt = self._height() + 1
        members = self._members()
        gone = {p for p, h in self.pruned.items() if h >= nxt and (members is None or p in members)}
        if len(gone) <= (self.set_size() - 1) // 3:
            return
        now = time.monotonic()
        serving = [
            p
            for p, h in self.peer_heads.items()
            if h >= nxt and p not in gone and self.distrusted.get(p, 0.0) <= now
        ]
        if serving:
            return
        if node.double_sign.holding:
            reason = (
                f"this restored backup (head {nxt - 1}) is older than every peer's retained "
                f"blocks: validators {sorted(gone)} pruned height {nxt}, so it cannot catch "
                "up by blocks. Restore a newer backup, or empty the data folder except "
                "restored.json and start again to state sync while still holding (see the "
                "double-sign check in docs/operations.md)"
            )
        else:
            reason = (
                f"this node's head {nxt - 1} is older than every peer's retained blocks: "
                f"validators {sorted(gone)} pruned height {nxt}, so it cannot catch up by "
                "blocks. Empty its data folder and start it again with state_sync on to take "
                "a peer's snapshot (see pruning in docs/operations.md)"
            )
        self.stranded, self._stranded_at = reason, nxt
        node.meters.stranded.set(1)
        node.meters.healthy.set(0)
        log.error("%s: cannot catch up: %s", node.name, reason)

    def _unstrand(self, height: int) -> None:
        """A block past the pruned height landed after all (a peer that had it)."""
        node = self.node
        self.stranded = None
        node.meters.stranded.set(0)
        if node.fault is None:
            node.meters.healthy.set(1)
        log.warning("%s: catching up again (at height %d)", node.name, height)

    def _no_progress(self, peer: int) -> None:
        """A request by height to ``peer`` moved our head nowhere. If it claims more than we
        hold (a liar, or it pruned them), ask the others first, or a false head would be the
        only peer asked, for ever."""
        if self._heads.get(peer, 0) > self._height():
            self.distrusted[peer] = time.monotonic() + DISTRUST_S

    def _height(self) -> int:
        chain = self.node.chain
        return chain.head()[0] if chain is not None else 0

    async def _after_commits(self, peer: int, before: int) -> None:
        node = self.node
        await node.worker.barrier()
        if self._height() > before:
            self.distrusted.pop(peer, None)  # it served: a failure before was not a lie
        else:
            self._no_progress(peer)
        self.maybe_sync()

    def _apply(self, payload: Value, peer: int) -> int:
        node = self.node
        if type(payload) is not list or len(payload) > MAX_SYNC_BLOCKS:
            raise DecodeError(f"block response is a list of at most {MAX_SYNC_BLOCKS} items")
        items: list[tuple[Block, Certificate | None]] = []
        for item in payload:  # decode everything before the core sees any of it
            if type(item) is not list or len(item) != 2:
                raise DecodeError("block response item is [block, certificate]")
            block = Block.from_obj(item[0])
            cert = None if item[1] is None else Certificate.from_obj(item[1])
            items.append((block, cert))
        for block, cert in items:
            self.remember(block)
            self.body_source[block.hash] = peer
            while len(self.body_source) > 4 * MAX_SYNC_BLOCKS:
                self.body_source.pop(next(iter(self.body_source)))
            node.driver.step(BlockFetched(block, cert))  # the core verifies the certificate
        node.meters.sync.inc(len(items))
        return len(items)

    def answer_budget(self, start: int) -> int:
        """Bytes an answer of blocks from height ``start`` is cut at: two blocks of the
        ``max_block_bytes`` in force at ``start``. Not this node's largest scheduled limit: a
        requester at ``start`` - 1 sized its frames for the limits it knows (through its head
        + 2, or later ones it has seen scheduled), and four blocks of the limit at ``start``
        fit them, where an answer cut by a larger limit scheduled later (8 -> 64 MiB) would
        not."""
        node = self.node
        chain = node.chain
        if chain is None or not governed(node.genesis):
            return 2 * node.genesis.consensus.max_block_bytes
        return 2 * chain.scheduled(start).consensus.max_block_bytes

    async def serve(self, frm: int, body: Value) -> Value:
        """Answer a peer's catch-up request: blocks with their certificates (or snapshot parts)."""
        node = self.node
        if type(body) is list and body and body[0] == "snap":
            return await node.ops.serve(body)
        if type(body) is list and body and body[0] == "sets":
            return await node.ops.serve_sets(body)
        if type(body) is not list or not body or body[0] not in ("height", "hash"):
            raise DecodeError("block request is ['height', from, count] or ['hash', hash]")
        out: list[Value] = []
        if body[0] == "hash":
            if len(body) != 2 or type(body[1]) is not bytes:
                raise DecodeError("block request by hash is ['hash', hash]")
            block = self.recent.get(body[1]) or node.store.get_block_by_hash(body[1])
            if block is not None:
                height = node.store.get_height_by_hash(block.hash)
                cert = node.store.get_certificate(height) if height is not None else None
                out.append([block.to_obj(), None if cert is None else cert.to_obj()])
            return out
        if len(body) != 3 or type(body[1]) is not int or type(body[2]) is not int or body[1] < 1:
            raise DecodeError("block request by height is ['height', from >= 1, count]")
        start, count = body[1], min(max(body[2], 0), MAX_SYNC_BLOCKS)
        if start < node.store.base():
            # said plainly ("pruned"), so a node that needs these blocks learns that no
            # asking will bring them instead of asking on (accord.node.catchup._check_stranded)
            raise Pruned(f"blocks below {node.store.base()} are pruned here")
        budget = self.answer_budget(start)
        for h in range(start, start + count):
            block = node.store.get_block(h)
            cert = node.store.get_certificate(h)
            if block is None or cert is None:
                break
            raw: list[Value] = [block.to_obj(), cert.to_obj()]
            budget -= len(encoding.encode(raw))
            if out and budget < 0:
                break
            out.append(raw)
        return out
