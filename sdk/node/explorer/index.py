"""The explorer's index: who did what, kept in the node's LMDB store beside the chain.

It lives in the store's ``explorer`` side database, so it survives restarts, is copied by
backups with the chain, and goes with the blocks when the node prunes (a prune hook runs in the
prune's own transaction). It is derived data: nothing in consensus reads it, and any of it can
be rebuilt from the blocks the store still holds.

Layout (heights 8 bytes, indexes 4 and event positions 2, all big-endian so keys sort by age):

==================================  ===============================================================
``m/state``                          next height to index, hash of the block below it, lowest
                                     indexed height, counters (nullifiers, oracle and pool records)
``t`` subject height index           one transaction of an account or contract (a :class:`TxRef`)
``n`` subject                        how many ``t`` records the subject has (at most ``per_subject``)
``h`` height                         every key written for that height (what pruning it deletes)
``o`` height index event             an MPC oracle request and its status
``i`` request id                     the ``o`` key of that request (to record its answer)
``s`` height index event             a shielded-pool transfer's public inputs
==================================  ===============================================================

A subject is a kind byte (``a`` account, ``c`` contract), a length byte and its bytes.

Invariants:

* Blocks are indexed in height order, each pass from ``next``; the entries of a batch of
  blocks and the new ``next`` are one write transaction, so a crash leaves the index either
  before or after the whole batch: after a restart it resumes at ``next`` with no gap and no
  duplicate. A batch only goes in if ``next`` is still what it was read from (one writer wins).
* A subject keeps its newest ``per_subject`` records; older ones are deleted in the write that
  adds the new ones. Oracle requests and pool transfers are bounded the same way in total.
* Every record is sealed with a hash of its key and value. A record that fails it (flipped
  byte, truncation) is never served: a transaction record is re-derived from its block, served
  from there and rewritten; a damaged state or oracle record makes the next pass rebuild the
  index from the blocks (in bounded passes, like a first start).
* Reads are one read transaction each and walk a cursor backwards from a (height, index)
  cursor: a page costs its length, never the whole subject.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import lmdb

from accord.base import encoding
from accord.base import wire as s
from accord.base.errors import AccordError
from accord.base.metrics import Registry
from accord.base.types import Block, Receipt
from accord.storage.store import SideTxn, Store

log = logging.getLogger(__name__)

SIDE = "explorer"

_STATE = b"m/state"
_TX = b"t"
_COUNT = b"n"
_HEIGHT = b"h"
_ORACLE = b"o"
_ORACLE_ID = b"i"
_SHIELD = b"s"
_SEAL = 16
_WRITE_BATCH = 50
OFFERED_BLOCKS = 8
"""Committed blocks an index keeps in memory for its next pass (:meth:`ExplorerIndex.offer`):
passes run every quarter second, so a few blocks cover any commit rate; bounded because a
block can hold thousands of transactions."""
"""Blocks per write transaction: short, because it holds the store's writer lock that block
commits also need."""

_pos = struct.Struct(">QI")
_epos = struct.Struct(">QIH")


@dataclass
class IndexLimits:
    backfill_blocks: int | None = None
    """Blocks below the head indexed when the index is first built (None: all the store holds)."""
    per_subject: int = 100
    """Transactions kept per account or contract (the newest)."""
    oracle_requests: int = 1000
    shielded_recent: int = 200
    per_pass: int = 500
    """Blocks indexed per pass, so a long catch-up yields between passes."""


@dataclass
class _State:
    next: int
    last_hash: bytes
    first: int
    nullifiers: int = 0
    oracle_n: int = 0
    shielded_n: int = 0

    def encode(self) -> bytes:
        return encoding.encode(
            [
                self.next,
                self.last_hash,
                self.first,
                self.nullifiers,
                self.oracle_n,
                self.shielded_n,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> _State:
        v = encoding.decode(raw)
        if not (
            type(v) is list
            and len(v) == 6
            and all(type(x) is int and x >= 0 for i, x in enumerate(v) if i != 1)
            and type(v[1]) is bytes
        ):
            raise ValueError("not an index state record")
        return cls(v[0], v[1], v[2], v[3], v[4], v[5])


def _seal(key: bytes, payload: bytes) -> bytes:
    return _digest(key, payload) + payload


def _digest(key: bytes, payload: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=_SEAL)
    h.update(len(key).to_bytes(2, "big"))
    h.update(key)
    h.update(payload)
    return h.digest()


def _unseal(key: bytes, record: bytes | None) -> bytes | None:
    """The payload of an intact record; None for a damaged one (or none)."""
    if record is None or len(record) < _SEAL:
        return None
    payload = record[_SEAL:]
    return payload if _digest(key, payload) == record[:_SEAL] else None


def subject_key(subject: str) -> bytes:
    """``a:<40 hex>`` or ``c:<contract name>`` as the index spells it."""
    kind, _, name = subject.partition(":")
    raw = bytes.fromhex(name) if kind == "a" else name.encode()
    if kind not in ("a", "c") or not 0 < len(raw) < 256:
        raise ValueError(f"not an index subject: {subject[:80]!r}")
    return kind.encode() + bytes([len(raw)]) + raw


def _subject_of_tx_key(key: bytes) -> bytes:
    return key[1 : 3 + key[2]]


@dataclass
class _Derived:
    """What one block adds to the index."""

    txs: list[tuple[bytes, int, bytes, set[bytes]]] = field(default_factory=list)
    """(tx record payload, index in block, tx hash, subjects)"""
    oracle: list[tuple[str, int, int, dict[str, Any]]] = field(default_factory=list)
    """("request" | "answer", tx index, event position, event data)"""
    shielded: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    nullifiers: int = 0


def _ref_payload(tx: Any, r: Receipt) -> bytes:
    return encoding.encode(
        [tx.hash, tx.contract, tx.method, tx.sender, bool(r.ok), int(r.gas_used)]
    )


def _ref(height: int, index: int, payload: bytes) -> s.TxRef:
    h, contract, method, sender, ok, gas = encoding.decode(payload)
    return s.TxRef(
        tx_hash=h.hex(),
        height=height,
        index=index,
        contract=contract,
        method=method,
        sender=sender.hex(),
        ok=ok,
        gas_used=gas,
    )


def _subjects(tx: Any, r: Receipt) -> set[bytes]:
    """An account's transactions are those it signed and those whose events name it."""
    out = set()
    for kind, raw in [(b"a", tx.sender), (b"c", tx.contract.encode())] + [
        (b"c", e.contract.encode()) for e in r.events
    ]:
        if 0 < len(raw) < 256:
            out.add(kind + bytes([len(raw)]) + raw)
    for e in r.events:
        for v in e.data.values():
            if type(v) is bytes and len(v) == 20:
                out.add(b"a\x14" + v)
    return out


def derive(block: Block, receipts: list[Receipt]) -> _Derived:
    """The index entries of one block: a pure function of the block and its receipts."""
    d = _Derived()
    for i, (tx, r) in enumerate(zip(block.txs, receipts, strict=False)):
        d.txs.append((_ref_payload(tx, r), i, tx.hash, _subjects(tx, r)))
        for j, e in enumerate(r.events[:65535]):
            data = e.data
            if e.contract == "mpc_oracle" and e.name == "OracleRequest":
                if type(data.get("id")) is bytes:
                    d.oracle.append(("request", i, j, data))
            elif e.contract == "mpc_oracle" and e.name == "OracleAnswered":
                if type(data.get("id")) is bytes:
                    d.oracle.append(("answer", i, j, data))
            elif e.contract == "shielded_pool" and e.name == "Transfer":
                rec = _shielded_record(block.height, tx.hash, data)
                d.nullifiers += len(rec["nullifiers"])
                d.shielded.append((i, j, rec))
    return d


def _shielded_record(height: int, tx_hash: bytes, data: dict[str, Any]) -> dict[str, Any]:
    def num(name: str) -> int:
        v = data.get(name, 0)
        return v if type(v) is int else 0

    return {
        "height": height,
        "tx_hash": tx_hash.hex(),
        "nullifiers": [x.hex() for x in data.get("nullifiers", []) if type(x) is bytes],
        "commitments": [x.hex() for x in data.get("commitments", []) if type(x) is bytes],
        "root": data["root"].hex() if type(data.get("root")) is bytes else "",
        "deposit": num("deposit"),
        "withdrawal": num("withdrawal"),
    }


class ExplorerIndex:
    """The persistent index of one store (see the module docstring). Passes
    (:meth:`catch_up`) run in a worker thread, reads on any thread."""

    def __init__(
        self, store: Store, limits: IndexLimits | None = None, registry: Registry | None = None
    ) -> None:
        self.store = store
        self.limits = limits or IndexLimits()
        self._lock = threading.Lock()
        self._repairs: set[bytes] = set()
        self._rebuild = False
        # Blocks the node has just committed, offered in memory (:meth:`offer`) so that a
        # pass need not read and decode them back from the store: by height, bounded.
        self._offered: dict[int, tuple[Block, list[Receipt]]] = {}
        reg = registry or Registry()
        self.m_damaged = reg.counter(
            "accord_explorer_index_damaged_total",
            "explorer index records that failed their seal (re-derived, never served)",
        )
        self.m_rebuilds = reg.counter(
            "accord_explorer_index_rebuilds_total", "explorer index rebuilt from the blocks"
        )
        self.m_height = reg.gauge("accord_explorer_indexed_height", "last height indexed")
        store.add_prune_hook(SIDE, self._prune_hook)

    def close(self) -> None:
        self.store.remove_prune_hook(self._prune_hook)

    # --- state -----------------------------------------------------------------------

    def _state(self, t: SideTxn) -> _State | None:
        raw = t.get(_STATE)
        if raw is None:
            return None
        payload = _unseal(_STATE, raw)
        try:
            if payload is None:
                raise ValueError("seal")
            return _State.decode(payload)
        except (ValueError, AccordError):
            self._damaged(_STATE, rebuild=True)
            return None

    def _put_state(self, t: SideTxn, st: _State) -> None:
        t.put(_STATE, _seal(_STATE, st.encode()))

    def _damaged(self, key: bytes, *, rebuild: bool = False) -> None:
        self.m_damaged.inc()
        log.warning(
            "explorer index record %s is damaged: %s",
            key[:24].hex(),
            "rebuilding the index from the blocks" if rebuild else "re-deriving it from its block",
        )
        with self._lock:
            if rebuild:
                self._rebuild = True
            else:
                self._repairs.add(key)

    def coverage(self) -> tuple[int, int]:
        """(indexed_from, indexed_to): the heights the index covers (-1: nothing yet)."""
        return self.store.read_side(SIDE, self._coverage_in)

    def _coverage_in(self, t: SideTxn) -> tuple[int, int]:
        st = self._state(t)
        if st is None:
            return 0, -1
        return max(st.first, t.base()), st.next - 1

    @property
    def indexed_from(self) -> int:
        return self.coverage()[0]

    @property
    def indexed_to(self) -> int:
        return self.coverage()[1]

    @property
    def nullifiers_seen(self) -> int:
        st = self.store.read_side(SIDE, self._state)
        return 0 if st is None else st.nullifiers

    # --- passes ----------------------------------------------------------------------

    def catch_up(self) -> int:
        """One bounded pass: repairs, pruning left behind, then at most ``per_pass`` blocks
        from ``next``; returns how many blocks it indexed."""
        head = self.store.head()
        if head is None:
            return 0
        st = self.store.read_side(SIDE, self._state)
        with self._lock:
            rebuild, self._rebuild = self._rebuild, False
            repairs, self._repairs = self._repairs, set()
        if st is None or rebuild:
            st = self.store.write_side(SIDE, lambda t: self._reset(t, head[0]))
        elif st.next - 1 >= self.store.base() and st.last_hash:
            header = self.store.get_header(st.next - 1)
            if header is None or header.hash != st.last_hash:  # another chain in this folder
                log.warning("explorer index: the chain below it changed; rebuilding")
                st = self.store.write_side(SIDE, lambda t: self._reset(t, head[0]))
        if repairs:
            self.store.write_side(SIDE, lambda t: self._repair(t, repairs))
        base = self.store.base()
        if st.first < base:  # pruned while no hook was installed (another process)
            stop = min(base, st.first + self.limits.per_pass)
            self.store.write_side(SIDE, lambda t: self._prune_range(t, stop))
        done = 0
        nxt = max(st.next, base)
        while done < self.limits.per_pass and nxt <= head[0]:
            n = min(_WRITE_BATCH, self.limits.per_pass - done, head[0] - nxt + 1)
            batch = self._blocks(nxt, n)
            if not batch:
                break
            wrote = self.store.write_side(
                SIDE, functools.partial(self._write, first=nxt, batch=batch)
            )
            if wrote == 0:
                break
            done += wrote
            nxt += wrote
        if done:
            self.m_height.set(nxt - 1)
        return done

    def offer(self, block: Block, receipts: list[Receipt]) -> None:
        """A block this store has just committed, with its receipts: the next pass indexes it
        from these objects instead of reading and decoding it again (about half of what
        indexing a block costs). Only the newest :data:`OFFERED_BLOCKS` are kept; a pass
        takes an offered block only if the store's header at its height has its hash, so an
        offer can make a pass cheaper, never different."""
        with self._lock:
            self._offered[block.height] = (block, receipts)
            if len(self._offered) > OFFERED_BLOCKS:
                del self._offered[min(self._offered)]

    def _blocks(
        self, start: int, count: int
    ) -> list[tuple[int, bytes, Block | None, list[Receipt]]]:
        """:meth:`Store.get_blocks`'s answer for ``start`` .. ``start + count - 1``, from the
        offered blocks while they run consecutively and match the store, then from the store."""
        with self._lock:
            for h in [h for h in self._offered if h < start]:
                del self._offered[h]
            offered = [self._offered.pop(h, None) for h in range(start, start + count)]
        out: list[tuple[int, bytes, Block | None, list[Receipt]]] = []
        for got in offered:
            h = start + len(out)
            if got is None:
                break
            block, receipts = got
            header = self.store.get_header(h)
            if header is None or header.hash != block.hash:
                break  # not this store's block (a snapshot install, another chain): read it
            out.append((h, block.hash, block if block.txs else None, receipts if block.txs else []))
        if len(out) < count:
            out += self.store.get_blocks(start + len(out), count - len(out))
        return out

    def _start(self, t: SideTxn, head: int) -> int:
        start = max(1, t.base())
        if self.limits.backfill_blocks is not None:
            start = max(start, head - self.limits.backfill_blocks + 1)
        return start

    def _reset(self, t: SideTxn, head: int) -> _State:
        had = t.get(_STATE) is not None
        t.clear()
        start = self._start(t, head)
        st = _State(next=start, last_hash=b"", first=start)
        self._put_state(t, st)
        if had:
            self.m_rebuilds.inc()
        return st

    def _write(
        self, t: SideTxn, *, first: int, batch: list[tuple[int, bytes, Block | None, list[Receipt]]]
    ) -> int:
        st = self._state(t)
        if st is None or max(st.next, t.base()) != first:
            return 0  # another pass (or a rebuild, or a prune) moved the index meanwhile
        if t.header_hash(batch[-1][0]) != batch[-1][1]:
            return 0  # the chain was replaced since the batch was read (a snapshot install)
        base = t.base()
        added: dict[bytes, int] = {}
        for h, block_hash, block, receipts in batch:
            if block is not None and h >= base:
                self._add_block(t, st, block, receipts, added)
            st.next, st.last_hash = h + 1, block_hash
        for subj, n in added.items():
            self._bound_subject(t, subj, n)
        st.oracle_n = self._bound(t, _ORACLE, st.oracle_n, self.limits.oracle_requests)
        st.shielded_n = self._bound(t, _SHIELD, st.shielded_n, self.limits.shielded_recent)
        self._put_state(t, st)
        return len(batch)

    def _add_block(
        self,
        t: SideTxn,
        st: _State,
        block: Block,
        receipts: list[Receipt],
        added: dict[bytes, int],
    ) -> None:
        h = block.height
        d = derive(block, receipts)
        keys: list[bytes] = []
        for payload, i, _, subjects in d.txs:
            for subj in sorted(subjects):  # one order in every process: records compare
                key = _TX + subj + _pos.pack(h, i)
                t.put(key, _seal(key, payload))
                keys.append(key)
                added[subj] = added.get(subj, 0) + 1
        for kind, i, j, data in d.oracle:
            if kind == "request":
                key = _ORACLE + _epos.pack(h, i, j)
                rec = {
                    "id": data["id"].hex(),
                    "program": str(data.get("program", ""))[:200],
                    "contract": str(data.get("contract", ""))[:200],
                    "height": h,
                    "deadline": data["deadline"] if type(data.get("deadline")) is int else 0,
                    "status": "pending",
                    "answered_at": None,
                    "error": "",
                }
                t.put(key, _seal(key, encoding.encode(rec)))
                idk = _ORACLE_ID + data["id"]
                t.put(idk, _seal(idk, key))
                keys.append(key)
                st.oracle_n += 1
            else:
                self._answer(t, h, data)
        for i, j, rec in d.shielded:
            key = _SHIELD + _epos.pack(h, i, j)
            t.put(key, _seal(key, encoding.encode(rec)))
            keys.append(key)
            st.shielded_n += 1
        st.nullifiers += d.nullifiers
        if keys:
            hk = _HEIGHT + struct.pack(">Q", h)
            t.put(hk, _seal(hk, encoding.encode(keys)))

    def _answer(self, t: SideTxn, height: int, data: dict[str, Any]) -> None:
        idk = _ORACLE_ID + data["id"]
        okey = _unseal(idk, t.get(idk))
        if okey is None:
            return  # a request older than the index (or evicted): nothing to update
        raw = t.get(okey)
        payload = _unseal(okey, raw)
        if payload is None:
            if raw is not None:
                self._damaged(okey, rebuild=True)
            return
        rec = encoding.decode(payload)
        rec["status"] = "answered" if data.get("ok") is True else "failed"
        rec["answered_at"] = height
        rec["error"] = str(data.get("error", ""))[:200]
        t.put(okey, _seal(okey, encoding.encode(rec)))

    def _count(self, t: SideTxn, subj: bytes) -> int:
        ck = _COUNT + subj
        payload = _unseal(ck, t.get(ck))
        if payload is not None and len(payload) == 8:
            return int.from_bytes(payload, "big")
        if t.get(ck) is not None:
            self.m_damaged.inc()
            log.warning("explorer index count of %s is damaged: recounting", subj.hex()[:24])
        return sum(1 for _ in self._keys(t, _TX + subj))

    def _bound_subject(self, t: SideTxn, subj: bytes, added: int) -> None:
        """Count the subject's new records and delete its oldest beyond ``per_subject``."""
        ck = _COUNT + subj
        payload = _unseal(ck, t.get(ck))
        if payload is not None and len(payload) == 8:
            n = int.from_bytes(payload, "big") + added
        else:
            n = self._count(t, subj)  # damaged or first: count what is there (now bounded)
        n = n - self._evict(t, _TX + subj, n - self.limits.per_subject)
        t.put(ck, _seal(ck, n.to_bytes(8, "big")))

    def _bound(self, t: SideTxn, prefix: bytes, n: int, limit: int) -> int:
        return n - self._evict(t, prefix, n - limit)

    def _evict(self, t: SideTxn, prefix: bytes, excess: int) -> int:
        """Delete the ``excess`` oldest records under ``prefix``; how many went."""
        if excess <= 0:
            return 0
        doomed: list[bytes] = []
        for key in self._keys(t, prefix):
            if len(doomed) >= excess:
                break
            doomed.append(key)
        for key in doomed:
            self._delete(t, key)
        return len(doomed)

    def _keys(self, t: SideTxn, prefix: bytes) -> Iterator[bytes]:
        cur = t.cursor()
        if not cur.set_range(prefix):
            return
        for key in cur.iternext(values=False):
            if not key.startswith(prefix):
                return
            yield bytes(key)

    def _delete(self, t: SideTxn, key: bytes) -> bool:
        if key[:1] == _ORACLE:
            payload = _unseal(key, t.get(key))
            if payload is not None:
                rid = encoding.decode(payload).get("id", "")
                t.delete(_ORACLE_ID + bytes.fromhex(rid))
        return t.delete(key)

    # --- repair and pruning ----------------------------------------------------------

    def _repair(self, t: SideTxn, keys: set[bytes]) -> None:
        for key in keys:
            if key[:1] not in (_TX, _SHIELD):
                continue
            fixed = self._rederive(t, key)
            if fixed is None:
                if t.delete(key) and key[:1] == _TX:
                    self._recount(t, _subject_of_tx_key(key))
            else:
                t.put(key, _seal(key, fixed))

    def _recount(self, t: SideTxn, subj: bytes) -> None:
        ck = _COUNT + subj
        n = sum(1 for _ in self._keys(t, _TX + subj))
        t.put(ck, _seal(ck, n.to_bytes(8, "big")))

    def _rederive(self, t: SideTxn, key: bytes) -> bytes | None:
        """The payload ``key`` should hold, from its block; None if the block does not give it
        (pruned, or a key that names nothing in it)."""
        try:
            if key[:1] == _TX:
                h, i = _pos.unpack(key[-12:])
            else:
                h, i, j = _epos.unpack(key[1:])
        except struct.error:
            return None
        got = t.block(h)
        if got is None:
            return None
        block, receipts = got
        if i >= len(block.txs) or i >= len(receipts):
            return None
        tx, r = block.txs[i], receipts[i]
        if key[:1] == _TX:
            if _subject_of_tx_key(key) not in _subjects(tx, r) or len(key) != 3 + key[2] + 12:
                return None
            return _ref_payload(tx, r)
        for ii, jj, rec in derive(block, receipts).shielded:
            if (ii, jj) == (i, j):
                return encoding.encode(rec)
        return None

    def _prune_hook(self, t: SideTxn, height: int) -> None:
        try:
            st = self._state(t)
            if st is None or height < st.first:
                return
            self._prune_height(t, st, height)
            st.first = max(st.first, height + 1)
            self._put_state(t, st)
        except lmdb.MapFullError:
            raise  # the store grows the map and runs the whole prune again
        except Exception:  # never let the explorer stop a prune: rebuild the index instead
            log.warning(
                "explorer index: pruning height %d failed; rebuilding", height, exc_info=True
            )
            t.delete(_STATE)

    def _prune_range(self, t: SideTxn, stop: int) -> None:
        st = self._state(t)
        if st is None:
            return
        for h in range(st.first, stop):
            self._prune_height(t, st, h)
        st.first = max(st.first, stop)
        self._put_state(t, st)

    def _prune_height(self, t: SideTxn, st: _State, height: int) -> None:
        hk = _HEIGHT + struct.pack(">Q", height)
        raw = t.get(hk)
        payload = _unseal(hk, raw)
        keys: list[bytes] = []
        if payload is not None:
            keys = [bytes(k) for k in encoding.decode(payload)]
        elif raw is not None:  # damaged; (no record at all: nothing was indexed at this height)
            self.m_damaged.inc()
            log.warning(
                "explorer index: the record of height %d is damaged: pruning by its block", height
            )
            keys = self._keys_from_block(t, height)
        touched: dict[bytes, int] = {}
        for key in keys:
            if not self._delete(t, key):
                continue  # evicted by the bound already
            if key[:1] == _TX:
                subj = _subject_of_tx_key(key)
                touched[subj] = touched.get(subj, 0) + 1
            elif key[:1] == _ORACLE:
                st.oracle_n = max(0, st.oracle_n - 1)
            elif key[:1] == _SHIELD:
                st.shielded_n = max(0, st.shielded_n - 1)
        for subj, gone in touched.items():
            ck = _COUNT + subj
            p = _unseal(ck, t.get(ck))
            n = int.from_bytes(p, "big") if p is not None and len(p) == 8 else None
            left = sum(1 for _ in self._keys(t, _TX + subj)) if n is None else n - gone
            if left <= 0:
                t.delete(ck)
            else:
                t.put(ck, _seal(ck, left.to_bytes(8, "big")))
        t.delete(hk)

    def _keys_from_block(self, t: SideTxn, height: int) -> list[bytes]:
        got = t.block(height)
        if got is None:
            return []  # block and its record both gone: readers skip anything below the base
        d = derive(*got)
        keys = [
            _TX + subj + _pos.pack(height, i) for _, i, _, subjects in d.txs for subj in subjects
        ]
        keys += [_ORACLE + _epos.pack(height, i, j) for k, i, j, _ in d.oracle if k == "request"]
        keys += [_SHIELD + _epos.pack(height, i, j) for i, j, _ in d.shielded]
        return keys

    # --- reads -----------------------------------------------------------------------

    def page(
        self, subject: str, limit: int, before: tuple[int, int | None] | None = None
    ) -> tuple[list[s.TxRef], tuple[int, int] | None, tuple[int, int]]:
        """A subject's transactions older than ``before`` (height, index; index None: the
        whole height), newest first: (page, the next page's cursor or None, coverage)."""
        prefix = _TX + subject_key(subject)
        if before is None:
            seek = prefix + b"\xff" * 12
        elif before[1] is None:
            seek = prefix + _pos.pack(before[0], 0)
        else:
            seek = prefix + _pos.pack(*before)

        def read(t: SideTxn) -> tuple[list[s.TxRef], tuple[int, int] | None, tuple[int, int]]:
            base = t.base()
            out: list[s.TxRef] = []
            more = False
            for key, raw in self._backwards(t, prefix, seek):
                h, i = _pos.unpack(key[-12:])
                if h < base or len(key) != len(prefix) + 12:
                    continue  # pruned with its block (or left by an interrupted prune)
                if len(out) == limit:
                    more = True
                    break
                payload = _unseal(key, raw)
                if payload is None:
                    self._damaged(key)
                    payload = self._rederive(t, key)
                    if payload is None:
                        continue
                out.append(_ref(h, i, payload))
            cursor = (out[-1].height, out[-1].index) if more and out else None
            return out, cursor, self._coverage_in(t)

        return self.store.read_side(SIDE, read)

    def _backwards(self, t: SideTxn, prefix: bytes, seek: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Records under ``prefix`` strictly below ``seek``, newest first."""
        cur = t.cursor()
        # set_range lands on the first key at or after seek; the records wanted are before it
        positioned = cur.prev() if cur.set_range(seek) else cur.last()
        while positioned:
            key = bytes(cur.key())
            if not key.startswith(prefix):
                return
            if key < seek:
                yield key, bytes(cur.value())
            positioned = cur.prev()

    def txs(self, subject: str, limit: int) -> list[s.TxRef]:
        return self.page(subject, limit)[0]

    def oracle(self, limit: int) -> list[s.OracleRequestModel]:
        def read(t: SideTxn) -> list[s.OracleRequestModel]:
            base = t.base()
            out: list[s.OracleRequestModel] = []
            for key, raw in self._backwards(t, _ORACLE, _ORACLE + b"\xff"):
                if len(out) >= limit:
                    break
                payload = _unseal(key, raw)
                if payload is None:
                    self._damaged(key, rebuild=True)  # its status needs the later blocks
                    continue
                rec = encoding.decode(payload)
                if rec["height"] >= base:
                    out.append(s.OracleRequestModel(**rec))
            return out

        return self.store.read_side(SIDE, read)

    def shielded(self, limit: int) -> list[dict[str, Any]]:
        def read(t: SideTxn) -> list[dict[str, Any]]:
            base = t.base()
            out: list[dict[str, Any]] = []
            for key, raw in self._backwards(t, _SHIELD, _SHIELD + b"\xff"):
                if len(out) >= limit:
                    break
                payload = _unseal(key, raw)
                if payload is None:
                    self._damaged(key)
                    payload = self._rederive(t, key)
                    if payload is None:
                        continue
                rec = encoding.decode(payload)
                if rec["height"] >= base:
                    out.append(rec)
            return out

        return self.store.read_side(SIDE, read)
