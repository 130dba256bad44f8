"""The contract base class and the context every contract method runs in.

A contract is a Python class whose callable surface is declared: only methods marked with
:func:`method` can be reached by a transaction, a query or another contract, and each one
declares typed parameters that a call's arguments must match exactly. A contract instance holds
no ledger state of its own; everything persistent goes through the :class:`Context` (namespaced
keys, gas-metered reads and writes), so the same block executed on the same state gives the same
receipts and writes on every validator.

Rules for contract authors (what keeps execution deterministic; :mod:`accord.contracts.determinism`
refuses most breaches when a contract is registered, see docs/determinism.md):

* Reach state only through ``ctx``. Never read the clock (use ``ctx.time_ms``, the block time),
  randomness, environment, files or network; never keep mutable module or instance state
  between calls (validators restart at different times).
* No floats anywhere near state, events or results (the canonical encoding refuses them); use
  integers in the smallest unit.
* Never depend on ``set`` iteration order or ``hash()`` of str/bytes (randomised per process),
  nor ``id()``. ``dict`` order is insertion order and therefore fine when built deterministically.
* Errors: call ``ctx.require(cond, msg)`` (or raise an :class:`~accord.base.errors.AccordError`) with a
  message built only from the call's inputs and state. Any other exception also fails the
  transaction, but its receipt records only the exception's type name (Python's own messages
  may differ between versions and may hold memory addresses).
* Gas meters state access, events, calls and proof checks, not CPU: contracts are audited code
  registered in genesis, and must not loop without bound.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import (
    AccordError,
    BadArguments,
    OutOfGas,
    Revert,
    UnknownContract,
    UnknownMethod,
)
from accord.base.types import Event

if TYPE_CHECKING:
    from accord.base.genesis import Genesis
    from accord.contracts.runtime import Registry, Runtime

# --------------------------------------------------------------------------------------------
# Errors specific to the contract layer (kept here so that accord.base.errors stays small).


class HookUnavailable(AccordError):
    """A contract used a runtime hook (proof verifier, oracle) this node was not given."""

    code = "hook_unavailable"


class ProofVerifierUnavailable(HookUnavailable):
    code = "no_proof_verifier"


class OracleUnavailable(HookUnavailable):
    code = "no_oracle"


class ReadOnlyViolation(AccordError):
    """A readonly method (or a query) tried to change state or emit an event."""

    code = "readonly"


class BadStateKey(AccordError):
    code = "bad_state_key"


class ContractError(AccordError):
    """Contract code raised something other than an AccordError (a bug, not a revert)."""

    code = "contract_error"


# --------------------------------------------------------------------------------------------
# Gas schedule. Part of consensus: every validator must charge the same, so these are code
# constants (a change is a code change, caught by the genesis code hash of the runtime users).


@dataclass(frozen=True, slots=True)
class GasSchedule:
    tx_base: int = 2_000
    tx_byte: int = 5
    read_base: int = 100
    read_byte: int = 1
    write_base: int = 500
    write_byte: int = 5
    delete: int = 200
    event_base: int = 200
    event_byte: int = 2
    call: int = 500
    proof_base: int = 200_000
    proof_input: int = 1_000
    oracle_request: int = 50_000
    pop_check: int = 100_000


GAS = GasSchedule()

MAX_CALL_DEPTH = 8
MAX_USER_KEY = 256
MAX_EVENT_NAME = 64

# --------------------------------------------------------------------------------------------
# State keys.
#
#   contract state:  b"c/" + contract name + b"/" + tag + user key
#                    tag b"s" for a str key (UTF-8 bytes follow), b"b" for a bytes key,
#                    so a str key and a bytes key with the same bytes never collide.
#   account nonces:  b"n/" + 20-byte address
#
# Contract names are [a-z0-9_]+ (checked by the runtime) so that no name is a prefix of another
# name followed by "/", which keeps namespaces disjoint.

NONCE_PREFIX = b"n/"


@functools.lru_cache(maxsize=256)
def contract_prefix(name: str) -> bytes:
    return b"c/" + name.encode() + b"/"


def user_key(key: str | bytes) -> bytes:
    """The tagged bytes of a contract's own key (see the key layout above)."""
    t = type(key)
    if t is bytes:
        k = b"b" + key  # type: ignore[operator]
    elif t is str:
        k = b"s" + key.encode()  # type: ignore[union-attr]
    else:
        raise BadStateKey(f"state keys are str or bytes, not {t.__name__}")
    if len(k) > MAX_USER_KEY + 1:
        raise BadStateKey(f"state key longer than {MAX_USER_KEY} bytes")
    return k


def state_key(contract: str, key: str | bytes) -> bytes:
    """The storage key of ``key`` in ``contract``'s namespace."""
    return contract_prefix(contract) + user_key(key)


@functools.lru_cache(maxsize=256)
def contract_address(name: str) -> bytes:
    """The account address of a contract: first 20 bytes of SHA-256(b"contract/" + name).

    It is the ``sender`` a callee sees when the contract calls it through ``ctx.call`` (so a
    contract can hold tokens). No Ed25519 key hashes to it in practice, so no account can sign
    as a contract.
    """
    return hashlib.sha256(b"contract/" + name.encode()).digest()[:20]


# --------------------------------------------------------------------------------------------
# Declared methods.

_ALLOWED = (int, str, bytes, bool, list, dict)


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    fn: Callable[..., Any]
    params: tuple[tuple[str, type, bool], ...]  # (name, exact type, None allowed)
    readonly: bool

    def check(self, args: dict[str, Any]) -> None:
        """Raise BadArguments unless ``args`` has exactly the declared names and types."""
        params = self.params
        if len(args) != len(params):
            missing = [p[0] for p in params if p[0] not in args]
            extra = sorted(k for k in args if k not in {p[0] for p in params})
            raise BadArguments(_arg_problem(self.name, missing, extra))
        for pname, ptype, optional in params:
            try:
                v = args[pname]
            except KeyError:
                missing = [p[0] for p in params if p[0] not in args]
                extra = sorted(k for k in args if k not in {p[0] for p in params})
                raise BadArguments(_arg_problem(self.name, missing, extra)) from None
            # Exact type: bool is not an int here, and subclasses never pass.
            if type(v) is not ptype and not (optional and v is None):
                raise BadArguments(
                    f"{self.name}: argument {pname!r} must be {ptype.__name__}, got {type(v).__name__}"
                )


def _arg_problem(name: str, missing: list[str], extra: list[str]) -> str:
    parts = []
    if missing:
        parts.append("missing " + ", ".join(repr(m) for m in missing))
    if extra:
        parts.append("unexpected " + ", ".join(repr(e) for e in extra))
    return f"{name}: " + "; ".join(parts)


F = TypeVar("F", bound=Callable[..., Any])


def method(fn: F | None = None, *, readonly: bool = False) -> Any:
    """Mark a contract method as callable: ``@method`` or ``@method(readonly=True)``.

    The method's signature is ``(self, ctx, <typed params>)``; parameter annotations must be
    int, str, bytes, bool, list or dict (optionally ``| None``).
    """

    def mark(f: F) -> F:
        f.__accord_method__ = {"readonly": readonly}  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def _param_type(owner: str, pname: str, ann: Any) -> tuple[type, bool]:
    optional = False
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        members = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(members) != 1 or len(typing.get_args(ann)) != 2:
            raise TypeError(f"{owner}: parameter {pname!r} may only be `T | None`")
        ann, optional = members[0], True
    origin = typing.get_origin(ann)
    if origin is not None:  # list[int] -> list: element types are the method's business
        ann = origin
    if ann not in _ALLOWED:
        raise TypeError(f"{owner}: parameter {pname!r} has unsupported type {ann!r}")
    return ann, optional


def _build_spec(cls: type, name: str, fn: Callable[..., Any], readonly: bool) -> MethodSpec:
    owner = f"{cls.__name__}.{name}"
    hints = typing.get_type_hints(fn)  # resolves string annotations in fn's module
    sig = inspect.signature(fn)
    ps = list(sig.parameters.values())
    if len(ps) < 2 or ps[0].name != "self":
        raise TypeError(f"{owner}: a contract method takes (self, ctx, ...)")
    params = []
    for p in ps[2:]:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.default is not p.empty:
            raise TypeError(
                f"{owner}: parameter {p.name!r} must be a plain parameter without default"
            )
        if p.name not in hints:
            raise TypeError(f"{owner}: parameter {p.name!r} needs a type annotation")
        t, optional = _param_type(owner, p.name, hints[p.name])
        params.append((p.name, t, optional))
    return MethodSpec(name, fn, tuple(params), readonly)


class Contract:
    """Base of every contract. Subclasses set ``name`` and mark methods with :func:`method`.

    ``genesis_state`` returns the contract's initial state (its own keys -> values); the
    runtime writes it in the genesis block.
    """

    name: str = ""
    methods: dict[str, MethodSpec] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        specs: dict[str, MethodSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                mark = getattr(fn, "__accord_method__", None)
                if mark is not None and callable(fn):
                    if attr.startswith("_"):
                        raise TypeError(f"{cls.__name__}.{attr}: callable methods must be public")
                    specs[attr] = _build_spec(cls, attr, fn, mark["readonly"])
        cls.methods = specs

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis

    def genesis_state(self) -> dict[str | bytes, Value]:
        return {}


# --------------------------------------------------------------------------------------------
# Hooks given to the runtime.


class StateReader(Protocol):
    def get_state(self, key: bytes) -> bytes | None: ...


class ProofVerifier(Protocol):
    """``verify`` checks against the key ``vk_hash`` names (the runtime passes the one in
    force); ``has`` says whether this node holds that key (a validator that lacks one in force
    stops before executing: a refusal it computed alone would fork it off)."""

    def verify(
        self,
        circuit: str,
        proof: dict[str, Any] | bytes,
        public_inputs: list[int],
        vk_hash: bytes | None = None,
    ) -> bool: ...

    def has(self, vk_hash: bytes) -> bool: ...


class Oracle(Protocol):
    def request(
        self, ctx: Context, program: str, inputs: Value, reveal_to: list[bytes], callback: str
    ) -> Value: ...


class _MpcHandle:
    """What ``ctx.mpc`` returns: files oracle requests for the running contract."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def request(self, program: str, inputs: Value, reveal_to: list[bytes], callback: str) -> Value:
        ctx = self._ctx
        oracle = ctx._rt.oracle
        if oracle is None:
            raise OracleUnavailable("this node's runtime has no MPC oracle configured")
        if ctx._readonly:
            raise ReadOnlyViolation("a readonly call cannot file an oracle request")
        ctx.charge(GAS.oracle_request)
        return oracle.request(ctx, program, inputs, reveal_to, callback)


_MISSING: Any = object()
_unpack = encoding.decode_stored
_encode = encoding.encode
_packb = encoding.encode_shaped
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _is_scalar(v: Any) -> bool:
    """True for values whose canonical encoding is the plain one (encoding.encode_shaped) (the hot path)."""
    t = type(v)
    if t is int:
        return bool(_INT_MIN <= v <= _INT_MAX)
    return t is bytes or t is str or t is bool or v is None


def _encode_value(v: Value) -> bytes:
    """Canonical bytes of ``v``; scalars skip the general canonicaliser (same bytes)."""
    return _packb(v) if _is_scalar(v) else _encode(v)


class Context:
    """Everything a contract method may touch while it runs for one transaction.

    Writes go to a per-transaction buffer above the block's earlier writes; the runtime keeps
    or drops the buffer as a whole, which is what makes a failed transaction leave no trace.

    Who runs and who called (``sender``, ``origin``, ``contract``, ``address``, ``caller``,
    ``height``, ``time_ms``, ``tx_hash``) are read-only to contracts. This guards the API, not
    a sandbox: contracts are in-process Python, so one that reaches into underscored
    attributes or the runtime can do anything; genesis names every contract by code hash, and
    that code is what a consortium reviews.
    """

    __slots__ = (
        "_sender",
        "_origin",
        "_height",
        "_time_ms",
        "_tx_hash",
        "_contract",
        "_address",
        "_caller",
        "_rt",
        "_state",
        "_block",
        "_writes",
        "_events",
        "_gas",
        "_gas_limit",
        "_prefix",
        "_readonly",
        "_depth",
        "_registry",
        "out_of_gas",
        "read_failure",
    )

    def __init__(
        self,
        rt: Runtime,
        state: StateReader,
        block: dict[bytes, bytes | None],
        *,
        sender: bytes,
        height: int,
        time_ms: int,
        tx_hash: bytes,
        contract: str,
        gas_limit: int,
        gas_used: int = 0,
        readonly: bool = False,
        registry: Registry | None = None,
    ) -> None:
        self._sender = sender
        self._origin = sender
        self._height = height
        self._time_ms = time_ms
        self._tx_hash = tx_hash
        self._contract = contract
        self._address = contract_address(contract)
        self._caller: str | None = None
        self._rt = rt
        self._state = state
        self._block = block
        self._writes: dict[bytes, bytes | None] = {}
        self._events: list[Event] = []
        self._gas = gas_used
        self._gas_limit = gas_limit
        self._prefix = contract_prefix(contract)
        self._readonly = readonly
        self._depth = 0
        self._registry = registry  # the contracts this height runs (None: genesis's)
        self.out_of_gas = False
        # What this node's state reader raised, if it did (a closed snapshot, a damaged
        # store): a local failure, not a property of the transaction, so no receipt may
        # record it. Sticky like ``out_of_gas``: the runtime raises it again after the call
        # whatever the contract did with it (caught it, or let it fail the call).
        self.read_failure: Exception | None = None

    # --- who and when --------------------------------------------------------------------
    #
    # Read-only: a callee's ``sender`` is the caller's ``address`` and its ``caller`` the
    # caller's ``contract``, so a contract that could assign these would call the token as any
    # account or contract it names (its signer's tokens, the pool's, the oracle's answers to
    # ``mpc_loans``). Only ``call`` moves them, and restores them on return.

    @property
    def sender(self) -> bytes:
        """Who called the running method: the signing account, or the calling contract's address."""
        return self._sender

    @property
    def origin(self) -> bytes:
        """The account that signed the transaction (never a contract)."""
        return self._origin

    @property
    def height(self) -> int:
        return self._height

    @property
    def time_ms(self) -> int:
        return self._time_ms

    @property
    def tx_hash(self) -> bytes:
        return self._tx_hash

    @property
    def contract(self) -> str:
        """The running contract's name."""
        return self._contract

    @property
    def address(self) -> bytes:
        """The running contract's address (:func:`contract_address`)."""
        return self._address

    @property
    def caller(self) -> str | None:
        """Name of the calling contract, or None when an account called directly."""
        return self._caller

    @property
    def chain_id(self) -> str:
        """The chain's id (genesis): proofs and signatures that bind it cannot be replayed on
        another chain."""
        return str(self._rt.chain_id)

    # --- gas -----------------------------------------------------------------------------

    @property
    def gas_used(self) -> int:
        return self._gas

    @property
    def gas_left(self) -> int:
        return self._gas_limit - self._gas

    def charge(self, amount: int) -> None:
        """Spend gas; past the limit the transaction fails with OutOfGas (sticky: catching it
        does not help, the runtime fails the transaction anyway)."""
        g = self._gas + amount
        if g > self._gas_limit:
            self._gas = self._gas_limit
            self.out_of_gas = True
            raise OutOfGas(f"out of gas: the limit is {self._gas_limit}")
        self._gas = g

    # --- state ---------------------------------------------------------------------------

    def _raw(self, k: bytes) -> bytes | None:
        raw = self._writes.get(k, _MISSING)
        if raw is _MISSING:
            raw = self._block.get(k, _MISSING)
            if raw is _MISSING:
                try:
                    raw = self._state.get_state(k)
                except Exception as e:
                    self.read_failure = e
                    raise
        return raw

    def get(self, key: str | bytes, default: Value = None) -> Value:
        """The value stored under ``key`` in this contract's namespace, else ``default``."""
        raw = self._raw(self._prefix + user_key(key))
        if raw is None:
            self.charge(GAS.read_base)
            return default
        self.charge(GAS.read_base + GAS.read_byte * len(raw))
        # State bytes were written by this runtime as canonical encodings: a plain unpack is
        # enough (the strict decoder's re-encode check guards untrusted input only).
        return _unpack(raw)

    def has(self, key: str | bytes) -> bool:
        raw = self._raw(self._prefix + user_key(key))
        self.charge(GAS.read_base)
        return raw is not None

    def set(self, key: str | bytes, value: Value) -> None:
        if self._readonly:
            raise ReadOnlyViolation(f"{self.contract}: a readonly call cannot write state")
        k = self._prefix + user_key(key)
        data = _encode_value(value)
        self.charge(GAS.write_base + GAS.write_byte * (len(k) + len(data)))
        self._writes[k] = data

    def delete(self, key: str | bytes) -> None:
        if self._readonly:
            raise ReadOnlyViolation(f"{self.contract}: a readonly call cannot delete state")
        k = self._prefix + user_key(key)
        self.charge(GAS.delete)
        self._writes[k] = None

    # --- events and checks ---------------------------------------------------------------

    def emit(self, name: str, **data: Value) -> None:
        """Announce an event (kept only if the transaction succeeds)."""
        if self._readonly:
            raise ReadOnlyViolation(f"{self.contract}: a readonly call cannot emit events")
        if type(name) is not str or not 0 < len(name) <= MAX_EVENT_NAME:
            raise BadArguments(
                f"event names are non-empty str of at most {MAX_EVENT_NAME} characters"
            )
        if all(_is_scalar(v) for v in data.values()):
            # Scalars cannot be mutated later by the contract, and sorting str keys by code
            # point is sorting them by UTF-8 bytes: this is the canonical shape, so receipts
            # stay canonical without another walk.
            data = dict(sorted(data.items()))
            size = len(_packb(data))
        else:
            data = encoding.canonical(data)  # a private copy, sorted and checked
            size = len(_encode(data))
        self.charge(GAS.event_base + GAS.event_byte * size)
        self._events.append(Event(self.contract, name, data))

    @staticmethod
    def require(cond: object, msg: str = "requirement failed") -> None:
        """Revert the transaction with ``msg`` unless ``cond`` holds."""
        if not cond:
            raise Revert(msg)

    # --- calls and hooks -----------------------------------------------------------------

    def call(self, contract: str, method: str, **args: Value) -> Value:
        """Call another contract's method within this transaction.

        The callee sees this contract's address as ``sender`` and this contract's name as
        ``caller``. If the callee fails, its writes and events are undone before the error
        propagates (so a caller that catches it continues from a consistent state).
        """
        self.charge(GAS.call)
        if self._depth >= MAX_CALL_DEPTH:
            raise Revert(f"contract calls nested deeper than {MAX_CALL_DEPTH}")
        instance, spec = self._rt.resolve(contract, method, self._registry)
        spec.check(args)
        saved = (
            self._sender,
            self._contract,
            self._address,
            self._caller,
            self._prefix,
            self._readonly,
        )
        journal = dict(self._writes)
        n_events = len(self._events)
        self._sender = self._address
        self._caller = self._contract
        self._contract = contract
        self._address = contract_address(contract)
        self._prefix = contract_prefix(contract)
        self._readonly = self._readonly or spec.readonly
        self._depth += 1
        try:
            return spec.fn(instance, self, **args)
        except BaseException:
            self._writes = journal
            del self._events[n_events:]
            raise
        finally:
            self._depth -= 1
            (
                self._sender,
                self._contract,
                self._address,
                self._caller,
                self._prefix,
                self._readonly,
            ) = saved

    def in_force(self, kind: str) -> Value:
        """What governance has in force for ``kind`` (``circuits``, ``regulator``,
        ``mpc_servers``, ...; see :mod:`accord.contracts.governance`) at this block's height:
        genesis's value until a change activates. Reads are charged like :meth:`get`.

        Final for the block being run: a change needs at least two blocks between passing
        and activation, so nothing an earlier transaction of this block does moves it."""
        return self._rt.in_force(self._charged_read, kind, self._height)

    def _charged_read(self, key: bytes) -> bytes | None:
        raw = self._raw(key)
        self.charge(GAS.read_base + (0 if raw is None else GAS.read_byte * len(raw)))
        return raw

    def verify_proof(
        self, circuit: str, proof: dict[str, Any] | bytes, public_inputs: list[int]
    ) -> bool:
        """Check a zero-knowledge proof with the runtime's verifier (a pure function),
        against the verification key of ``circuit`` in force at this block's height (genesis's,
        or the one governance registered since); Revert for a circuit not registered."""
        verifier = self._rt.proof_verifier
        if verifier is None:
            raise ProofVerifierUnavailable("this node's runtime has no proof verifier configured")
        self.charge(GAS.proof_base + GAS.proof_input * len(public_inputs))
        entry = self.in_force("circuits").get(circuit)
        if entry is None:
            raise Revert(f"no circuit {circuit!r} is registered on this chain")
        return bool(verifier.verify(circuit, proof, public_inputs, vk_hash=entry["vk_hash"]))

    def verify_bls_pop(self, public_key: bytes, pop: bytes) -> bool:
        """Whether ``pop`` proves possession of the BLS ``public_key`` (a pure function: what
        governance checks before a key may join the validator set, against rogue keys)."""
        from accord.base.crypto import bls

        self.charge(GAS.pop_check)
        if type(public_key) is not bytes or type(pop) is not bytes:
            return False
        return bls.pop_verify(public_key, pop)

    @property
    def mpc(self) -> _MpcHandle:
        """Files oracle requests: ``ctx.mpc.request(program, inputs, reveal_to, callback)``."""
        if self._rt.oracle is None:
            raise OracleUnavailable("this node's runtime has no MPC oracle configured")
        return _MpcHandle(self)


__all__ = [
    "GAS",
    "BadStateKey",
    "Context",
    "Contract",
    "ContractError",
    "GasSchedule",
    "HookUnavailable",
    "MethodSpec",
    "Oracle",
    "OracleUnavailable",
    "ProofVerifier",
    "ProofVerifierUnavailable",
    "ReadOnlyViolation",
    "StateReader",
    "UnknownContract",
    "UnknownMethod",
    "contract_address",
    "contract_prefix",
    "method",
    "state_key",
    "user_key",
]
