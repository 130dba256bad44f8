"""An in-process chain for contract authors: test a contract the way validators will run it.

:class:`Sandbox` builds a genesis that registers your contract classes (by code hash, as a
real consortium's genesis does), one :class:`~accord.ledger.chain.Chain` per validator on its
own LMDB store in a temporary folder, and accounts with deterministic keys and token
balances. Calls are signed transactions; each block is built by one validator, re-executed
by every other validator, certified with their real BLS votes and committed everywhere. What
a contract does in a sandbox is therefore what it does on a network: the same runtime, the
same gas, the same determinism check at registration, the same restricted builtins, and (with
``validators > 1``) the same refusal when validators compute different results.

A test in a few lines::

    from accord.testing import Sandbox

    def test_deposit():
        with Sandbox([Escrow], accounts={"alice": 100}) as sb:
            r = sb.call("alice", "escrow", "deposit", amount=10)
            assert r.ok and sb.query("escrow", "held", who=sb.address("alice")) == 10

What it is not: no networking, no Gosig rounds, no mempool admission; blocks come when you
call :meth:`Sandbox.advance` (or :meth:`Sandbox.call`), with a block time you choose. Keys are
derived from public names: a sandbox's keys are for tests only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.encoding import Value, decode_stored
from accord.base.errors import AccordError, ValidationError
from accord.base.genesis import (
    ConsensusParams,
    ContractEntry,
    Genesis,
    GovernanceParams,
    TokenGenesis,
    ValidatorInfo,
)
from accord.base.types import Block, Certificate, Event, Receipt, Tx, bitmap_from, vote_message
from accord.contracts.base import Contract, state_key
from accord.contracts.determinism import check_contract, check_module_source
from accord.contracts.runtime import Runtime, code_hash
from accord.ledger.application import InvalidProposal
from accord.ledger.chain import Chain
from accord.storage import Store

DEFAULT_BALANCE = 10**9
DEFAULT_GAS_LIMIT = 1_000_000
PHASE_COMMIT = 2
KEY_DOMAIN = "accord.testing/"
"""Prefix of the public names sandbox keys derive from (distinct from the devnet's demo keys)."""


class Disagreement(AccordError):
    """Validators of one sandbox computed different results for the same block: on a
    network, no quorum would vote for it. The message names the validator and what it saw."""

    code = "disagreement"


class NotIncluded(AccordError):
    """A submitted transaction was left out of its block (the chain refused it as a whole:
    wrong nonce, bad signature, or a gas limit above the block's)."""

    code = "not_included"


@dataclass(frozen=True, slots=True)
class Account:
    """A named test account: its signing key and 20-byte address."""

    name: str
    key: AccountKey

    @property
    def address(self) -> bytes:
        return self.key.address


def account_key(name: str) -> AccountKey:
    """The sandbox key of account ``name`` (the same in every sandbox and every run)."""
    return AccountKey.from_name(KEY_DOMAIN + name)


def check(contract: type[Contract]) -> None:
    """The determinism check a validator runs when a contract is registered: raises
    :class:`~accord.contracts.determinism.NondeterministicContract` naming file, line and
    construct for each problem (see docs/determinism.md)."""
    check_contract(contract)


def check_source(source: str, filename: str = "<contract>", name: str = "contract") -> None:
    """The same check on a module's source text (the whole module is judged)."""
    check_module_source(source, filename, name)


class _Validator:
    __slots__ = ("name", "secret", "runtime", "chain", "member")

    def __init__(self, name: str, secret: bytes, member: AccountKey) -> None:
        self.name = name
        self.secret = secret
        self.member = member
        self.runtime: Runtime | None = None
        self.chain: Chain | None = None


class Sandbox:
    """A chain with ``contracts`` registered in genesis, for tests and examples.

    ``contracts``: your contract classes (each checked for determinism and registered by code
    hash). ``builtins``: names of built-in contracts to register too (``token`` holds the
    accounts' balances, ``governance`` lets the validators' members deploy and upgrade code by
    vote). ``installed``: classes the validators have installed but genesis does not run, for
    :meth:`deploy` / :meth:`upgrade` by governance. ``accounts``: names, or names to token
    balances (``authority`` is always there: it may mint). ``validators``: how many validators
    execute every block (each on its own store and runtime). ``block_ms``: block time step.
    ``consensus``: genesis consensus parameters (``max_block_gas``, ...). ``path``: where the
    stores go (default: a temporary folder removed by :meth:`close`).
    """

    def __init__(
        self,
        contracts: Sequence[type[Contract]] = (),
        *,
        accounts: Mapping[str, int] | Iterable[str] = ("alice", "bob"),
        builtins: Sequence[str] = ("token", "governance"),
        installed: Sequence[type[Contract]] = (),
        validators: int = 1,
        chain_id: str = "accord-sandbox",
        genesis_time_ms: int = 0,
        block_ms: int = 1000,
        consensus: Mapping[str, Any] | None = None,
        governance: GovernanceParams | None = None,
        path: str | Path | None = None,
    ) -> None:
        from accord.contracts import BUILTINS

        if not 1 <= validators <= 64:
            raise ValidationError("a sandbox has between 1 and 64 validators")
        if block_ms < 0:
            raise ValidationError("block_ms must not be negative")
        classes: dict[str, type[Contract]] = {}
        for name in builtins:
            if name not in BUILTINS:
                raise ValidationError(f"no built-in contract {name!r} (have {sorted(BUILTINS)})")
            classes[name] = BUILTINS[name]
        for cls in contracts:
            if not (isinstance(cls, type) and issubclass(cls, Contract)) or not cls.name:
                raise ValidationError(f"{cls!r} is not a contract class with a name")
            if cls.name in classes:
                raise ValidationError(f"two contracts are named {cls.name!r}")
            classes[cls.name] = cls
        _refuse_lookalikes([*classes.values(), *installed])

        balances = (
            dict(accounts)
            if isinstance(accounts, Mapping)
            else dict.fromkeys(accounts, DEFAULT_BALANCE)
        )
        balances.setdefault("authority", 0)
        self.accounts: dict[str, Account] = {n: Account(n, account_key(n)) for n in balances}
        self.block_ms = block_ms
        self._validators = [
            _Validator(
                f"validator-{i}",
                bls.demo_secret(f"{KEY_DOMAIN}{chain_id}/validator-{i}"),
                account_key(f"{chain_id}/member-{i}"),
            )
            for i in range(validators)
        ]
        token = None
        if "token" in classes:
            token = TokenGenesis(
                authority=self.accounts["authority"].address.hex(),
                balances={
                    a.address.hex(): balances[n] for n, a in self.accounts.items() if balances[n]
                },
            )
        self.genesis = Genesis(
            chain_id=chain_id,
            genesis_time_ms=genesis_time_ms,
            validators=[
                ValidatorInfo(
                    name=v.name,
                    bls_public_key=bls.public_key(v.secret).hex(),
                    pop=bls.pop_prove(v.secret).hex(),
                    account=v.member.address.hex(),
                )
                for v in self._validators
            ],
            consensus=ConsensusParams(**(consensus or {})),
            # code_hash first, then the determinism check inside Runtime: the order a node uses
            contracts=[
                ContractEntry(name=n, code_hash=code_hash(c).hex())
                for n, c in sorted(classes.items())
            ],
            token=token,
            governance=governance,
        )
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if path is None:
            shm = Path("/dev/shm")
            self._tmp = tempfile.TemporaryDirectory(
                prefix="accord-sandbox-", dir=str(shm) if shm.is_dir() else None
            )
            path = self._tmp.name
        self.path = Path(path)
        self._pending: list[Tx] = []
        self._nonces: dict[bytes, int] = {}
        try:
            for v in self._validators:
                # One runtime per validator, as on a network: nothing is shared between them
                # but the code itself.
                v.runtime = Runtime(self.genesis, classes, installed=list(installed))
                store = Store(self.path / v.name, map_size=1 << 28, sync=False)
                v.chain = Chain(self.genesis, store, v.runtime)
        except BaseException:
            self.close()
            raise

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the stores and remove the temporary folder (idempotent)."""
        for v in self._validators:
            if v.chain is not None:
                v.chain.store.close()
                v.chain = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- accounts --------------------------------------------------------------------------

    def account(self, name: str) -> Account:
        """The account ``name``; a name not given at construction gets a key (and no tokens)."""
        found = self.accounts.get(name)
        if found is None:
            found = self.accounts[name] = Account(name, account_key(name))
        return found

    def address(self, name: str) -> bytes:
        return self.account(name).address

    @property
    def members(self) -> list[Account]:
        """The governance members: one account per validator, in validator order."""
        return [Account(f"member-{i}", v.member) for i, v in enumerate(self._validators)]

    def balance(self, name: str | bytes) -> int:
        """Token balance of an account name or address."""
        address = name if isinstance(name, bytes) else self.address(name)
        return int(self.query("token", "balance_of", account=address))

    # --- chain -----------------------------------------------------------------------------

    @property
    def chain(self) -> Chain:
        """Validator 0's chain (every validator's holds the same blocks and state)."""
        return self._chain(0)

    def _chain(self, i: int) -> Chain:
        chain = self._validators[i].chain
        if chain is None:
            raise ValidationError("the sandbox is closed")
        return chain

    @property
    def height(self) -> int:
        return self.chain.head()[0]

    @property
    def time_ms(self) -> int:
        """The head block's time (what ``ctx.time_ms`` was in its transactions)."""
        return self.chain.head_header().time_ms

    def heads(self) -> list[tuple[int, bytes]]:
        """Every validator's (height, head hash): identical unless something is badly wrong."""
        return [self._chain(i).head() for i in range(len(self._validators))]

    # --- transactions ----------------------------------------------------------------------

    def sign(
        self,
        sender: str | Account | AccountKey,
        contract: str,
        method: str,
        *,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        nonce: int | None = None,
        **args: Value,
    ) -> Tx:
        """A signed transaction from ``sender`` with its next nonce (not submitted)."""
        key = self._key(sender)
        if nonce is None:
            nonce = self._nonces.get(key.address)
            if nonce is None:
                nonce = self.chain.nonce_of(key.address)
            self._nonces[key.address] = nonce + 1
        return Tx.create(
            key,
            chain_id=self.genesis.chain_id,
            contract=contract,
            method=method,
            args=dict(args),
            nonce=nonce,
            gas_limit=gas_limit,
        )

    def submit(
        self,
        sender: str | Account | AccountKey,
        contract: str,
        method: str,
        *,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        **args: Value,
    ) -> Tx:
        """Queue a signed call for the next block (see :meth:`advance`)."""
        return self.submit_tx(self.sign(sender, contract, method, gas_limit=gas_limit, **args))

    def submit_tx(self, tx: Tx) -> Tx:
        limit = self.chain.params_at(self.height + 1).max_block_gas  # governance may change it
        if tx.gas_limit > limit:
            raise ValidationError(f"gas limit {tx.gas_limit} is above the block's {limit}")
        self._pending.append(tx)
        return tx

    def call(
        self,
        sender: str | Account | AccountKey,
        contract: str,
        method: str,
        *,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        **args: Value,
    ) -> Receipt:
        """Submit one call and commit a block holding it (and anything queued before it);
        return its receipt (``ok``, ``result``, ``gas_used``, ``error_code``, ``error``,
        ``events``). A failed call is a receipt with ``ok=False``, not an exception."""
        tx = self.submit(sender, contract, method, gas_limit=gas_limit, **args)
        self.advance()
        return self.receipt(tx)

    def advance(self, blocks: int = 1, *, time_ms: int | None = None) -> list[Receipt]:
        """Commit ``blocks`` blocks; the first holds every queued transaction. Returns the
        receipts of the first block. ``time_ms`` sets the first block's time (never before
        its parent's); otherwise each block is ``block_ms`` after its parent."""
        if blocks < 1:
            raise ValidationError("advance commits at least one block")
        first: list[Receipt] = []
        for i in range(blocks):
            txs, self._pending = (self._pending, []) if i == 0 else ([], [])
            at = self.time_ms + self.block_ms if (time_ms is None or i) else time_ms
            receipts = self._block(txs, at)
            if i == 0:
                first = receipts
        return first

    def _block(self, txs: list[Tx], time_ms: int) -> list[Receipt]:
        n = len(self._validators)
        height = self.height + 1
        proposer = height % n
        try:
            block = self._chain(proposer).build(txs, proposer=proposer, time_ms=time_ms)
        except BaseException:
            self._nonces.clear()  # nothing was committed: nonces come from the chain again
            raise
        if len(block.txs) != len(txs):
            kept = {t.hash for t in block.txs}
            left = [t for t in txs if t.hash not in kept]
            self._nonces.clear()
            raise NotIncluded(
                f"{len(left)} transaction(s) left out of block {height}, first "
                f"{left[0].contract}.{left[0].method} with nonce {left[0].nonce} (a wrong "
                "nonce, a bad signature, or a chain id not this sandbox's); nothing was committed"
            )
        for i in range(n):
            if i == proposer:
                continue
            try:
                self._chain(i).validate(block)
            except InvalidProposal as e:
                self._nonces.clear()
                raise Disagreement(
                    f"validator-{i} refuses block {height} built by validator-{proposer}: "
                    f"{e.message}. On a network this block gets no quorum; the contract "
                    "computes different results on different validators"
                ) from None
        cert = self._certify(block)
        receipts = []
        for i in range(n):
            receipts = self._chain(i).commit(block, cert)
        return receipts

    def _certify(self, block: Block) -> Certificate:
        """Every validator's commit vote on ``block``, aggregated: the certificate a network
        would store (checked against genesis like one received from peers)."""
        from accord.consensus.aggregate import verify_certificate

        h = block.header
        msg = vote_message(h.chain_id, h.height, h.round, PHASE_COMMIT, block.hash)
        sig = bls.aggregate(bls.sign(v.secret, msg) for v in self._validators)
        cert = Certificate(
            h.height,
            h.round,
            PHASE_COMMIT,
            block.hash,
            bitmap_from(list(range(len(self._validators))), len(self._validators)),
            sig,
        )
        verify_certificate(self.genesis, h.chain_id, cert, self.genesis.quorum)
        return cert

    # --- reading ---------------------------------------------------------------------------

    def receipt(self, tx: Tx | bytes) -> Receipt:
        """The receipt of a committed transaction (by Tx or hash)."""
        tx_hash = tx.hash if isinstance(tx, Tx) else tx
        store = self.chain.store
        at = store.get_tx_location(tx_hash)
        if at is None:
            raise ValidationError(f"transaction {tx_hash.hex()[:16]} is not committed")
        return store.get_receipts(at[0])[at[1]]

    def query(self, contract: str, method: str, **args: Value) -> Any:
        """A readonly method on the head state (errors propagate as exceptions)."""
        return self.chain.query(contract, method, dict(args))

    def state(self, contract: str, key: str | bytes, default: Value = None) -> Any:
        """The raw value ``contract`` stored under ``key`` (what ``ctx.get(key)`` reads)."""
        raw = self.chain.store.get_state(state_key(contract, key))
        return default if raw is None else decode_stored(raw)

    @staticmethod
    def events(receipt: Receipt, name: str | None = None) -> list[Event]:
        """The receipt's events, optionally only those called ``name``."""
        return [e for e in receipt.events if name is None or e.name == name]

    # --- governance ------------------------------------------------------------------------

    def govern(self, action: dict[str, Value], *, activation: int | None = None) -> int:
        """Pass ``action`` by vote (member 0 proposes, the others approve up to the
        threshold) and advance to the height it takes effect at; return that height.
        Raises :class:`ValidationError` with the receipt's error when a step is refused."""
        members = self.members
        r = self.call(members[0].key, "governance", "propose", action=action, activation=activation)
        if not r.ok:
            raise ValidationError(f"proposal refused: {r.error}")
        pid = r.result
        assert isinstance(pid, bytes)
        status = self.query("governance", "proposal", proposal=pid)["status"]
        for m in members[1:]:
            if status == "passed":
                break
            r = self.call(m.key, "governance", "approve", proposal=pid)
            if not r.ok:
                raise ValidationError(f"approval refused: {r.error}")
            status = r.result
        if status != "passed":
            raise ValidationError(f"proposal did not pass: {status}")
        effective = int(self.query("governance", "proposal", proposal=pid)["effective"])
        if effective > self.height:
            self.advance(effective - self.height)
        return effective

    def deploy(self, contract: type[Contract]) -> int:
        """Register ``contract`` (one of ``installed``) by governance; returns the height
        its calls succeed from (the sandbox is advanced to it)."""
        return self.govern(
            {"kind": "register_contract", "name": contract.name, "code_hash": code_hash(contract)}
        )

    def upgrade(self, contract: type[Contract]) -> int:
        """Switch the contract of ``contract.name`` to this code (one of ``installed``) by
        governance, on the state the old code left."""
        return self.govern(
            {"kind": "upgrade_contract", "name": contract.name, "code_hash": code_hash(contract)}
        )

    def retire(self, name: str) -> int:
        return self.govern({"kind": "retire_contract", "name": name})

    def _key(self, sender: str | Account | AccountKey) -> AccountKey:
        if isinstance(sender, AccountKey):
            return sender
        if isinstance(sender, Account):
            return sender.key
        return self.account(sender).key


def _refuse_lookalikes(classes: Iterable[type[Contract]]) -> None:
    """Two releases of one contract that hash alike cannot be told apart by genesis or
    governance (a one-file contract's hash is its file's): say so instead of silently
    running one of them."""
    seen: dict[tuple[str, bytes], type[Contract]] = {}
    for cls in classes:
        key = (cls.name, code_hash(cls))
        other = seen.get(key)
        if other is not None and other is not cls:
            raise ValidationError(
                f"{other.__qualname__} and {cls.__qualname__} are both contract {cls.name!r} "
                "with the same code hash: the hash covers the module's file (and its "
                "package's helpers), so put each release in its own module"
            )
        seen[key] = cls


__all__ = [
    "Account",
    "Disagreement",
    "NotIncluded",
    "Sandbox",
    "account_key",
    "check",
    "check_source",
]
