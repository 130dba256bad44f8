"""The contract runtime: executes a block's transactions against a read-only view of state.

Execution never writes storage. It returns the receipts and one merged map of writes
(``key -> bytes``, ``None`` = delete) that the chain commits together with the block.

State key layout (all values are canonical encodings, :mod:`accord.base.encoding`):

* ``b"c/" + contract name + b"/" + tag + user key`` -- a contract's own state. The tag is
  ``b"s"`` for a ``str`` user key (UTF-8 follows) and ``b"b"`` for a ``bytes`` user key, so the
  two kinds never collide. Contract names are ``[a-z0-9_]{1,64}``: no name contains ``/``, so
  no namespace is a prefix of another.
* ``b"n/" + address`` -- the next nonce of an account (absent = 0).
* ``b"r/rounds"`` -- where the round schedule moved (absent: never): ``[[height, anchor_ms],
  ...]``, see :meth:`Runtime.round_anchor`. Written by the runtime itself, never by a
  contract (contract keys all start with ``b"c/"``).

Rules for a block (``execute_block``):

* Transactions run in order; each sees the writes of the earlier ones (an overlay).
* A transaction with a bad signature (unless its hash is in ``verified``), a wrong chain id,
  or a nonce other than its sender's next nonce makes the whole BLOCK invalid
  (:class:`InvalidBlock`, carrying the index of the offending transaction): honest validators
  vote against such a proposal.
* A failing contract call (Revert, BadArguments, UnknownContract/Method, OutOfGas, or any
  exception in contract code) yields a failed receipt; all its writes and events are dropped,
  but the sender's nonce still advances (the transaction is consumed and cannot be replayed).
* A read of this node's state that raises (a closed snapshot, a damaged store) is no property
  of the transaction: ``execute_block`` raises it, even when contract code caught it
  (:attr:`~accord.contracts.base.Context.read_failure`), and writes no receipt for it.
* Gas is a pure function of the transaction and the state: ``tx_base + tx_byte * encoded
  size`` up front, then reads, writes, deletes, events, calls and proof checks as charged by
  :class:`~accord.contracts.base.Context`. ``gas_used`` never exceeds ``tx.gas_limit``;
  running out fails the transaction with ``out_of_gas`` and ``gas_used == gas_limit``.
* A block's receipts use at most ``max_block_gas`` in total (genesis's, or what governance put
  in force at the block's height: :meth:`Runtime.consensus_at`); a block past it is invalid.
  Gas, unlike time, is the same on every validator, so this is what bounds the work a
  proposal (an honest one or not) can make every validator do.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import (
    AccordError,
    CodeMismatch,
    DecodeError,
    GenesisError,
    InvalidSignature,
    OutOfGas,
    UnknownContract,
    UnknownMethod,
    ValidationError,
)
from accord.base.genesis import ConsensusParams, Genesis
from accord.base.types import Receipt, Tx
from accord.contracts import fastpath, meter
from accord.contracts.base import (
    GAS,
    NONCE_PREFIX,
    Context,
    Contract,
    ContractError,
    MethodSpec,
    Oracle,
    ProofVerifier,
    StateReader,
    contract_prefix,
    state_key,
    user_key,
)
from accord.contracts.determinism import check_contract, restricted_class
from accord.contracts.governance import genesis_schedule
from accord.contracts.installed import package_code_hash
from accord.contracts.token import Token

log = logging.getLogger(__name__)

CONTRACT_NAME = re.compile(r"[a-z0-9_]{1,64}")
ROUNDS_KEY = b"r/rounds"
ROUND_GAP = 4
"""Rounds the schedule skips when ``round_ms`` changes (see :meth:`Runtime.round_anchor`):
more than a block's late prepares (``LATE_ROUNDS`` of the core), so a validator that voted at
the last height of the old timing late in its rounds can vote at once under the new one."""


def moved_anchor(anchor: int, old_ms: int, new_ms: int, round: int) -> int:
    """The round anchor after ``round_ms`` changes from ``old_ms`` to ``new_ms`` right after a
    block of ``round`` (rounds counted from ``anchor`` until then): round + ROUND_GAP starts
    when it did on the old schedule, and rounds go on from there at the new length (see
    :meth:`Runtime.round_anchor`; the simulator moves its schedule by the same rule)."""
    r = round + ROUND_GAP
    return anchor + r * old_ms - r * new_ms


QUERY_GAS = 10_000_000
"""Gas a query may spend (queries do not change state, but must not read without bound)."""


class InvalidBlock(AccordError):
    """A block that must not be committed (and that honest validators vote against).

    ``index`` is the position of the offending transaction, so a proposer can drop it.
    """

    code = "invalid_block"

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ExecutionInterrupted(Exception):
    """``execute_block`` stopped because its ``interrupt`` callable said so (a block being
    built that can no longer win its round). Nothing was written: execution never writes."""


INTERRUPT_EVERY = 256
"""Transactions executed between two calls of an ``interrupt`` callable."""


@dataclass(frozen=True, slots=True)
class BlockResult:
    receipts: list[Receipt]  # one per executed transaction: a prefix of the block's when cut
    writes: dict[bytes, bytes | None]
    gas_used: int = 0  # the receipts' total


class CodeMissing(CodeMismatch):
    """Governance put contract code in force that this node has not installed.

    The node must not execute the block (it would compute another state than the others,
    or refuse every block): it stops before that height and says what to install."""

    code = "code_missing"

    def __init__(self, contract: str, code_hash: bytes, height: int) -> None:
        self.contract = contract
        self.code_hash = code_hash
        self.height = height
        super().__init__(
            f"contract {contract!r} runs code hash {code_hash.hex()} from height {height} "
            "(approved by governance), and this node has not installed that code: install "
            "the approved release (a module or package whose contract hashes to it, see "
            '`accord gov show`), name it in node.json "contracts" ({"module": '
            '"package.module:Class"} or {"entry_point": "name"}) and restart the node'
        )


class CircuitMissing(CodeMissing):
    """Governance put a circuit's verification key in force that this node does not hold.

    Like missing contract code: the node must not execute the block (a proof it cannot check
    would give it another receipt than the others), so it stops before that height and says
    which key file to provide."""

    code = "circuit_missing"

    def __init__(
        self, circuit: str, vk_hash: bytes, height: int, configured: tuple[str, bytes] | None
    ) -> None:
        self.contract = circuit
        self.code_hash = vk_hash
        self.height = height
        have = (
            ""
            if configured is None
            else f" (node.json names {configured[0]} for it, which hashes to "
            f"{configured[1].hex()}: another key)"
        )
        CodeMismatch.__init__(
            self,
            f"circuit {circuit!r} is verified with the key of hash {vk_hash.hex()} from height "
            f"{height} (registered by governance), and this node does not hold that "
            f"verification key{have}: put the ceremony's verification key JSON (see `accord gov "
            'show`) in the node folder, name it in node.json "circuits" ({"' + circuit + '": '
            '"path/to/vk.json"}) and restart the node',
        )


@dataclass(frozen=True, slots=True)
class Registry:
    """The contracts a block runs: those of genesis and governance's changes in force."""

    specs: Mapping[tuple[str, str], tuple[Contract, MethodSpec]]
    names: frozenset[str]
    retired: frozenset[str]


GOVERNANCE = "governance"
REGISTRY_CACHE = 64


_code_hashes: dict[type, bytes] = {}


def code_hash(contract_cls: type[Contract]) -> bytes:
    """SHA-256 of the contract's code: its module's source file, and with it every module
    the contract imports from its own top-level package (see
    :func:`accord.contracts.installed.package_code_hash`; a one-file contract, such as each
    built-in, hashes as its file alone).

    This is what genesis and governance register: every member must run byte-identical
    contract code. (The runtime and base class are not covered: they are part of the
    node's version.)
    """
    h = _code_hashes.get(contract_cls)
    if h is None:
        h = package_code_hash(contract_cls)
        _code_hashes[contract_cls] = h
    return h


def nonce_key(address: bytes) -> bytes:
    return NONCE_PREFIX + address


_MISSING: Any = object()


class Runtime:
    """Runs contract methods for transactions and queries. Stateless between calls: one
    instance serves a node for its lifetime (and may be shared by threads that each pass
    their own state reader)."""

    def __init__(
        self,
        genesis: Genesis,
        contracts: Mapping[str, type[Contract]] | None = None,
        *,
        proof_verifier: ProofVerifier | None = None,
        oracle: Oracle | None = None,
        check_code: bool = True,
        installed: Sequence[type[Contract]] = (),
        fast_paths: bool = True,
    ) -> None:
        """``check_code=False`` skips the static determinism check (contracts are still run
        with restricted builtins): only for test fixtures that are deliberately broken, such as
        a contract returning a float to prove the runtime refuses it.

        ``installed``: contract classes this node offers beyond genesis's (node.json
        ``contracts``, see :mod:`accord.contracts.installed`). Governance can put any code
        in force by hash; the runtime runs the class of that name and hash at each height,
        and raises :class:`CodeMissing` for a block whose code it does not have.

        ``fast_paths=False`` runs every transaction through the generic path, including the
        token transfers :mod:`accord.contracts.fastpath` computes directly (same bytes either
        way; tests compare the two)."""
        if contracts is None:
            from accord.contracts import BUILTINS

            contracts = BUILTINS
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.proof_verifier = proof_verifier
        self.oracle = oracle
        self._contracts: dict[str, Contract] = {}
        self._specs: dict[tuple[str, str], tuple[Contract, MethodSpec]] = {}
        self._code: dict[tuple[str, bytes], Contract] = {}  # every class this node offers
        for entry in genesis.contracts:
            name = entry.name
            if not CONTRACT_NAME.fullmatch(name):
                raise GenesisError(f"contract name {name!r} must match [a-z0-9_]{{1,64}}")
            if name in self._contracts:
                raise GenesisError(f"contract {name!r} is registered twice in genesis")
            cls = contracts.get(name)
            if cls is None:
                raise CodeMismatch(
                    f"contract {name!r} is registered in genesis with code hash {entry.code_hash} "
                    "but this node has no such contract"
                )
            local = code_hash(cls).hex()
            if local != entry.code_hash:
                raise CodeMismatch(
                    f"contract {name!r}: genesis registers code hash {entry.code_hash}, "
                    f"this node's code hashes to {local}; refusing to start"
                )
            if check_code:
                check_contract(cls)  # before anything of it runs, here or anywhere
            run_cls = restricted_class(cls)
            instance = run_cls(genesis)
            self._contracts[name] = instance
            for mname, spec in run_cls.methods.items():
                self._specs[(name, mname)] = (instance, spec)
            self._code[(name, bytes.fromhex(entry.code_hash))] = instance
        offered = [(cls, False) for cls in contracts.values()] + [(c, True) for c in installed]
        for cls, named in offered:
            if not CONTRACT_NAME.fullmatch(cls.name or ""):
                raise GenesisError(f"contract name {cls.name!r} must match [a-z0-9_]{{1,64}}")
            key = (cls.name, code_hash(cls))
            if key in self._code:
                continue
            if check_code:
                check_contract(cls)  # installed code is refused here, not when it first runs
            try:
                self._code[key] = restricted_class(cls)(genesis)
            except Exception as e:
                if named:  # the operator asked for it: say why it cannot be offered
                    raise GenesisError(
                        f"contract {cls.name!r} cannot be set up on this genesis: "
                        f"{type(e).__name__}: {e}"
                    ) from None
                # A built-in this chain's genesis has no section for: governance can still
                # register other code under its name, never this class.
                log.debug("contract %s not offered: %s", cls.name, e)
        self._governed = GOVERNANCE in self._contracts
        # The instance of this release's own token code, wherever a registry puts it in
        # force: only its transfers take the fast path (other code under the name never).
        # The (name, code hash) key alone does not prove that: the hash covers the source
        # file a class's ``__module__`` names, which a class defined anywhere else can claim.
        # So the instance must also be of this very class (restricted_class subclasses it).
        fast = self._code.get((Token.name, code_hash(Token))) if fast_paths else None
        self._fast_token: Contract | None = (
            fast if fast is not None and type(fast).__bases__ == (Token,) else None
        )
        self._registries: dict[bytes, Registry] = {}
        self._registry_lock = threading.Lock()
        self._params: dict[bytes, ConsensusParams] = {}
        self._genesis_values: dict[str, Value] | None = None
        self._circuits_checked: bytes | None = None  # the circuit entry last found complete

    # --- lookups -------------------------------------------------------------------------

    @property
    def contract_names(self) -> list[str]:
        return sorted(self._contracts)

    def resolve(
        self, contract: str, method: str, registry: Registry | None = None
    ) -> tuple[Contract, MethodSpec]:
        """The callable method, or UnknownContract / UnknownMethod; with ``registry`` (what
        a height runs, :meth:`registry_at`) among its contracts, else among genesis's."""
        specs = self._specs if registry is None else registry.specs
        found = specs.get((contract, method))
        if found is None:
            names = self._contracts if registry is None else registry.names
            if contract not in names:
                if registry is not None and contract in registry.retired:
                    raise UnknownContract(f"contract {contract!r} was retired by governance")
                raise UnknownContract(f"no contract {contract!r} on this chain")
            raise UnknownMethod(f"contract {contract!r} has no callable method {method!r}")
        return found

    # --- contracts deployed after genesis --------------------------------------------------

    def _scheduled_entries(
        self, state: StateReader, kind: str = "contracts"
    ) -> Iterator[tuple[int, bytes]]:
        """Governance's changes of ``kind`` (see :mod:`accord.contracts.governance`), newest
        first: (index, raw entry)."""
        raw = state.get_state(state_key(GOVERNANCE, f"s/{kind}/n"))
        k = 0 if raw is None else int(encoding.decode_stored(raw))
        while k > 0:
            k -= 1
            entry = state.get_state(state_key(GOVERNANCE, f"s/{kind}/{k}"))
            if entry is not None:
                yield k, entry

    # --- consensus parameters governance changed -------------------------------------------

    def consensus_at(self, state: StateReader, height: int) -> ConsensusParams:
        """The consensus parameters the block at ``height`` is built and judged with, on
        ``state`` (its parent's, or any later one: a change passing in block h is in force
        from h + 2 at the earliest, so the answer is final for heights up to the head + 2).
        Genesis's while governance has changed nothing, or on a chain without it.

        This is a block rule (max_block_txs, max_block_bytes, max_block_gas, the time
        tolerance): every validator reads it from the same committed state, so all judge a
        block at ``height`` by the same limits."""
        if self._governed:
            for _, raw in self._scheduled_entries(state, "consensus"):
                at, value, _pid = encoding.decode_stored(raw)
                if at <= height:
                    return self._params_of(raw, value)
        return self.genesis.consensus

    def round_anchor(self, state: StateReader, height: int) -> int:
        """The time rounds of the block at ``height`` are counted from: round r starts at
        ``round_anchor + r * round_ms`` (``round_ms`` in force there). Genesis time until
        governance changes ``round_ms``.

        Votes are monotone in the round number across heights (rule 3 of
        :mod:`accord.consensus.state`), so rounds must never be numbered back: counted from
        genesis time, longer rounds would number today's round below the ones just voted
        in, and no validator could vote again for as long as the chain had run. So when
        ``round_ms`` changes at height a, block a - 1 (of round r, on the old schedule)
        fixes the new anchor: round r + ROUND_GAP starts when it did on the old schedule and
        rounds go on from there at the new length. Written into state by the execution of
        block a - 1 (:meth:`round_writes`): the same for every validator, a restarted node,
        one that caught up or installed a snapshot (no header of the past is needed)."""
        raw = state.get_state(ROUNDS_KEY)
        if raw is not None:
            for at, anchor in reversed(encoding.decode_stored(raw)):
                if at <= height:
                    return int(anchor)
        return self.genesis.genesis_time_ms

    def round_writes(
        self, state: StateReader, height: int, round: int
    ) -> dict[bytes, bytes | None]:
        """The state write that moves the round schedule when ``round_ms`` changes right after
        the block at ``height`` (of ``round``), on its parent's ``state``; empty otherwise (see
        :meth:`round_anchor`). Both heights' parameters are final on that state."""
        if not self._governed:
            return {}
        old = self.consensus_at(state, height).round_ms
        new = self.consensus_at(state, height + 1).round_ms
        if old == new:
            return {}
        raw = state.get_state(ROUNDS_KEY)
        moves: list[Value] = [] if raw is None else list(encoding.decode_stored(raw))
        moves.append([height + 1, moved_anchor(self.round_anchor(state, height), old, new, round)])
        return {ROUNDS_KEY: encoding.encode(moves)}

    def _params_of(self, raw: bytes, value: Mapping[str, Any]) -> ConsensusParams:
        # Built once per entry (its bytes are the key: an entry never changes once committed).
        with self._registry_lock:
            found = self._params.get(raw)
        if found is not None:
            return found
        params = self.genesis.consensus.changed(value)
        with self._registry_lock:
            if len(self._params) >= REGISTRY_CACHE:
                self._params.clear()
            self._params[raw] = params
        return params

    def registry_at(self, state: StateReader, height: int) -> Registry | None:
        """The contracts the block at ``height`` runs, on ``state`` (its parent's); None
        while governance has changed nothing (genesis's). Raises :class:`CodeMissing` when
        one of them is code this node lacks."""
        if not self._governed:
            return None
        for _, raw in self._scheduled_entries(state):
            at, value, _pid = encoding.decode_stored(raw)
            if at <= height:
                return self._registry(raw, int(at), value)
        return None

    def _registry(self, raw: bytes, at: int, value: Mapping[str, Any]) -> Registry:
        # An entry never changes once committed (BFT blocks are final), so its registry is
        # built once; the key is the entry's bytes, not its index, so a store replaced by a
        # state-sync snapshot can never hit another chain's entry.
        with self._registry_lock:
            found = self._registries.get(raw)
        if found is not None:
            return found
        specs: dict[tuple[str, str], tuple[Contract, MethodSpec]] = {}
        names: list[str] = []
        retired: list[str] = []
        for name in sorted(value):
            entry = value[name]
            if entry["status"] != "active":
                retired.append(name)
                continue
            instance = self._code.get((name, entry["code_hash"]))
            if instance is None:
                raise CodeMissing(name, entry["code_hash"], at)
            names.append(name)
            for mname, spec in type(instance).methods.items():
                specs[(name, mname)] = (instance, spec)
        reg = Registry(specs, frozenset(names), frozenset(retired))
        with self._registry_lock:
            if len(self._registries) >= REGISTRY_CACHE:
                self._registries.clear()
            self._registries[raw] = reg
        return reg

    def contract_names_at(self, state: StateReader, height: int) -> frozenset[str]:
        """Every contract name the block at ``height`` knows: active or retired (a retired
        contract's state stays readable), whether or not this node has its code."""
        if self._governed:
            for _, raw in self._scheduled_entries(state):
                at, value, _pid = encoding.decode_stored(raw)
                if at <= height:
                    return frozenset(value)
        return frozenset(self._contracts)

    def missing_code(self, state: StateReader) -> list[CodeMissing]:
        """Contract code governance has scheduled (in force or still to come) that this
        node lacks, one per (contract, hash): for a warning while there is time to install."""
        out: list[CodeMissing] = []
        seen: set[tuple[str, bytes]] = set()
        if not self._governed:
            return out
        for _, raw in self._scheduled_entries(state):
            at, value, _pid = encoding.decode_stored(raw)
            for name in sorted(value):
                entry = value[name]
                key = (name, entry["code_hash"])
                if entry["status"] == "active" and key not in self._code and key not in seen:
                    seen.add(key)
                    out.append(CodeMissing(name, entry["code_hash"], int(at)))
            break  # the newest entry holds every contract of the registry
        return out

    # --- what governance has in force --------------------------------------------------

    def genesis_values(self) -> dict[str, Value]:
        """What each governed kind is before any change (:func:`genesis_schedule`)."""
        if self._genesis_values is None:
            self._genesis_values = genesis_schedule(self.genesis)
        return self._genesis_values

    def _entries(
        self, read: Callable[[bytes], bytes | None], kind: str
    ) -> Iterator[tuple[int, Any, bytes]]:
        """Governance's scheduled changes of ``kind``, newest first: (activation height,
        value, the entry's stored bytes)."""
        if not self._governed:
            return
        raw = read(state_key(GOVERNANCE, f"s/{kind}/n"))
        k = 0 if raw is None else int(encoding.decode_stored(raw))
        while k > 0:
            k -= 1
            entry = read(state_key(GOVERNANCE, f"s/{kind}/{k}"))
            if entry is not None:
                at, value, _pid = encoding.decode_stored(entry)
                yield int(at), value, entry

    def in_force(self, read: Callable[[bytes], bytes | None], kind: str, height: int) -> Value:
        """The value of governed ``kind`` in force at ``height``, reading state with ``read``
        (the governance contract's schedule; genesis's value before any change)."""
        for at, value, _ in self._entries(read, kind):
            if at <= height:
                return value  # decoded afresh: the caller may change it
        # A copy: contract code must not be able to change what later calls (or other
        # transactions) read, which would make a node's results depend on its history.
        return copy.deepcopy(self.genesis_values()[kind])

    def _missing_circuits(
        self, circuits: Mapping[str, Any], height: int
    ) -> Iterator[CircuitMissing]:
        verifier = self.proof_verifier
        files: Mapping[str, tuple[str, bytes]] = getattr(verifier, "files", {})
        for name in sorted(circuits):
            h = circuits[name]["vk_hash"]
            if verifier is None or not verifier.has(h):
                yield CircuitMissing(name, h, height, files.get(name))

    def check_circuits(self, state: StateReader, height: int) -> None:
        """Raise :class:`CircuitMissing` when a verification key in force at ``height`` is
        one this node does not hold (genesis's keys are held by construction)."""
        for at, value, raw in self._entries(state.get_state, "circuits"):
            if at <= height:
                if raw != self._circuits_checked:
                    for missing in self._missing_circuits(value, at):
                        raise missing
                    self._circuits_checked = raw
                return

    def missing_circuits(self, state: StateReader) -> list[CodeMissing]:
        """Verification keys governance has scheduled (in force or still to come) that this
        node lacks: for a warning while there is time to provide them."""
        for at, value, _ in self._entries(state.get_state, "circuits"):
            return list(self._missing_circuits(value, at))  # the newest holds them all
        return []

    def nonce_of(self, state: StateReader, address: bytes) -> int:
        """The next nonce ``address`` must use, as of ``state``."""
        raw = state.get_state(NONCE_PREFIX + address)
        return 0 if raw is None else int(encoding.decode_stored(raw))

    # --- genesis -------------------------------------------------------------------------

    def genesis_writes(self) -> dict[bytes, bytes | None]:
        """The initial state: every enabled contract's ``genesis_state``, in a fixed order."""
        writes: dict[bytes, bytes | None] = {}
        for name in sorted(self._contracts):
            prefix = contract_prefix(name)
            for key, value in self._contracts[name].genesis_state().items():
                writes[prefix + user_key(key)] = encoding.encode(value)
        return writes

    # --- blocks --------------------------------------------------------------------------

    @staticmethod
    def _sender(tx: Tx, index: int) -> bytes:
        try:
            return tx.sender
        except ValidationError:  # a malformed key: only possible for a Tx built in-process
            raise InvalidBlock(f"transaction {index} has a malformed public key", index) from None

    def _check_tx(self, tx: Tx, index: int, expected: int, verified: Container[bytes]) -> None:
        if tx.chain_id != self.chain_id:
            raise InvalidBlock(
                f"transaction {index} is for chain {tx.chain_id!r}, not {self.chain_id!r}", index
            )
        if tx.nonce != expected:
            what = "replays" if tx.nonce < expected else "skips"
            raise InvalidBlock(
                f"transaction {index} {what} a nonce: {tx.nonce}, the sender's next is {expected}",
                index,
            )
        try:
            tx_hash = tx.hash
        except DecodeError:  # only possible for a Tx built in-process, never for a decoded one
            raise InvalidBlock(f"transaction {index} has no canonical encoding", index) from None
        if tx_hash not in verified:
            try:
                tx.verify_signature()
            except InvalidSignature:
                raise InvalidBlock(f"transaction {index} has an invalid signature", index) from None

    def check_block(
        self, state: StateReader, txs: Sequence[Tx], *, verified: Container[bytes] = ()
    ) -> None:
        """The block-validity rules alone (chain, nonce sequence, signatures), no execution.

        Raises :class:`InvalidBlock` with the index of the first offending transaction.
        """
        nonces: dict[bytes, int] = {}
        for i, tx in enumerate(txs):
            sender = self._sender(tx, i)
            expected = nonces.get(sender)
            if expected is None:
                expected = self.nonce_of(state, sender)
            self._check_tx(tx, i, expected, verified)
            nonces[sender] = expected + 1

    def execute_block(
        self,
        state: StateReader,
        txs: Sequence[Tx],
        *,
        height: int,
        time_ms: int,
        verified: Container[bytes] = (),
        interrupt: Callable[[], bool] | None = None,
        max_gas: int | None = None,
        gas_budget: int | None = None,
    ) -> BlockResult:
        """Execute ``txs`` in order on ``state``; return receipts and the merged writes.

        ``max_gas`` is the block gas limit, a consensus rule: a block whose receipts use more
        gas in total is invalid (:class:`InvalidBlock` at the transaction that passes it, so
        a validator stops executing a too-heavy proposal there instead of running it all).
        ``gas_budget`` is for building: execution stops *before* the first transaction that
        would take the total past it, and the result covers only the prefix that ran (the
        proposer cuts its block there). The first transaction always runs, so a block can
        always be built from a transaction that fits ``max_gas`` alone, whatever the budget.

        ``interrupt`` (optional) is called every ``INTERRUPT_EVERY`` transactions; when it
        returns true, :class:`ExecutionInterrupted` is raised. Results never depend on it:
        a block either executes completely or not at all."""
        block: dict[bytes, bytes | None] = {}
        receipts: list[Receipt] = []
        senders: dict[bytes, bytes] = {}
        registry = self.registry_at(state, height)  # CodeMissing: this node must stop here
        self.check_circuits(state, height)  # CircuitMissing: so must it here
        get_state = state.get_state
        pack = encoding.encode_shaped
        gas = 0
        for i, tx in enumerate(txs):
            if interrupt is not None and i % INTERRUPT_EVERY == 0 and i and interrupt():
                raise ExecutionInterrupted(f"stopped after {i} of {len(txs)} transactions")
            pk = tx.public_key
            sender = senders.get(pk)
            if sender is None:
                sender = senders[pk] = self._sender(tx, i)
            nk = NONCE_PREFIX + sender
            raw = block.get(nk, _MISSING)
            if raw is _MISSING:
                raw = get_state(nk)
            expected = 0 if raw is None else encoding.decode_stored(raw)
            self._check_tx(tx, i, expected, verified)
            receipt, writes = self._run(state, block, tx, sender, height, time_ms, registry)
            total = gas + receipt.gas_used
            if gas_budget is not None and total > gas_budget and i:
                break  # cut here: nothing of this transaction was merged into ``block``
            if max_gas is not None and total > max_gas:
                raise InvalidBlock(
                    f"transaction {i} takes the block's gas to {total}, past the limit of {max_gas}",
                    i,
                )
            gas = total
            if writes:
                block.update(writes)
            block[nk] = pack(expected + 1)
            receipts.append(receipt)
        return BlockResult(receipts, block, gas)

    def _run(
        self,
        state: StateReader,
        block: dict[bytes, bytes | None],
        tx: Tx,
        sender: bytes,
        height: int,
        time_ms: int,
        registry: Registry | None = None,
    ) -> tuple[Receipt, dict[bytes, bytes | None] | None]:
        """Run one transaction's call; return its receipt and (on success) its writes."""
        tx_hash = tx.hash
        limit = tx.gas_limit
        intrinsic = GAS.tx_base + GAS.tx_byte * len(tx.encode())
        if intrinsic > limit:
            return Receipt(
                tx_hash,
                False,
                limit,
                None,
                OutOfGas.code,
                f"gas limit {limit} is below the intrinsic cost {intrinsic}",
            ), None
        if (tx.method == "transfer" or tx.method == "remit") and self._fast_token is not None:
            # This release's own token code: the fast path gives the same bytes, or None
            # and the generic path below decides (accord.contracts.fastpath).
            found = (self._specs if registry is None else registry.specs).get(
                (tx.contract, tx.method)
            )
            if found is not None and found[0] is self._fast_token:
                fast = fastpath.token_transfer(
                    state.get_state,
                    block,
                    contract_prefix(tx.contract),
                    tx.contract,
                    sender,
                    tx.args,
                    tx_hash,
                    intrinsic,
                    limit,
                    remit=tx.method == "remit",
                )
                if fast is not None:
                    return fast
        ctx = Context(
            self,
            state,
            block,
            sender=sender,
            height=height,
            time_ms=time_ms,
            tx_hash=tx_hash,
            contract=tx.contract,
            gas_limit=limit,
            gas_used=intrinsic,
            registry=registry,
        )
        try:
            instance, spec = self.resolve(tx.contract, tx.method, registry)
            args = tx.args
            spec.check(args)
            ctx._readonly = spec.readonly
            token = meter.running(ctx)  # the contract's loops and calls charge this ctx
            try:
                result = spec.fn(instance, ctx, **args)
            finally:
                meter.CURRENT.reset(token)
            if ctx.out_of_gas:  # a contract caught OutOfGas and carried on: still a failure
                raise OutOfGas(f"out of gas: the limit is {limit}")
            if result is not None:
                result = encoding.canonical(result)
        except AccordError as e:
            return self._failed(tx_hash, ctx, e), None
        except MemoryError:
            raise  # a local resource failure, not a property of the transaction
        except Exception as e:
            # Contract bug. Record only the exception type: Python's messages are not stable
            # across versions and can contain memory addresses (receipts are hashed).
            log.debug("contract %s.%s raised", tx.contract, tx.method, exc_info=True)
            err = ContractError(f"{tx.contract}.{tx.method} raised {type(e).__name__}")
            return self._failed(tx_hash, ctx, err), None
        if ctx.read_failure is not None:  # the contract caught it and carried on
            raise ctx.read_failure from None
        # Canonical shapes throughout (result canonicalised above, event data by emit).
        return Receipt.canonical(
            tx_hash, True, ctx._gas, result, "", "", tuple(ctx._events)
        ), ctx._writes

    @staticmethod
    def _failed(tx_hash: bytes, ctx: Context, err: AccordError) -> Receipt:
        """The receipt of a failed call; raises instead when this node's state reader failed
        during it (:attr:`Context.read_failure`): a receipt saying so would be this node's
        alone, a fork (and the fast path, which reads the same keys, raises it too)."""
        if ctx.read_failure is not None:
            raise ctx.read_failure from None
        if ctx.out_of_gas and not isinstance(err, OutOfGas):
            err = OutOfGas(f"out of gas: the limit is {ctx._gas_limit}")
        return Receipt(tx_hash, False, ctx._gas, None, err.code, err.message[:4096])

    # --- queries -------------------------------------------------------------------------

    def query(
        self,
        state: StateReader,
        contract: str,
        method: str,
        args: dict[str, Value],
        *,
        sender: bytes = bytes(20),
        height: int = 0,
        time_ms: int = 0,
    ) -> Value:
        """Run a readonly method on ``state`` and return its result (errors propagate)."""
        registry = self.registry_at(state, height)
        instance, spec = self.resolve(contract, method, registry)
        if not spec.readonly:
            raise UnknownMethod(f"{contract}.{method} is not a readonly method; send a transaction")
        spec.check(args)
        ctx = Context(
            self,
            state,
            {},
            sender=sender,
            height=height,
            time_ms=time_ms,
            tx_hash=bytes(32),
            contract=contract,
            gas_limit=QUERY_GAS,
            readonly=True,
            registry=registry,
        )
        token = meter.running(ctx)
        try:
            result = spec.fn(instance, ctx, **args)
        finally:
            meter.CURRENT.reset(token)
        if ctx.read_failure is not None:  # a damaged store's value must not become an answer
            raise ctx.read_failure from None
        return None if result is None else encoding.canonical(result)
