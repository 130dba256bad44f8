"""The mempool: signed transactions waiting for a block.

Admission checks, cheapest first, each with its own error (and no change on rejection):
size (:class:`TooLarge`), strict decoding (:class:`DecodeError`), chain id
(:class:`WrongChain`), a gas limit no block can hold (:class:`GasLimitTooHigh`), already pending (:class:`DuplicateTx`), capacity (:class:`MempoolFull`),
nonce (:class:`NonceError`: below the account's committed nonce is a replay; anything but the
next expected nonce -- committed nonce + pending count -- is a skip or a conflicting
duplicate), and finally the Ed25519 signature (:class:`InvalidSignature`).

Every pending transaction therefore has a verified signature, and each sender's pending
transactions form a gap-free run of nonces starting at its committed nonce: whatever
:meth:`Mempool.take` returns executes in order without nonce errors on the committed state.

Committed nonces are read through ``nonce_of`` once per sender and kept until a block with a
transaction of that sender commits: whoever commits blocks reports each one through
:meth:`Mempool.on_commit` (the node does, for every commit, catch-up included).

Concurrency: the mempool is meant for one asyncio event loop. No method awaits, so each runs
to completion without interleaving and no locks are needed; do not share an instance between
threads. :func:`verify_signatures` touches no mempool state and may run on any thread; its
verdicts are handed to :meth:`Mempool.add_many` on the loop.

A transaction that made validators disagree (its proposals were refused for a root mismatch
by several proposers, see :meth:`accord.ledger.chain.Chain.take_banned`) is evicted with
:meth:`Mempool.evict`: it and its sender's later nonces leave the pool, the eviction is
counted and logged, and the same transaction is refused (:class:`Evicted`) if sent again, so
it cannot keep a slot or hold its sender's queue for ever.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, KeysView

from accord.base import encoding
from accord.base.crypto import ed25519
from accord.base.errors import (
    AccordError,
    DuplicateTx,
    GasLimitTooHigh,
    InvalidSignature,
    MempoolFull,
    NonceError,
    TooLarge,
    WrongChain,
)
from accord.base.types import MAX_TX_BYTES, Tx

log = logging.getLogger(__name__)

EVICTED_KEPT = 4096
"""Evicted transaction hashes remembered (refused if sent again); oldest forgotten first."""


class Evicted(AccordError):
    """The transaction made validators disagree and was evicted; it is not taken again."""

    code = "evicted"


class Mempool:
    """Pending transactions, per sender in nonce order."""

    def __init__(
        self,
        chain_id: str,
        nonce_of: Callable[[bytes], int],
        *,
        max_txs: int = 100_000,
        max_tx_bytes: int = 64 * 1024,
        max_gas: int | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.max_gas = max_gas  # the block gas limit: a transaction asking for more never fits
        self.nonce_of = nonce_of
        self.max_txs = max_txs
        self.max_tx_bytes = min(max_tx_bytes, MAX_TX_BYTES)
        self._by_hash: dict[bytes, Tx] = {}
        # sender -> its pending transactions, consecutive nonces; dict order = arrival order of
        # each sender's oldest pending transaction, which is the round-robin order of take().
        self._queues: dict[bytes, list[Tx]] = {}
        self._sender_of: dict[bytes, bytes] = {}  # tx hash -> sender
        # sender -> committed nonce, valid until a block of that sender commits (on_commit).
        # Admission asks for it for every transaction; a state read each time cost more than
        # the rest of admission together (signature aside).
        self._nonces: dict[bytes, int] = {}
        self.rejected: dict[str, int] = {}
        """Rejections counted by error code (for metrics)."""
        self.evicted: dict[str, int] = {}
        """Pending transactions evicted, by reason (for metrics)."""
        self._evicted: OrderedDict[bytes, str] = OrderedDict()

    # --- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_hash)

    def contains(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    __contains__ = contains

    def get(self, tx_hash: bytes) -> Tx | None:
        return self._by_hash.get(tx_hash)

    @property
    def verified(self) -> KeysView[bytes]:
        """Hashes whose signatures the mempool checked (a live view: every pending tx).

        A hash fixes the whole signed transaction, so block execution may skip re-verifying
        a transaction whose hash is in here.
        """
        return self._by_hash.keys()

    def pending_count(self, sender: bytes) -> int:
        return len(self._queues.get(sender, ()))

    def next_nonce(self, sender: bytes) -> int:
        """The nonce the sender's next transaction must carry to be admitted."""
        self._prune(sender)
        q = self._queues.get(sender)
        return q[-1].nonce + 1 if q else self._committed_nonce(sender)

    def _committed_nonce(self, sender: bytes) -> int:
        n = self._nonces.get(sender)
        if n is None:
            if len(self._nonces) >= 4 * self.max_txs:
                self._nonces.clear()  # bounded: senders come and go
            n = self._nonces[sender] = self.nonce_of(sender)
        return n

    # --- admission -----------------------------------------------------------------------

    def add(self, tx: Tx | bytes) -> bytes:
        """Admit one transaction (object or wire bytes); return its hash or raise."""
        try:
            return self._add(tx)
        except Exception as e:
            code = getattr(e, "code", type(e).__name__)
            self.rejected[code] = self.rejected.get(code, 0) + 1
            raise

    def add_many(
        self,
        items: Iterable[Tx | bytes],
        signature_ok: Callable[[bytes], bool | None] | None = None,
    ) -> list[bytes | AccordError]:
        """Admit a batch in order; per item its hash or the :class:`AccordError` refusing it.

        Exactly :meth:`add` applied to each item in turn (same checks, same order, same
        errors, same counters), without one exception unwinding per refused item.
        ``signature_ok(tx_hash)`` may return a signature verdict computed earlier (e.g. on a worker
        thread by :func:`verify_signatures`): a signature is a pure function of the signed
        bytes, so the verdict is the same whenever it was computed. ``None`` means "check now".
        """
        out: list[bytes | AccordError] = []
        for item in items:
            try:
                out.append(self._add(item, signature_ok))
            except AccordError as e:
                self.rejected[e.code] = self.rejected.get(e.code, 0) + 1
                out.append(e)
        return out

    def _add(
        self, tx: Tx | bytes, signature_ok: Callable[[bytes], bool | None] | None = None
    ) -> bytes:
        if isinstance(tx, bytes | bytearray | memoryview):
            data = bytes(tx)
            if len(data) > self.max_tx_bytes:
                raise TooLarge(f"transaction of {len(data)} bytes exceeds {self.max_tx_bytes}")
            tx = Tx.from_obj(encoding.decode(data, max_size=self.max_tx_bytes))
        else:
            size = len(tx.encode())
            if size > self.max_tx_bytes:
                raise TooLarge(f"transaction of {size} bytes exceeds {self.max_tx_bytes}")
        if tx.chain_id != self.chain_id:
            raise WrongChain(f"transaction is for chain {tx.chain_id!r}, this is {self.chain_id!r}")
        if self.max_gas is not None and tx.gas_limit > self.max_gas:
            raise GasLimitTooHigh(
                f"gas limit {tx.gas_limit} is above the block gas limit {self.max_gas}"
            )
        h = tx.hash
        if h in self._evicted:
            raise Evicted(
                f"transaction {h.hex()[:16]} ({self._evicted[h]}) was evicted: validators "
                "executing it disagreed"
            )
        if h in self._by_hash:
            raise DuplicateTx(f"transaction {h.hex()[:16]} is already pending")
        if len(self._by_hash) >= self.max_txs:
            raise MempoolFull("mempool full")
        sender = tx.sender
        state_nonce = self._committed_nonce(sender)
        self._prune(sender, state_nonce)
        q = self._queues.get(sender)
        expected = q[-1].nonce + 1 if q else state_nonce
        if tx.nonce < state_nonce:
            raise NonceError(
                f"nonce {tx.nonce} was already used (the account's next is {state_nonce})"
            )
        if tx.nonce < expected:
            raise NonceError(f"nonce {tx.nonce} is already taken by a pending transaction")
        if tx.nonce > expected:
            raise NonceError(f"nonce {tx.nonce} skips ahead: the next accepted nonce is {expected}")
        ok = signature_ok(h) if signature_ok is not None else None
        if ok is None:
            tx.verify_signature()  # raises InvalidSignature
        elif not ok:
            raise InvalidSignature("Ed25519 signature does not verify")
        self._by_hash[h] = tx
        self._sender_of[h] = sender
        if q is None:
            self._queues[sender] = [tx]
        else:
            q.append(tx)
        return h

    # --- block building ------------------------------------------------------------------

    def take(self, max_txs: int, max_bytes: int) -> list[Tx]:
        """A block's worth of pending transactions (they stay pending until committed).

        Fair across senders: round-robin over senders (oldest first), one transaction per
        sender per turn, each sender's in nonce order. A sender whose next transaction does not
        fit in the remaining bytes is skipped from then on (its later nonces depend on it).
        """
        out: list[Tx] = []
        if max_txs <= 0:
            return out
        budget = max_bytes
        # Round 0 walks the queues lazily, so a small block from a pool of many senders does
        # not touch every sender; later rounds walk the senders that still have more.
        active: Iterable[tuple[list[Tx], int]] = ((q, 0) for q in self._queues.values())
        while len(out) < max_txs:
            nxt: list[tuple[list[Tx], int]] = []
            for q, i in active:
                tx = q[i]
                size = len(tx.encode())
                if size > budget:
                    continue
                budget -= size
                out.append(tx)
                if len(out) >= max_txs:
                    return out
                if i + 1 < len(q):
                    nxt.append((q, i + 1))
            if not nxt:
                break
            active = nxt
        return out

    # --- removal -------------------------------------------------------------------------

    def _drop_queue_from(self, sender: bytes, start: int) -> None:
        q = self._queues[sender]
        for tx in q[start:]:
            h = tx.hash
            self._by_hash.pop(h, None)
            self._sender_of.pop(h, None)
        del q[start:]
        if not q:
            del self._queues[sender]

    def _prune(self, sender: bytes, state_nonce: int | None = None) -> None:
        """Drop the sender's pending transactions whose nonce the chain has used."""
        q = self._queues.get(sender)
        if not q:
            return
        if state_nonce is None:
            state_nonce = self._committed_nonce(sender)
        n = 0
        while n < len(q) and q[n].nonce < state_nonce:
            n += 1
        if n:
            for tx in q[:n]:
                self._by_hash.pop(tx.hash, None)
                self._sender_of.pop(tx.hash, None)
            del q[:n]
            if not q:
                del self._queues[sender]

    def remove(self, tx_hashes: Iterable[bytes]) -> int:
        """Drop these transactions and, per sender, every later one (which could no longer
        execute: its nonce would skip). Returns how many left the pool."""
        before = len(self._by_hash)
        for h in tx_hashes:
            sender = self._sender_of.get(h)
            if sender is None:
                continue
            q = self._queues[sender]
            for i, tx in enumerate(q):
                if tx.hash == h:
                    self._drop_queue_from(sender, i)
                    break
        return before - len(self._by_hash)

    def evict(self, banned: Iterable[tuple[bytes, str]], reason: str = "disagreement") -> int:
        """Evict transactions that made validators disagree, given as ``(hash, what)`` with
        ``what`` naming the call (``"contract.method"``); every later nonce of the same
        sender goes too (it could no longer execute). Returns how many left the pool."""
        out = 0
        for h, what in banned:
            self._evicted[h] = what
            self._evicted.move_to_end(h)
            while len(self._evicted) > EVICTED_KEPT:
                self._evicted.popitem(last=False)
            n = self.remove([h])
            if n:
                out += n
                self.evicted[reason] = self.evicted.get(reason, 0) + n
                log.warning(
                    "mempool: evicted transaction %s (%s)%s: %s",
                    h.hex(),
                    what,
                    f" and {n - 1} later of its sender" if n > 1 else "",
                    reason,
                )
        return out

    def on_commit(self, txs: Iterable[Tx]) -> None:
        """A block committed: drop its transactions and any pending ones whose nonce is now used
        (for every sender in the block, against the committed nonce)."""
        # A committed block holds each sender's transactions in consecutive nonces from its
        # committed nonce on (execution refuses anything else, and a failed call still uses
        # its nonce), so the sender's last one in the block fixes the new committed nonce.
        last: dict[bytes, int] = {}
        for tx in txs:
            last[tx.public_key] = tx.nonce
        nonces = self._nonces
        if len(nonces) >= 4 * self.max_txs:
            nonces.clear()  # bounded: senders come and go
        for pk, nonce in last.items():
            sender = ed25519.address_of(pk)
            nonces[sender] = nonce + 1
            self._prune(sender, nonce + 1)


def verify_signatures(txs: Iterable[Tx]) -> dict[bytes, bool]:
    """Check the Ed25519 signatures of decoded transactions: tx hash -> verdict.

    Touches no mempool state, so it may run on a worker thread while the event loop works on
    (ed25519-zebra's check holds the GIL: the loop runs between checks, not during them);
    :meth:`Mempool.add_many` then admits the transactions
    on the loop, in order, using these verdicts instead of checking again."""
    out: dict[bytes, bool] = {}
    for tx in txs:
        try:
            tx.verify_signature()
            out[tx.hash] = True
        except AccordError:
            out[tx.hash] = False
    return out
