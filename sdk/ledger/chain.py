"""The chain: applies agreed blocks to the ledger.

The chain sits on the application side of the line between consensus and the ledger (as
CometBFT's ABCI does): consensus decides *which* block comes next; the chain builds candidate
blocks, checks proposed ones by executing them, and commits decided ones. It owns no sockets
and no clocks.

Rules this module keeps:

* A header's ``state_root`` and ``tx_root`` are those obtained by executing its transactions on
  the state of its parent. A proposer executes before proposing; a validator re-executes before
  voting (:meth:`Chain.validate`), so a block is only ever agreed on together with its outcome.
* Execution never writes. Its result (receipts, writes, tree update) is cached by block hash so
  that committing a validated block is one LMDB write transaction and no re-execution.
* Every commit goes through :meth:`accord.storage.Store.commit_block`: block, certificate,
  receipts, state writes and the new root land together or not at all.
* A proposal refused because its execution here gives another tx root or state root (the
  validators disagree: nondeterministic contract code, or other code) is named: the log, the
  :attr:`Chain.mismatches` counters and :meth:`Chain.refused_blocks` list its transactions with
  this node's receipt hashes, and the block is executed a second time so that a transaction
  whose receipt changes between two local runs is singled out. Such a transaction gets a
  strike per distinct proposer whose refused proposal held it; at f+1 proposers (so at least
  one honest one proposed it) it is banned from this node's proposals, and
  :meth:`Chain.take_banned` hands it to whoever evicts it from the mempool: the chain does not
  stay stuck behind it, and one Byzantine proposer cannot get a transaction banned alone.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from accord.base import merkle
from accord.base.encoding import Value
from accord.base.errors import AccordError, GenesisError, ValidationError
from accord.base.genesis import ConsensusParams, Genesis
from accord.base.types import ZERO_HASH, Block, Certificate, Header, Receipt, Tx, body_hash
from accord.ledger.application import InvalidProposal, MissingContractCode, StateRootMismatch
from accord.ledger.blocktime import block_time_error

if TYPE_CHECKING:
    from pathlib import Path

    from accord.contracts.runtime import Runtime
    from accord.ledger.application import SnapshotImport
    from accord.ledger.schedule import Schedule
    from accord.storage import StateUpdate, Store
    from accord.storage.snapshot import Chunk, Manifest

GENESIS_HASH_KEY = b"genesis_hash"

log = logging.getLogger(__name__)

BLOCK_FRAMING_BYTES = 512
"""Room a block keeps for its header and the framing of its list of transactions: a header
is at most about 350 bytes (a chain id of up to 64 characters, four 32-byte hashes, a 96-byte
sortition ticket, five integers), so a block whose transactions take ``max_block_bytes`` less
this is within ``max_block_bytes`` encoded (tests/test_gov_consensus.py checks the bound)."""
REFUSALS_KEPT = 16
"""Refused proposals :meth:`Chain.refused_blocks` remembers (newest last)."""
REFUSED_TXS_KEPT = 256
"""Transactions recorded per refused proposal (a block may hold thousands)."""
REFUSED_TXS_LOGGED = 32
STRIKES_KEPT = 4096
"""Transactions with strikes (or bans) remembered; the oldest are forgotten first."""


@dataclass(frozen=True)
class Execution:
    """What executing a block on its parent's state produced (not yet written)."""

    receipts: list[Receipt]
    writes: dict[bytes, bytes | None]
    update: StateUpdate
    state_root: bytes
    tx_root: bytes
    gas_used: int = 0  # the receipts' total (at most the max_block_gas in force)


@dataclass(frozen=True, slots=True)
class RefusedTx:
    """One transaction of a refused proposal, as this node executed it."""

    index: int
    tx_hash: bytes
    contract: str
    method: str
    receipt_hash: bytes | None  # None: execution stopped before it
    ok: bool
    error: str  # the receipt's error code ("" when it succeeded)


@dataclass(frozen=True, slots=True)
class RefusedBlock:
    """A proposal refused because executing it here gave another root than its header."""

    height: int
    block_hash: bytes
    proposer: int
    reason: str  # "tx_root" or "state_root"
    suspect: int | None  # first tx whose receipt differed between two local executions
    tx_count: int
    txs: tuple[RefusedTx, ...]  # the first REFUSED_TXS_KEPT


def tx_root(txs: Sequence[Tx], receipts: Sequence[Receipt]) -> bytes:
    return merkle.merkle_root(
        [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(txs, receipts, strict=True)]
    )


class Chain:
    """Builds, validates and commits blocks on one node's store.

    Thread-safety: one thread drives a chain at a time (the node's consensus task); reads
    through :attr:`store` may come from anywhere.
    """

    def __init__(
        self, genesis: Genesis, store: Store, runtime: Runtime, *, cache_size: int = 64
    ) -> None:
        self.genesis = genesis
        self.store: Store = store
        self.runtime: Runtime = runtime
        self._results: OrderedDict[bytes, Execution] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.RLock()
        # The reports below are read from other threads (the node's event loop) while the
        # chain thread may hold ``_lock`` for a long execution: they have their own lock.
        self._report_lock = threading.Lock()
        self._refused: deque[RefusedBlock] = deque(maxlen=REFUSALS_KEPT)
        self.mismatches: dict[str, int] = {}
        """Refused proposals by reason ("tx_root", "state_root") and by suspect contract
        ("contract:<name>"; "contract:?" when no transaction could be singled out)."""
        self._strikes: OrderedDict[bytes, set[int]] = OrderedDict()
        self._banned: OrderedDict[bytes, str] = OrderedDict()
        self._newly_banned: list[tuple[bytes, str]] = []
        n = len(genesis.validators)
        self.ban_threshold = (n - 1) // 3 + 1
        """Distinct proposers (f + 1) whose refused proposals must hold a transaction before
        it is banned: at least one of them is honest."""
        stored = store.get_meta(GENESIS_HASH_KEY)
        if stored is None:
            if store.head() is not None:
                raise GenesisError("store holds blocks but no genesis hash")
            self.commit_genesis()
        elif stored != genesis.hash:
            raise GenesisError(
                f"this node's store was created for genesis {stored.hex()[:16]}..., "
                f"not {genesis.hash.hex()[:16]}..."
            )
        self._code_entries: list[bytes | None] | None = None
        self.check_code()

    def check_code(self) -> None:
        """Refuse to go on (``CodeMissing``, naming contract, hash and how to install it)
        when the next block runs contract code this node lacks; warn, once per contract and
        hash, about code governance scheduled for later (there is still time to install).
        Called at construction (a node restarted without the code stops at once) and after
        every commit."""
        from accord.contracts.base import state_key
        from accord.contracts.runtime import CircuitMissing

        head = self.store.head()
        if head is None:
            return
        counts = [
            self.store.get_state(state_key("governance", f"s/{kind}/n"))
            for kind in ("contracts", "circuits")
        ]
        if all(c is None for c in counts) or counts == self._code_entries:
            return  # no change to the registry or the circuits since the last check
        with self.store.snapshot() as snap:
            self.runtime.registry_at(snap, head[0] + 1)
            self.runtime.check_circuits(snap, head[0] + 1)
            for missing in [*self.runtime.missing_code(snap), *self.runtime.missing_circuits(snap)]:
                log.warning(
                    "%s scheduled by governance is not on this node; it will stop before "
                    "height %d unless it is: %s",
                    "a verification key"
                    if isinstance(missing, CircuitMissing)
                    else "contract code",
                    missing.height,
                    missing.message,
                )
        self._code_entries = counts

    # --- state --------------------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def head(self) -> tuple[int, bytes]:
        head = self.store.head()
        if head is None:  # genesis is committed at construction: only a snapshot install empties it
            from accord.base.errors import Unavailable

            raise Unavailable("the node is installing a state snapshot: no head yet")
        return head

    def head_header(self) -> Header:
        header = self.store.get_header(self.head()[0])
        assert header is not None
        return header

    def nonce_of(self, address: bytes) -> int:
        """The next nonce the account must use (committed state)."""
        return self.runtime.nonce_of(self.store, address)

    # --- genesis ------------------------------------------------------------------------

    def commit_genesis(self) -> None:
        """Write the genesis state and block into an empty store: at first start, and after a
        state-sync install was abandoned (its store was emptied for the snapshot)."""
        writes = self.runtime.genesis_writes()
        update = self.store.compute_state_update(writes)
        header = Header(
            chain_id=self.genesis.chain_id,
            height=0,
            round=0,
            parent_hash=ZERO_HASH,
            tx_root=merkle.merkle_root([]),
            state_root=update.root,
            tx_count=0,
            proposer=0,
            time_ms=self.genesis.genesis_time_ms,
        )
        self.store.commit_block(Block(header, ()), None, [], writes, update)
        self.store.put_meta(GENESIS_HASH_KEY, self.genesis.hash)

    # --- execution ----------------------------------------------------------------------

    def _execute(
        self,
        txs: Sequence[Tx],
        height: int,
        time_ms: int,
        round: int,
        verified: Container[bytes],
        interrupt: Callable[[], bool] | None = None,
        gas_budget: int | None = None,
    ) -> Execution:
        """Execute on the head state. With ``gas_budget`` only a prefix of ``txs`` may run
        (``len(receipts)`` of them): the caller cuts the block to match. ``round`` (the
        header's) fixes where the round schedule goes on when ``round_ms`` changes after
        this block (:meth:`accord.contracts.runtime.Runtime.round_anchor`)."""
        from accord.contracts.runtime import CodeMissing

        with self.store.snapshot() as snap:
            try:
                result = self.runtime.execute_block(
                    snap,
                    txs,
                    height=height,
                    time_ms=time_ms,
                    verified=verified,
                    interrupt=interrupt,
                    max_gas=self.runtime.consensus_at(snap, height).max_block_gas,
                    gas_budget=gas_budget,
                )
            except CodeMissing as e:
                log.error("block %d cannot run here: %s", height, e.message)
                raise MissingContractCode(e.message) from None
            moved = self.runtime.round_writes(snap, height, round)
        writes = result.writes
        if moved:
            writes = {**writes, **moved}
        update = self.store.compute_state_update(writes)
        ran = txs if len(result.receipts) == len(txs) else txs[: len(result.receipts)]
        return Execution(
            result.receipts,
            writes,
            update,
            update.root,
            tx_root(ran, result.receipts),
            result.gas_used,
        )

    def execution(self, block_hash: bytes) -> Execution | None:
        """The cached outcome of a block built or validated on the current head, if any."""
        with self._lock:
            return self._results.get(block_hash)

    def executed_gas(self, block_hash: bytes) -> int | None:
        """The gas of a block built or validated on the current head (see Application)."""
        ex = self.execution(block_hash)
        return None if ex is None else ex.gas_used

    def _remember(self, block_hash: bytes, ex: Execution) -> None:
        self._results[block_hash] = ex
        self._results.move_to_end(block_hash)
        while len(self._results) > self._cache_size:
            self._results.popitem(last=False)

    def build(
        self,
        txs: Sequence[Tx],
        *,
        round: int = 0,
        proposer: int = 0,
        time_ms: int,
        sortition: bytes = b"",
        verified: Container[bytes] = (),
        interrupt: Callable[[], bool] | None = None,
        gas_budget: int | None = None,
    ) -> Block:
        """Execute ``txs`` on the head state and return the block that commits to the outcome.

        Transactions that would make the block invalid (stale nonce, bad signature, one that
        alone passes the block gas limit) are dropped here, so a proposer never proposes a
        block it would itself reject. ``gas_budget`` cuts the block before the first
        transaction that would take its gas past the budget (never before the first one), so
        the block's size follows what its transactions cost, not how many there are; the
        block gas limit is the budget when none is given.
        ``interrupt`` lets the caller abandon the build part-way (it raises
        :class:`~accord.contracts.runtime.ExecutionInterrupted`; nothing is cached or written).
        """
        from accord.contracts.runtime import InvalidBlock

        with self._lock:
            height, parent = self.head()
            parent_time = self.head_header().time_ms
            time_ms = max(time_ms, parent_time)
            params = self.params_at(height + 1)
            txs = self._filter(txs, verified)
            del txs[self._fits(txs, params) :]
            limit = params.max_block_gas
            gas_budget = limit if gas_budget is None else min(gas_budget, limit)
            while True:
                try:
                    ex = self._execute(
                        txs, height + 1, time_ms, round, verified, interrupt, gas_budget
                    )
                    break
                except InvalidBlock as e:
                    # Drop the offending transaction (stale nonce after a competing commit,
                    # bad signature) and try again; without an index the batch is unusable.
                    if e.index is None or not 0 <= e.index < len(txs):
                        raise
                    txs.pop(e.index)
            del txs[len(ex.receipts) :]
            header = Header(
                chain_id=self.chain_id,
                height=height + 1,
                round=round,
                parent_hash=parent,
                tx_root=ex.tx_root,
                state_root=ex.state_root,
                tx_count=len(txs),
                proposer=proposer,
                time_ms=time_ms,
                sortition=sortition,
                body_hash=body_hash(txs),
            )
            block = Block(header, tuple(txs))
            self._remember(block.hash, ex)
            return block

    @staticmethod
    def _fits(txs: Sequence[Tx], params: ConsensusParams) -> int:
        """How many of ``txs`` (a prefix: a sender's later nonces follow its earlier ones) a
        block may hold under ``params``: at most ``max_block_txs``, and their encodings
        within ``max_block_bytes`` with room for the header and framing."""
        room = params.max_block_bytes - BLOCK_FRAMING_BYTES
        n = 0
        for tx in txs[: params.max_block_txs]:
            room -= len(tx.encode())
            if room < 0:
                break
            n += 1
        return n

    def _filter(self, txs: Sequence[Tx], verified: Container[bytes]) -> list[Tx]:
        """One pass that keeps, per sender, the run of transactions whose nonces follow the
        committed nonce, with valid chain id and signature: what execution will accept."""
        expected: dict[bytes, int] = {}
        kept: list[Tx] = []
        with self.store.snapshot() as snap:
            banned = self._banned
            for tx in txs:
                if banned and tx.hash in banned:
                    continue  # a later nonce of its sender is then left out too: it would skip
                sender = tx.sender
                nonce = expected.get(sender)
                if nonce is None:
                    nonce = self.runtime.nonce_of(snap, sender)
                if tx.nonce != nonce or tx.chain_id != self.chain_id:
                    continue
                if tx.hash not in verified:
                    try:
                        tx.verify_signature()
                    except AccordError:
                        continue
                expected[sender] = nonce + 1
                kept.append(tx)
        return kept

    def check_time(self, header: Header, now_ms: int) -> None:
        """Refuse (InvalidProposal) a proposal whose time an honest validator must not vote
        for at local time ``now_ms``: too far ahead of that clock or outside its round's slot
        (see :mod:`accord.ledger.blocktime`). A vote-time check only: it depends on the local clock,
        so :meth:`commit` and catch-up never apply it to a certified block. A header that
        does not extend the head is left to :meth:`validate`, which refuses it. The round
        schedule and tolerance are those in force at the header's height."""
        with self._lock:
            height, parent = self.head()
            if header.height != height + 1 or header.parent_hash != parent:
                return
            params = self.params_at(header.height)
            error = block_time_error(
                time_ms=header.time_ms,
                round=header.round,
                parent_time_ms=self.head_header().time_ms,
                now_ms=now_ms,
                genesis_time_ms=self.round_anchor(header.height),
                round_ms=params.round_ms,
                drift_ms=params.time_drift(),
            )
        if error is not None:
            raise InvalidProposal(error)

    def validate(
        self, block: Block, *, verified: Container[bytes] = (), now_ms: int | None = None
    ) -> Execution:
        """Check a proposed block against the head and re-execute it; raise InvalidProposal.

        Header rules checked before the (expensive) execution: chain id, height, parent,
        time not before the parent's, tx count and size limits (those in force at the
        block's height, :meth:`params_at`). The block gas limit is checked while executing,
        which stops at the transaction that passes it.

        With ``now_ms`` (deciding this validator's vote) the block's time is also checked
        against that clock and the round schedule (:meth:`check_time`), before any cached
        result is returned. Without it (committing a certified block) it is not: that check
        depends on the local clock, and execution of an agreed block must not.
        """
        from accord.contracts.runtime import InvalidBlock

        with self._lock:
            if now_ms is not None:
                self.check_time(block.header, now_ms)
            cached = self._results.get(block.hash)
            if cached is not None:
                return cached
            h = block.header
            height, parent = self.head()
            if h.chain_id != self.chain_id:
                raise InvalidProposal(f"block for chain {h.chain_id!r}")
            if h.height != height + 1 or h.parent_hash != parent:
                raise InvalidProposal(
                    f"block at height {h.height} on parent {h.parent_hash.hex()[:12]} does not extend "
                    f"head {height} {parent.hex()[:12]}"
                )
            if h.time_ms < self.head_header().time_ms:
                raise InvalidProposal("block time is before its parent's")
            params = self.params_at(h.height)  # final: h.height is the head + 1
            if h.tx_count != len(block.txs):
                raise InvalidProposal("tx count does not match the header")
            if len(block.txs) > params.max_block_txs:
                raise InvalidProposal(
                    f"block holds {len(block.txs)} transactions, past the limit of "
                    f"{params.max_block_txs} in force at height {h.height}"
                )
            size = len(block.encode())
            if size > params.max_block_bytes:
                raise InvalidProposal(
                    f"block of {size} bytes, past the limit of {params.max_block_bytes} "
                    f"in force at height {h.height}"
                )
            if len({t.hash for t in block.txs}) != len(block.txs):
                raise InvalidProposal("block repeats a transaction")
            try:
                ex = self._execute(block.txs, h.height, h.time_ms, h.round, verified)
            except InvalidBlock as e:
                raise InvalidProposal(str(e)) from None
            if ex.tx_root != h.tx_root:
                note = self._disagreement(block, ex, "tx_root", verified, vote=now_ms is not None)
                raise InvalidProposal(f"tx root does not match the executed transactions{note}")
            if ex.state_root != h.state_root:
                note = self._disagreement(
                    block, ex, "state_root", verified, vote=now_ms is not None
                )
                raise StateRootMismatch(
                    f"state root does not match the executed transactions{note}"
                )
            self._remember(block.hash, ex)
            return ex

    # --- disagreement ---------------------------------------------------------------------

    def _disagreement(
        self, block: Block, ex: Execution, reason: str, verified: Container[bytes], *, vote: bool
    ) -> str:
        """Name what a root mismatch can be blamed on; return a note for the refusal's message.

        The header carries only roots, not the proposer's receipts, so this node cannot say
        which receipt differs from the proposer's. It can say which differs between two of its
        own executions (nondeterministic code usually differs there too); failing that, every
        transaction of the block is a suspect."""
        from accord.contracts.runtime import InvalidBlock

        h = block.header
        suspect: int | None = None
        try:
            again = self._execute(block.txs, h.height, h.time_ms, h.round, verified)
            for i, (a, b) in enumerate(zip(ex.receipts, again.receipts, strict=False)):
                if a.hash != b.hash:
                    suspect = i
                    break
            else:
                if len(ex.receipts) != len(again.receipts):
                    suspect = min(len(ex.receipts), len(again.receipts))
        except (InvalidBlock, AccordError):
            suspect = None
        entries = []
        for i, tx in enumerate(block.txs[:REFUSED_TXS_KEPT]):
            r = ex.receipts[i] if i < len(ex.receipts) else None
            entries.append(
                RefusedTx(
                    i,
                    tx.hash,
                    tx.contract,
                    tx.method,
                    None if r is None else r.hash,
                    r is not None and r.ok,
                    "" if r is None else r.error_code,
                )
            )
        record = RefusedBlock(
            h.height, block.hash, h.proposer, reason, suspect, len(block.txs), tuple(entries)
        )
        with self._report_lock:
            self._refused.append(record)
        self._count(reason)
        if suspect is not None and suspect < len(block.txs):
            culprit = block.txs[suspect]
            self._count(f"contract:{culprit.contract}")
            note = (
                f"; transaction {suspect} {culprit.hash.hex()[:16]} "
                f"({culprit.contract}.{culprit.method}) gives another receipt on each execution"
            )
        else:
            self._count("contract:?")
            note = f"; no transaction singled out among {len(block.txs)} (see the chain's log)"
        log.warning(
            "proposal %s (height %d, proposer %d) refused: %s mismatch%s",
            block.hash.hex()[:12],
            h.height,
            h.proposer,
            reason.replace("_", " "),
            note,
        )
        for e in entries[:REFUSED_TXS_LOGGED]:
            log.warning(
                "  tx %d %s %s.%s: receipt %s %s",
                e.index,
                e.tx_hash.hex()[:16],
                e.contract,
                e.method,
                "-" if e.receipt_hash is None else e.receipt_hash.hex()[:16],
                "ok" if e.ok else f"failed {e.error}",
            )
        if len(block.txs) > REFUSED_TXS_LOGGED:
            log.warning("  ... and %d more transactions", len(block.txs) - REFUSED_TXS_LOGGED)
        if vote:
            targets = [suspect] if suspect is not None and suspect < len(block.txs) else None
            self._strike(block, h.proposer, targets, reason)
        return note

    def _count(self, key: str) -> None:
        with self._report_lock:
            m = self.mismatches
            if key not in m and len(m) >= 256:
                key = "contract:other"  # bounded: contract names in transactions are anyone's
            m[key] = m.get(key, 0) + 1

    def mismatch_counts(self) -> dict[str, int]:
        """A copy of :attr:`mismatches`, safe to take from any thread (for metrics)."""
        with self._report_lock:
            return dict(self.mismatches)

    def _strike(self, block: Block, proposer: int, targets: list[int] | None, reason: str) -> None:
        txs = block.txs if targets is None else [block.txs[i] for i in targets]
        for tx in txs:
            key = tx.hash
            if key in self._banned:
                continue
            who = self._strikes.pop(key, None) or set()
            who.add(proposer)
            if len(who) < self.ban_threshold:
                self._strikes[key] = who
                while len(self._strikes) > STRIKES_KEPT:
                    self._strikes.popitem(last=False)
                continue
            what = f"{tx.contract}.{tx.method}"
            self._banned[key] = what
            while len(self._banned) > STRIKES_KEPT:
                self._banned.popitem(last=False)
            with self._report_lock:
                self._newly_banned.append((key, what))
                del self._newly_banned[:-STRIKES_KEPT]
            self._count("banned")
            log.warning(
                "transaction %s (%s) is left out of this node's proposals: proposals of %d "
                "different proposers holding it were refused for a %s mismatch",
                key.hex(),
                what,
                len(who),
                reason.replace("_", " "),
            )

    def refused_blocks(self) -> list[RefusedBlock]:
        """The latest proposals refused for a root mismatch, oldest first."""
        with self._report_lock:
            return list(self._refused)

    def banned(self, tx_hash: bytes) -> bool:
        """True if ``tx_hash`` is left out of this node's proposals (see the module notes)."""
        return tx_hash in self._banned

    def take_banned(self) -> list[tuple[bytes, str]]:
        """Transactions banned since the last call, as ``(hash, "contract.method")``, for the
        node to evict from its mempool (:meth:`accord.ledger.mempool.Mempool.evict`). Never
        waits for an execution in progress."""
        with self._report_lock:
            out, self._newly_banned = self._newly_banned, []
            return out

    def commit(self, block: Block, certificate: Certificate | None) -> list[Receipt]:
        """Commit an agreed block (validating it first if this node has not yet)."""
        with self._lock:
            ex = self.validate(block)
            self.store.commit_block(block, certificate, ex.receipts, ex.writes, ex.update)
            self._results.clear()  # every cached result was computed on a parent that is gone
            try:
                self.check_code()
            except AccordError as e:  # the next block lacks code: its execution says so
                log.error("after block %d: %s", block.height, e.message)
            return ex.receipts

    def query(self, contract: str, method: str, args: dict[str, Value]) -> Value:
        """A read-only contract call on committed state, at the head's height and time (a
        contract that reads ``ctx.time_ms``, such as a credit score valid for its epoch, then
        answers as it would in the next block, not as at 1970). Every state value it reads is
        checked by a Merkle proof against the head's state root: a damaged value raises
        ``StorageDamaged`` instead of becoming an answer."""
        from accord.storage.verify import VerifiedSnapshot

        header = self.head_header()
        with VerifiedSnapshot(self.store) as snap:
            return self.runtime.query(
                snap, contract, method, args, height=header.height, time_ms=header.time_ms
            )

    def known_contracts(self) -> frozenset[str]:
        """The contracts the next block knows: genesis's and those governance deployed,
        active or retired (a retired contract's state stays readable)."""
        head = self.store.head()
        if head is None:
            return frozenset(self.runtime.contract_names)
        with self.store.snapshot() as snap:
            return self.runtime.contract_names_at(snap, head[0] + 1)

    def params_at(self, height: int) -> ConsensusParams:
        """The consensus parameters in force for the block at ``height`` (genesis's, or what
        governance's ``set_consensus`` put in force there), from committed state: final for
        heights up to the head + 2. What :meth:`build`, :meth:`validate` and
        :meth:`check_time` judge a block by, so every validator (and a node catching up or
        restarted) applies the same limits at the same height."""
        with self.store.snapshot() as snap:
            return self.runtime.consensus_at(snap, height)

    def round_anchor(self, height: int) -> int:
        """The time the rounds of the block at ``height`` are counted from (genesis time
        until governance changes ``round_ms``; see
        :meth:`accord.contracts.runtime.Runtime.round_anchor`): final once block
        ``height - 1`` is executed."""
        with self.store.snapshot() as snap:
            return self.runtime.round_anchor(snap, height)

    def scheduled(self, height: int) -> Schedule:
        """What governance has put in force for the block at ``height`` (validator set,
        consensus parameters, contracts, circuits, regulator key, MPC servers), read from
        committed state. Final for heights up to the head + 2: a change passing in a later
        block takes effect two blocks after it at the earliest. Genesis's values at every
        height on a chain without the governance contract."""
        from accord.ledger.schedule import genesis_only, schedule_from
        from accord.storage.verify import VerifiedSnapshot

        if "governance" not in self.runtime.contract_names:
            return genesis_only(self.genesis, height)
        anchor = self.round_anchor(height)
        header = self.head_header()
        with VerifiedSnapshot(self.store) as snap:
            doc = self.runtime.query(
                snap,
                "governance",
                "in_force",
                {"height": height},
                height=header.height,
                time_ms=header.time_ms,
            )
        assert isinstance(doc, dict)
        return schedule_from(self.genesis, doc, round_anchor_ms=anchor)

    def block_and_certificate(self, height: int) -> tuple[Block, Certificate | None]:
        block = self.store.get_block(height)
        if block is None:
            raise ValidationError(f"no block at height {height}")
        return block, self.store.get_certificate(height)

    # --- state snapshots (state sync) -----------------------------------------------------

    def base(self) -> int:
        return self.store.base()

    def prune(self, keep: int) -> int:
        return self.store.prune(keep)

    def export_snapshot(
        self, out_dir: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> Manifest:
        from accord.storage import snapshot

        return snapshot.build(self.store, out_dir, progress=progress)

    def import_snapshot(self, manifest: Manifest) -> SnapshotImport:
        return _ChainImport(self, manifest)

    def recommit_genesis(self) -> None:
        """Genesis again, on the store an abandoned import emptied; refused on a store that
        holds blocks (that would fork this node's own chain)."""
        with self._lock:
            if self.store.head() is not None:
                raise AccordError("the store holds blocks: genesis is not written over them")
            self._results.clear()
            self.commit_genesis()
            self._code_entries = None
            self.check_code()


class _ChainImport:
    """A snapshot import into the chain's store (:class:`accord.storage.snapshot.Installer`),
    under the chain's lock, that forgets what the chain executed on the state it replaces
    and, once finished, checks the code the imported state schedules (as after a commit)."""

    def __init__(self, chain: Chain, manifest: Manifest) -> None:
        from accord.storage.snapshot import Installer

        self._chain = chain
        self._installer = Installer(chain.store, manifest)

    def begin(self) -> None:
        with self._chain._lock:
            self._chain._results.clear()
            self._installer.begin()

    def add(self, index: int, chunk: Chunk) -> None:
        self._installer.add(index, chunk)

    def finish(self) -> None:
        chain = self._chain
        with chain._lock:
            self._installer.finish()
            chain._results.clear()
            chain._code_entries = None
            try:
                chain.check_code()
            except AccordError as e:  # as after a commit: the next block's execution says so
                log.error("after the snapshot import: %s", e.message)

    def abort(self) -> None:
        with self._chain._lock:
            self._installer.abort()
            self._chain._results.clear()
