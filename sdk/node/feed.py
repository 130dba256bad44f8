"""The block feed: committed blocks and their receipts, in order, for an embedding application.

Rules this module keeps:

* **No gap, no repeat.** :meth:`BlockFeed.blocks` yields every committed height once, in
  order: a subscription is registered before the store is read, and blocks a slow consumer's
  bounded queue dropped are read back from the store.
* **Bounded.** Each subscription holds at most ``maxsize`` blocks; a consumer that falls
  further behind costs store reads, not memory.
* Published on the event loop's thread (the node publishes right after a commit lands).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from accord.base.types import Block, Event, Receipt


class Subscription:
    """Committed blocks with receipts, in order, for one subscriber.

    Registered when created (so nothing committed after ``subscribe()`` returns is missed).
    The queue is bounded: a subscriber that falls ``maxsize`` blocks behind loses the oldest
    ones (it can read them back from the store; the API's stream does exactly that).
    """

    def __init__(self, feed: BlockFeed, maxsize: int = 256) -> None:
        self._feed = feed
        self._q: asyncio.Queue[tuple[Block, list[Receipt]] | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        feed._subscribers.add(self)

    def _put(self, item: tuple[Block, list[Receipt]] | None) -> None:
        while True:
            try:
                self._q.put_nowait(item)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._q.get_nowait()
                    self.dropped += 1

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[Block, list[Receipt]]:
        item = await self._q.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._feed._subscribers.discard(self)
        self._put(None)


class BlockFeed:
    """Fan-out of committed blocks to subscribers, backed by the store for what they missed.

    ``store`` returns the node's store (None while it is closed)."""

    def __init__(self, store: Callable[[], Any]) -> None:
        self._store = store
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[Block, list[Receipt]], None]] = []

    def subscribe(self) -> Subscription:
        return Subscription(self)

    def listen(self, fn: Callable[[Block, list[Receipt]], None]) -> Callable[[], None]:
        """Call ``fn(block, receipts)`` at each commit, on the loop, before subscribers are
        woken; for in-process consumers that keep only what they need (the explorer index
        keeps the newest few blocks), unlike a subscription's queue. Returns the function
        that stops it. ``fn`` must be quick and must not raise."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def publish(self, block: Block, receipts: list[Receipt]) -> None:
        for fn in list(self._listeners):
            fn(block, receipts)
        for sub in list(self._subscribers):
            sub._put((block, receipts))

    async def close(self) -> None:
        """End every subscription (their iterators stop)."""
        for sub in list(self._subscribers):
            await sub.aclose()

    async def blocks(
        self, from_height: int | None = None
    ) -> AsyncIterator[tuple[Block, list[Receipt]]]:
        """Committed blocks with their receipts, in height order, as they commit.

        With ``from_height``, first the blocks already committed from that height on (read
        from the store), then the new ones: an embedded application that was down resumes
        at the height after the last one it processed and misses nothing. Blocks a slow
        consumer dropped from its subscription queue are read back from the store too, so
        the sequence has no gaps and no repeats.
        """
        sub = self.subscribe()  # registered first: nothing committed from here on is missed
        try:
            nxt = from_height
            if nxt is not None:
                async for item in self._stored(nxt, None):
                    yield item
                    nxt += 1
            async for block, receipts in sub:
                if nxt is None:
                    nxt = block.height
                if block.height < nxt:
                    continue  # read from the store already
                async for item in self._stored(nxt, block.height):  # ones the queue dropped
                    yield item
                    nxt += 1
                if block.height == nxt:
                    yield block, receipts
                    nxt += 1
        finally:
            await sub.aclose()

    async def _stored(
        self, start: int, stop: int | None
    ) -> AsyncIterator[tuple[Block, list[Receipt]]]:
        """Committed blocks ``start <= height < stop`` (None: up to the head) from the store;
        :class:`~accord.storage.store.Pruned` for a start below what the store keeps (a
        silent gap would lose blocks for the application)."""
        store = self._store()
        if store is not None:
            store.require_height(start)
        height = start
        while stop is None or height < stop:
            store = self._store()
            block = store.get_block(height) if store is not None else None
            if block is None:
                return
            yield block, store.get_receipts(height)
            height += 1

    async def events(self, contract: str | None = None) -> AsyncIterator[tuple[int, bytes, Event]]:
        """Contract events of successful transactions as they commit: (height, tx hash, event)."""
        async for block, receipts in self.blocks():
            for tx, r in zip(block.txs, receipts, strict=True):
                if not r.ok:
                    continue
                for ev in r.events:
                    if contract is None or ev.contract == contract:
                        yield block.height, tx.hash, ev
