"""A validator's long-running chores: state sync for a new member, snapshots, pruning.

**State sync.** A validator that starts with an empty data folder (``state_sync`` in
``node.json``, on by default) asks its peers which state snapshots they hold
(:mod:`accord.storage.snapshot`), takes the highest one, and fetches its manifest from one peer
and its chunks from all of them. Nothing a peer sends is believed: the manifest must carry a
certificate of a quorum of the validator set in force at its height and recombine to that
block's state root, each chunk must rebuild to the hash its cell names. A peer that sends anything
else is counted (``accord_statesync_refused_total``), asked last, and the manifest or chunk is
asked from another peer. Only verified chunks are written, and the install becomes the ledger's
state in one final transaction; if no peer can give a verified snapshot, the half-installed
state is dropped and the node replays blocks from genesis as before. Once installed, the core
is rebuilt at the snapshot's height and ordinary catch-up fetches the blocks after it.

**The set of the snapshot's height.** The node trusts genesis only, and on a chain with the
governance contract the set may have changed since. Before it checks the manifest's
certificate it asks the same peer for checkpoints (``['sets', height, after]``): one
certified header at the last height of each set before a change, and one at the snapshot's
height, each with the governance contract's change count and the new changes proved against
its state root, each certificate checked against the set the changes before it put in force
(:func:`accord.ledger.validatorsets.check_checkpoint`). A peer whose checkpoints do not hold
(a forged set, a change hidden, a header other than the manifest's) is refused like one whose
manifest does not verify.

While the sync runs the node does not vote or propose (its core is at the old head and
would only sign for heights that are long decided), and block catch-up waits; while it finds
out whether to sync (until its first peer reports a head, or :data:`DECIDE_S`), block catch-up
and peers' consensus messages wait too, so that the core does not start fetching the chain
block by block meanwhile (a network that starts together decides at once: no peer is ahead).

**Snapshots** are built every ``snapshot_interval`` blocks on a thread of their own (one
read transaction: commits go on), and the last ``snapshot_keep`` are kept in
``<data>/snapshots``. **Pruning** (``prune_keep``) runs on the chain thread after commits,
every :data:`PRUNE_EVERY` blocks.

This module reaches the ledger only through the
:class:`~accord.ledger.application.Application` protocol (``export_snapshot``,
``import_snapshot``, ``recommit_genesis``, ``prune``, ``base``): any application that
exports and imports :mod:`accord.storage.snapshot`'s format can be synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.base.encoding import Value
from accord.base.errors import AccordError, DecodeError
from accord.base.types import Certificate
from accord.ledger.validatorsets import (
    Checkpoint,
    SetProofInvalid,
    ValidatorSets,
    check_checkpoint,
)
from accord.node.driver import spawn
from accord.node.sets import checkpoints, verify_with

if TYPE_CHECKING:
    from accord.node.node import Node
    from accord.storage.snapshot import Cell, Chunk, Manifest

log = logging.getLogger("accord.statesync")

PRUNE_EVERY = 16
"""Blocks between two pruning passes (each removes what the last ``PRUNE_EVERY`` left behind)."""
CHUNKS_IN_FLIGHT = 4
"""Chunk requests a syncing node keeps open at once (memory: this many chunks)."""
DECIDE_S = 10.0
"""How long a fresh node waits for a peer's head before it gives up on state sync."""
REQUEST_TIMEOUT_S = 30.0
MAX_OFFERS = 8


class _Stopping(Exception):
    pass


class NodeOps:
    """State sync, snapshot building and pruning for one :class:`~accord.node.Node`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.dir: Path = node.home / node.config.data_dir / "snapshots"
        self.deciding = False
        """Block catch-up waits: a fresh node is finding out whether a snapshot is offered."""
        self.syncing = False
        """A snapshot is being installed: the core is idle and the store has no head."""
        self.synced_height: int | None = None
        self.refused: list[tuple[int, str, str]] = []
        """(peer, what, why) of each manifest or chunk refused (bounded; for operators and tests)."""
        self._bad: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._builder: threading.Thread | None = None
        self._stopping = False
        m = node.metrics
        self.m_refused = m.counter(
            "accord_statesync_refused_total",
            "snapshot manifests and chunks from peers refused (they did not verify)",
            ["what"],
        )
        self.m_chunks = m.counter(
            "accord_statesync_chunks_total", "verified snapshot chunks installed"
        )
        self.m_built = m.counter(
            "accord_snapshots_built_total", "state snapshots built for joining nodes"
        )
        self.m_base = m.gauge(
            "accord_store_base_height", "lowest height whose block and state this node keeps"
        )

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        node = self.node
        assert node.chain is not None
        self._stopping = False
        self.m_base.set(node.chain.base())
        if node.config.state_sync and node.chain.head()[0] == 0:
            self.deciding = True
            self._task = asyncio.create_task(self._run(), name=f"{node.name}-statesync")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        builder = self._builder
        if builder is not None:
            await asyncio.to_thread(builder.join)
            self._builder = None

    @property
    def holds_catch_up(self) -> bool:
        return self.deciding or self.syncing

    # --- after each commit --------------------------------------------------------------

    def after_commit(self, height: int) -> None:
        config = self.node.config
        if (
            config.snapshot_interval
            and height % config.snapshot_interval == 0
            and self._builder is None
        ):
            self._builder = threading.Thread(
                target=self._build, name=f"snapshot-{self.node.name}", daemon=True
            )
            self._builder.start()
        if config.prune_keep and height % PRUNE_EVERY == 0:
            spawn(self._prune(config.prune_keep))

    async def _prune(self, keep: int) -> None:
        chain = self.node.chain
        assert chain is not None
        try:
            base = await self.node.worker.run(lambda: chain.prune(keep), "prune")
        except AccordError as e:
            log.error("%s: pruning failed: %s", self.node.name, e)
            return
        self.m_base.set(base)

    def _build(self) -> None:
        from accord.storage import snapshot

        chain = self.node.chain
        assert chain is not None

        def progress(done: int, total: int) -> None:
            if self._stopping:
                raise _Stopping

        t0 = time.monotonic()
        try:
            manifest = chain.export_snapshot(self.dir, progress=progress)
            snapshot.keep_latest(self.dir, self.node.config.snapshot_keep)
            self.m_built.inc()
            log.info(
                "%s: state snapshot of height %d built (%d entries, %d chunks) in %.1f s",
                self.node.name,
                manifest.height,
                manifest.entries,
                len(manifest.cells),
                time.monotonic() - t0,
            )
        except _Stopping:
            pass
        except Exception as e:  # a snapshot is a service to others: never take the node down
            log.error("%s: building a state snapshot failed: %s", self.node.name, e)
        finally:
            self._builder = None

    # --- serving ------------------------------------------------------------------------

    async def serve(self, body: list[Value]) -> Value:
        """``['snap', 'list']``, ``['snap', 'manifest', height]``, ``['snap', 'chunk', height, i]``."""
        from accord.storage import snapshot

        if len(body) == 2 and body[1] == "list":
            offered: list[Value] = list(snapshot.available(self.dir)[:MAX_OFFERS])
            return offered
        if len(body) == 3 and body[1] == "manifest" and type(body[2]) is int:
            return await asyncio.to_thread(snapshot.read_manifest, self.dir, body[2])
        if len(body) == 4 and body[1] == "chunk" and type(body[2]) is int and type(body[3]) is int:
            return await asyncio.to_thread(snapshot.read_chunk, self.dir, body[2], body[3])
        raise DecodeError(
            "snapshot request is ['snap', 'list' | 'manifest', height | 'chunk', height, index]"
        )

    async def serve_sets(self, body: list[Value]) -> Value:
        """``['sets', target, after]``: checkpoints proving the set of ``target`` (see the
        module docstring), from this node's certified headers."""
        node = self.node
        if len(body) != 3 or type(body[1]) is not int or type(body[2]) is not int:
            raise DecodeError("a set proof request is ['sets', target, after]")
        chain, store, target, after = node.chain, node.store, body[1], body[2]
        if chain is None or store is None:
            return []
        out = await node.worker.run(lambda: checkpoints(chain, store, target, after), "sets")
        return [cp.to_obj() for cp in out]

    # --- syncing ------------------------------------------------------------------------

    def _refuse(self, peer: int, what: str, error: AccordError | str) -> None:
        why = error if isinstance(error, str) else f"{error.code}: {error.message}"
        self.m_refused.inc(what=what)
        self._bad.add(peer)
        if len(self.refused) < 1000:
            self.refused.append((peer, what, why))
        log.warning(
            "%s: state sync: refused the %s from validator %d: %s", self.node.name, what, peer, why
        )

    def _order(self, peers: list[int]) -> list[int]:
        """Peers that have not lied first (a liar is asked again only if nobody else answers)."""
        return sorted(peers, key=lambda p: p in self._bad)  # stable: the given order otherwise

    async def _run(self) -> None:
        node = self.node
        try:
            end = time.monotonic() + DECIDE_S
            while not node.catchup.peer_heads and time.monotonic() < end:
                await asyncio.sleep(0.1)
            assert node.chain is not None and node.transport is not None
            own = node.chain.head()[0]
            if max(node.catchup.peer_heads.values(), default=0) <= own + 1:
                return  # the network is starting too (or no peer answered): nothing to sync
            # Then give the other peers a moment to report too: one peer alone may be a liar,
            # and a peer left out is one fewer source to fall back on. A loaded machine takes
            # seconds to finish every handshake, so the moment is several status rounds.
            others = len(node.roster.keys) - 1
            end = min(end, time.monotonic() + 5 * node.status_interval)
            while len(node.catchup.peer_heads) < others and time.monotonic() < end:
                await asyncio.sleep(0.1)
            if len(node.catchup.peer_heads) < others:
                log.info(
                    "%s: state sync: deciding with %d of %d peers reporting (%s)",
                    node.name,
                    len(node.catchup.peer_heads),
                    others,
                    sorted(node.catchup.peer_heads),
                )
            offers: dict[int, list[int]] = {}
            for peer, head in sorted(node.catchup.peer_heads.items()):
                if head <= own + 1:
                    continue
                try:
                    heights = await node.transport.request(peer, ["snap", "list"], timeout=5.0)
                except AccordError as e:
                    log.info(
                        "%s: state sync: validator %d lists no snapshots: %s", node.name, peer, e
                    )
                    continue
                if (
                    type(heights) is not list
                    or len(heights) > MAX_OFFERS
                    or any(type(h) is not int for h in heights)
                ):
                    self._refuse(peer, "list", "not a list of heights")
                    continue
                for h in heights:
                    if isinstance(h, int) and h > own + 1:
                        offers.setdefault(h, []).append(peer)
            for height in sorted(offers, reverse=True):
                if await self._sync_to(height, offers[height]):
                    return
            if offers:
                log.warning(
                    "%s: state sync found no verifiable snapshot; replaying blocks instead",
                    node.name,
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # never leave the node waiting: fall back to replay
            log.exception("%s: state sync failed; replaying blocks instead", node.name)
        finally:
            self.deciding = False
            self.syncing = False
            if node.running:
                node.catchup.maybe_sync()

    async def _manifest(self, height: int, peers: list[int]) -> tuple[Manifest, list[int]] | None:
        from accord.storage.snapshot import Manifest, SnapshotInvalid, verify_manifest

        node = self.node
        assert node.transport is not None
        for peer in self._order(peers):
            try:
                raw = await node.transport.request(
                    peer, ["snap", "manifest", height], timeout=REQUEST_TIMEOUT_S
                )
            except AccordError as e:
                log.info("%s: state sync: no manifest from validator %d: %s", node.name, peer, e)
                continue
            if raw is None:  # it dropped that snapshot since it listed it (it keeps a few)
                log.info("%s: state sync: validator %d no longer holds %d", node.name, peer, height)
                continue
            if type(raw) is not bytes:
                self._refuse(peer, "manifest", "not a manifest")
                continue
            try:
                manifest = Manifest.decode(raw)
                if manifest.height != height:
                    raise SnapshotInvalid(
                        f"manifest of height {manifest.height}, asked for {height}"
                    )
            except SnapshotInvalid as e:
                self._refuse(peer, "manifest", e)
                continue
            try:
                keys = await self._set_of(peer, manifest.block.hash, height)
            except (SetProofInvalid, DecodeError) as e:
                self._refuse(peer, "sets", e)
                continue
            except AccordError as e:
                log.info("%s: state sync: no set proof from validator %d: %s", node.name, peer, e)
                continue

            def check(cert: Certificate, keys: list[bytes] = keys) -> None:
                verify_with(node.genesis.chain_id)(keys, cert)

            try:
                await asyncio.to_thread(verify_manifest, manifest, check)
            except SnapshotInvalid as e:
                self._refuse(peer, "manifest", e)
                continue
            return manifest, peers
        return None

    async def _set_of(self, peer: int, block_hash: bytes, height: int) -> list[bytes]:
        """The validator set in force at ``height``, proved by ``peer``'s checkpoints from
        genesis (SetProofInvalid if they do not hold, or end at another block than
        ``block_hash``: the manifest's)."""
        node = self.node
        assert node.transport is not None
        sets = ValidatorSets(node.genesis)
        if not sets.governed:
            return sets.genesis_keys
        verify = verify_with(node.genesis.chain_id)
        after, last = 0, None
        while after < height:
            raw = await node.transport.request(
                peer, ["sets", height, after], timeout=REQUEST_TIMEOUT_S
            )
            if type(raw) is not list or not raw:
                raise SetProofInvalid(f"no checkpoints after height {after}")
            for obj in raw:
                cp = Checkpoint.from_obj(obj)
                if cp.header.height > height:
                    raise SetProofInvalid(f"a checkpoint at {cp.header.height}, beyond {height}")
                await asyncio.to_thread(
                    check_checkpoint, sets, node.genesis.chain_id, after, cp, verify
                )
                after, last = cp.header.height, cp
        assert last is not None
        if last.header.hash != block_hash:
            raise SetProofInvalid(f"the certified header at {height} is not the manifest's block")
        return sets.in_force(height)

    async def _sync_to(self, height: int, peers: list[int]) -> bool:
        node = self.node
        chain = node.chain
        assert chain is not None
        got = await self._manifest(height, peers)
        if got is None:
            return False
        manifest, peers = got
        log.info(
            "%s: state sync: installing the snapshot of height %d (%d entries, %d chunks) from %d peers",
            node.name,
            height,
            manifest.entries,
            len(manifest.cells),
            len(peers),
        )
        t0 = time.monotonic()
        self.syncing = True
        installer = chain.import_snapshot(manifest)
        await node.worker.run(installer.begin, "statesync")
        bar = _Bar(manifest.entries, f"state sync to height {height}")
        try:
            pending = list(range(len(manifest.cells)))[::-1]

            async def worker(slot: int) -> None:
                while pending:
                    i = pending.pop()
                    chunk = await self._chunk(height, i, manifest.cells[i], peers, slot)
                    await node.worker.run(functools.partial(installer.add, i, chunk), "statesync")
                    self.m_chunks.inc()
                    bar.advance(manifest.cells[i].count)

            workers = [
                asyncio.ensure_future(worker(s))
                for s in range(min(CHUNKS_IN_FLIGHT, len(pending)) or 1)
            ]
            try:
                await asyncio.gather(*workers)
            except BaseException:  # one failed: stop the others before the install is dropped
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            await node.worker.run(installer.finish, "statesync")
        except BaseException as e:
            bar.close()
            await node.worker.run(installer.abort, "statesync")
            await node.worker.run(chain.recommit_genesis, "statesync")
            if isinstance(e, _NoPeer):
                log.warning("%s: state sync to height %d abandoned: %s", node.name, height, e)
                return False
            raise
        bar.close()
        self.synced_height = height
        log.info(
            "%s: state sync: at height %d after %.1f s; following the chain from there",
            node.name,
            height,
            time.monotonic() - t0,
        )
        node.driver.restart()
        self.m_base.set(height)
        return True

    async def _chunk(
        self, height: int, index: int, cell: Cell, peers: list[int], slot: int
    ) -> Chunk:
        """Chunk ``index``, verified, from the first peer (honest ones first) that has it right."""
        from accord.storage.snapshot import SnapshotInvalid, verify_chunk

        node = self.node
        assert node.transport is not None
        start = (index + slot) % len(peers)  # spread the chunks over the peers
        for peer in self._order(peers[start:] + peers[:start]):
            try:
                raw = await node.transport.request(
                    peer, ["snap", "chunk", height, index], timeout=REQUEST_TIMEOUT_S
                )
            except AccordError as e:
                log.info(
                    "%s: state sync: chunk %d not from validator %d: %s", node.name, index, peer, e
                )
                continue
            if raw is None:  # it dropped that snapshot since it listed it
                log.info("%s: state sync: validator %d no longer holds %d", node.name, peer, height)
                continue
            if type(raw) is not bytes:
                self._refuse(peer, "chunk", "not a chunk")
                continue
            try:
                return await asyncio.to_thread(verify_chunk, cell, raw, height)
            except SnapshotInvalid as e:
                self._refuse(peer, "chunk", e)
        raise _NoPeer(f"no peer sent a verifiable chunk {index}")


class _NoPeer(AccordError):
    code = "statesync_no_peer"


class _Bar:
    """A rich progress bar on stderr when it is a terminal (a service's log stays clean)."""

    def __init__(self, total: int, what: str) -> None:
        self._progress: Any = None
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._progress = Progress(transient=True)
            self._progress.start()
            self._id = self._progress.add_task(what, total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
