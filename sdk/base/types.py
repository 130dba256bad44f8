"""The ledger's data types and their canonical forms.

Each type has ``to_obj()`` (its canonical value: a list of fields in a fixed order, so the
encoding is compact and field names never enter a hash) and ``from_obj()`` (strict: every
field is type- and size-checked, so a decoded object is a valid one). ``encode()``/``decode()``
go through :mod:`accord.base.encoding`. Hashes are SHA-256 of the canonical bytes.

These are plain frozen dataclasses rather than pydantic models: they sit on the hot path
(thousands per second through mempool, consensus and storage). pydantic models describe them
at the edges (HTTP API, genesis file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from accord.base import encoding
from accord.base.crypto import ed25519
from accord.base.encoding import Value
from accord.base.errors import DecodeError, InvalidSignature, ValidationError

HASH_SIZE = 32
MAX_TX_BYTES = 64 * 1024
MAX_NAME = 64

# Domain separation tags: a signature for one purpose can never be replayed as another.
TX_DOMAIN = "accord/tx/v1"
HEADER_DOMAIN = "accord/header/v2"  # v2: the body hash
BODY_DOMAIN = "accord/body/v1"
VOTE_DOMAIN = "accord/vote/v1"

_U64 = 2**64 - 1
# See Tx.signing_bytes: a fixarray header of 8 items, then the domain tag.
_LIST_OF_8 = encoding.array_header(8)  # both [domain, *body] and [*body, signature]
_TX_SIGNING_PREFIX = _LIST_OF_8 + encoding.encode(TX_DOMAIN)
_SIGNATURE_HEADER = encoding.encode(bytes(ed25519.SIGNATURE_SIZE))[:2]  # bin 8 of 64 bytes: c4 40
_SIGNATURE_ENCODING = len(_SIGNATURE_HEADER) + ed25519.SIGNATURE_SIZE


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise DecodeError(what)


def _bytes(v: Any, size: int | None, what: str) -> bytes:
    _expect(type(v) is bytes, f"{what} must be bytes")
    if size is not None:
        _expect(len(v) == size, f"{what} must have {size} bytes")
    return v


def _int(v: Any, what: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    _expect(type(v) is int, f"{what} must be an integer")
    _expect(lo <= v <= hi, f"{what} out of range")
    return v


def _str(v: Any, what: str, max_len: int = MAX_NAME) -> str:
    _expect(type(v) is str, f"{what} must be a string")
    _expect(len(v) <= max_len, f"{what} longer than {max_len}")
    return v


def _list(v: Any, n: int, what: str) -> list[Any]:
    _expect(type(v) is list, f"{what} must be a list")
    _expect(len(v) == n, f"{what} must have {n} fields")
    return v


@dataclass(frozen=True)
class Tx:
    """A signed call of one contract method by one account.

    ``nonce`` is the sender's transaction count: each account's transactions apply in nonce
    order exactly once, which stops replays. ``gas_limit`` caps what the call may cost.
    """

    chain_id: str
    contract: str
    method: str
    args: dict[str, Value]
    public_key: bytes
    nonce: int
    gas_limit: int
    signature: bytes = b""

    def body(self) -> list[Value]:
        return [
            self.chain_id,
            self.contract,
            self.method,
            self.args,
            self.public_key,
            self.nonce,
            self.gas_limit,
        ]

    def signing_bytes(self) -> bytes:
        """``encode([TX_DOMAIN, *body])``: the bytes the account signs.

        Both that list and the transaction's own ``[*body, signature]`` have eight items, so
        the signed bytes are the transaction's canonical bytes with the signature's encoding
        (``c4 40`` + 64 bytes) cut off the end and the domain's encoding put after the list
        header. Every validator checks every transaction's signature; taking the bytes it
        already holds saves walking the arguments again (a test compares both ways)."""
        enc = self.__dict__.get("_encoded")
        if enc is not None and len(self.signature) == ed25519.SIGNATURE_SIZE:
            return _TX_SIGNING_PREFIX + enc[1:-_SIGNATURE_ENCODING]
        return encoding.encode([TX_DOMAIN, *self.body()])

    def to_obj(self) -> list[Value]:
        return [*self.body(), self.signature]

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return encoding.encode(self.to_obj())

    @cached_property
    def hash(self) -> bytes:
        return encoding.sha256(self._encoded)

    @cached_property
    def sender(self) -> bytes:
        """The signer's address (a hash of the public key): cached, as every stage a
        transaction passes (admission, the mempool, block building, execution) asks for it."""
        return ed25519.address_of(self.public_key)

    @classmethod
    def from_obj(cls, obj: Any) -> Tx:
        # One pass of plain checks for the common, valid case (every transaction of every
        # gossip batch comes through here); anything it does not accept takes the field by
        # field path below, which raises the precise error.
        if type(obj) is list and len(obj) == 8:
            chain_id, contract, method, args, public_key, nonce, gas_limit, signature = obj
            if (
                type(chain_id) is str
                and len(chain_id) <= MAX_NAME
                and type(contract) is str
                and len(contract) <= MAX_NAME
                and type(method) is str
                and len(method) <= MAX_NAME
                and type(args) is dict
                and type(public_key) is bytes
                and len(public_key) == ed25519.PUBLIC_KEY_SIZE
                and type(nonce) is int
                and 0 <= nonce <= _U64
                and type(gas_limit) is int
                and 0 <= gas_limit <= _U64
                and type(signature) is bytes
                and len(signature) == ed25519.SIGNATURE_SIZE
            ):
                # one depth limit with the API's JSON view: nothing admitted is unreadable there
                encoding.check_value_depth(args)
                return cls(
                    chain_id, contract, method, args, public_key, nonce, gas_limit, signature
                )
        f = _list(obj, 8, "tx")
        args = f[3]
        _expect(type(args) is dict, "tx args must be a map")
        encoding.check_value_depth(args)
        return cls(
            chain_id=_str(f[0], "chain id"),
            contract=_str(f[1], "contract"),
            method=_str(f[2], "method"),
            args=args,
            public_key=_bytes(f[4], ed25519.PUBLIC_KEY_SIZE, "public key"),
            nonce=_int(f[5], "nonce"),
            gas_limit=_int(f[6], "gas limit"),
            signature=_bytes(f[7], ed25519.SIGNATURE_SIZE, "signature"),
        )

    @classmethod
    def decode(cls, data: bytes) -> Tx:
        tx = cls.from_obj(encoding.decode(data, max_size=MAX_TX_BYTES))
        # decode() proved these are the canonical bytes: keep them instead of re-encoding.
        tx.__dict__["_encoded"] = bytes(data)
        return tx

    def verify_signature(self) -> None:
        ed25519.verify(self.public_key, self.signing_bytes(), self.signature)

    def check(self, chain_id: str) -> None:
        """Stateless admission checks: size, chain, signature."""
        if len(self._encoded) > MAX_TX_BYTES:
            raise ValidationError(
                f"transaction of {len(self._encoded)} bytes exceeds {MAX_TX_BYTES}"
            )
        if self.chain_id != chain_id:
            from accord.base.errors import WrongChain

            raise WrongChain(f"transaction is for chain {self.chain_id!r}, this is {chain_id!r}")
        self.verify_signature()

    @classmethod
    def create(
        cls,
        key: ed25519.AccountKey,
        *,
        chain_id: str,
        contract: str,
        method: str,
        args: dict[str, Value],
        nonce: int,
        gas_limit: int = 1_000_000,
    ) -> Tx:
        """Build and sign a transaction (what applications and ``accord.Client`` call)."""
        public_key = key.public_key
        unsigned = cls(
            chain_id, contract, method, encoding.canonical(args), public_key, nonce, gas_limit
        )
        signed = unsigned.signing_bytes()
        signature = key.sign(signed)
        tx = cls(chain_id, contract, method, unsigned.args, public_key, nonce, gas_limit, signature)
        # The wire bytes are the signed bytes with the domain tag taken out and the signature
        # appended (see signing_bytes): no second walk over the arguments to submit it.
        tx.__dict__["_encoded"] = (
            _LIST_OF_8 + signed[len(_TX_SIGNING_PREFIX) :] + _SIGNATURE_HEADER + signature
        )
        return tx


@dataclass(frozen=True, slots=True)
class Event:
    """Something a contract announces; subscribers and indexers read these."""

    contract: str
    name: str
    data: dict[str, Value]

    def to_obj(self) -> list[Value]:
        return [self.contract, self.name, self.data]

    @classmethod
    def from_obj(cls, obj: Any) -> Event:
        f = _list(obj, 3, "event")
        _expect(type(f[2]) is dict, "event data must be a map")
        return cls(_str(f[0], "contract"), _str(f[1], "event name"), f[2])


@dataclass(frozen=True)
class Receipt:
    """What executing one transaction did. ``ok=False`` means every write was reverted."""

    tx_hash: bytes
    ok: bool
    gas_used: int
    result: Value = None
    error_code: str = ""
    error: str = ""
    events: tuple[Event, ...] = ()

    def to_obj(self) -> list[Value]:
        return [
            self.tx_hash,
            self.ok,
            self.gas_used,
            self.result,
            self.error_code,
            self.error,
            [e.to_obj() for e in self.events],
        ]

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        # Cached: a receipt is hashed for the tx root when its block is built and encoded
        # again when the block is committed.
        return encoding.encode(self.to_obj())

    @cached_property
    def hash(self) -> bytes:
        return encoding.sha256(self._encoded)

    @classmethod
    def canonical(
        cls,
        tx_hash: bytes,
        ok: bool,
        gas_used: int,
        result: Value = None,
        error_code: str = "",
        error: str = "",
        events: tuple[Event, ...] = (),
    ) -> Receipt:
        """A receipt whose fields the caller guarantees to be in canonical shape already:
        ``result`` from :func:`encoding.canonical`, event data built sorted (as
        ``Context.emit`` does), ``gas_used`` within 64 bits.

        The runtime builds one receipt per transaction and each is hashed for the block's tx
        root: trusting its own shapes skips the canonical walk of the general encoder (about
        three quarters of a receipt's encoding time). The bytes are the same either way (a
        test compares them); anything built from outside data goes through the constructor.
        """
        r = cls(tx_hash, ok, gas_used, result, error_code, error, events)
        r.__dict__["_encoded"] = encoding.encode_shaped(r.to_obj())
        return r

    @classmethod
    def from_obj(cls, obj: Any) -> Receipt:
        f = _list(obj, 7, "receipt")
        _expect(type(f[1]) is bool, "receipt ok must be a bool")
        _expect(type(f[6]) is list, "receipt events must be a list")
        return cls(
            _bytes(f[0], HASH_SIZE, "tx hash"),
            f[1],
            _int(f[2], "gas used"),
            f[3],
            _str(f[4], "error code"),
            _str(f[5], "error", 4096),
            tuple(Event.from_obj(e) for e in f[6]),
        )


def body_hash(txs: Sequence[Tx]) -> bytes:
    """What a header commits its transactions with: a hash over their hashes, in order.

    The header's ``tx_root`` covers (tx, receipt) pairs and so can only be checked by
    executing the block; without a commitment checkable on decoding, a peer could put other
    transactions under a genuine header (a block's hash is its header's), and a validator
    would learn it only by executing them: such a body would be found invalid, and the
    block with it, or applied under a certificate and fail. With it, every decoded block is
    the one its hash names."""
    return encoding.sha256(encoding.encode([BODY_DOMAIN, [tx.hash for tx in txs]]))


EMPTY_BODY_HASH = body_hash(())


@dataclass(frozen=True)
class Header:
    """What validators sign and light clients follow.

    ``state_root`` is the root of the authenticated state *after* this block's transactions;
    ``tx_root`` is a Merkle root over (tx hash, receipt hash) pairs, so one inclusion proof
    shows both that a transaction is in the block and what it did. ``sortition`` is the
    proposer's BLS sortition signature (empty for a single-validator chain).
    """

    chain_id: str
    height: int
    round: int
    parent_hash: bytes
    tx_root: bytes
    state_root: bytes
    tx_count: int
    proposer: int
    time_ms: int
    sortition: bytes = b""
    body_hash: bytes = EMPTY_BODY_HASH  # :func:`body_hash` of the block's transactions

    def to_obj(self) -> list[Value]:
        return [
            HEADER_DOMAIN,
            self.chain_id,
            self.height,
            self.round,
            self.parent_hash,
            self.tx_root,
            self.state_root,
            self.tx_count,
            self.proposer,
            self.time_ms,
            self.sortition,
            self.body_hash,
        ]

    def encode(self) -> bytes:
        return encoding.encode(self.to_obj())

    @cached_property
    def hash(self) -> bytes:
        return encoding.sha256(self.encode())

    @classmethod
    def from_obj(cls, obj: Any) -> Header:
        f = _list(obj, 12, "header")
        _expect(f[0] == HEADER_DOMAIN, "not a header")
        sortition = _bytes(f[10], None, "sortition")
        _expect(len(sortition) in (0, 96), "sortition must be empty or a 96-byte BLS signature")
        return cls(
            _str(f[1], "chain id"),
            _int(f[2], "height"),
            _int(f[3], "round"),
            _bytes(f[4], HASH_SIZE, "parent hash"),
            _bytes(f[5], HASH_SIZE, "tx root"),
            _bytes(f[6], HASH_SIZE, "state root"),
            _int(f[7], "tx count"),
            _int(f[8], "proposer"),
            _int(f[9], "time"),
            sortition,
            _bytes(f[11], HASH_SIZE, "body hash"),
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        return cls.from_obj(encoding.decode(data))


@dataclass(frozen=True, slots=True)
class Certificate:
    """2f+1 validators' aggregated commit votes on one block.

    ``signers`` is a bitmap over the genesis validator list (bit i of byte i // 8, least
    significant bit first); ``signature`` is the sum of their BLS signatures over
    :func:`vote_message` for (height, round, phase, block hash).
    """

    height: int
    round: int
    phase: int
    block_hash: bytes
    signers: bytes
    signature: bytes

    def to_obj(self) -> list[Value]:
        return [self.height, self.round, self.phase, self.block_hash, self.signers, self.signature]

    def encode(self) -> bytes:
        return encoding.encode(self.to_obj())

    @classmethod
    def from_obj(cls, obj: Any) -> Certificate:
        f = _list(obj, 6, "certificate")
        return cls(
            _int(f[0], "height"),
            _int(f[1], "round"),
            _int(f[2], "phase", 0, 3),
            _bytes(f[3], HASH_SIZE, "block hash"),
            _bytes(f[4], None, "signers"),
            _bytes(f[5], None, "signature"),
        )

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        return cls.from_obj(encoding.decode(data))

    def signer_indices(self, n: int) -> list[int]:
        """The validators (of ``n`` in genesis) whose votes the certificate carries.

        ``signers`` is a bitmap of ``ceil(n / 8)`` bytes, or in the weighted form that gossip
        mode stores, ``n`` little-endian 16-bit counts; either way a validator signed when its
        entry is non-zero. Shapes are checked (:func:`accord.consensus.certificate_counts` is the
        full check, with the signature). Pure Python so that clients need no numpy and no core.
        """
        s = self.signers
        if len(s) == 2 * n:
            return [i for i in range(n) if s[2 * i] or s[2 * i + 1]]
        if len(s) != (n + 7) // 8:
            raise ValidationError("certificate signer field has the wrong size")
        idx = bitmap_indices(s)
        if idx and idx[-1] >= n:
            raise ValidationError("certificate names a validator that does not exist")
        return idx


def bitmap_indices(bitmap: bytes) -> list[int]:
    return [i * 8 + b for i, byte in enumerate(bitmap) if byte for b in range(8) if byte >> b & 1]


def bitmap_from(indices: list[int] | set[int], n: int) -> bytes:
    out = bytearray((n + 7) // 8)
    for i in indices:
        if not 0 <= i < n:
            raise ValidationError(f"validator index {i} outside 0..{n - 1}")
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def vote_message(chain_id: str, height: int, round: int, phase: int, block_hash: bytes) -> bytes:
    """The bytes a validator signs to vote (phase 1 = P, 2 = C)."""
    return encoding.encode([VOTE_DOMAIN, chain_id, height, round, phase, block_hash])


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    txs: tuple[Tx, ...] = field(default_factory=tuple)
    # The canonical bytes once computed (the block is immutable): a lock persists its block on
    # every vote, and walking thousands of transactions each time cost ~20 ms per persist.
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    def to_obj(self) -> list[Value]:
        return [self.header.to_obj(), [tx.to_obj() for tx in self.txs]]

    def encode(self) -> bytes:
        # The same bytes as encoding.encode(self.to_obj()), from the transactions' cached
        # encodings: a list encodes as its header followed by its items' encodings.
        enc = self._encoded
        if enc is None:
            enc = (
                b"\x92"
                + self.header.encode()
                + encoding.encode_encoded_list([tx.encode() for tx in self.txs])
            )
            object.__setattr__(self, "_encoded", enc)
        return enc

    @classmethod
    def from_obj(cls, obj: Any) -> Block:
        f = _list(obj, 2, "block")
        _expect(type(f[1]) is list, "block txs must be a list")
        header = Header.from_obj(f[0])
        txs = tuple(Tx.from_obj(t) for t in f[1])
        _expect(len(txs) == header.tx_count, "tx count does not match the header")
        return cls(header, txs).checked()

    def checked(self) -> Block:
        """This block, if its transactions are the ones its header commits to (else a
        DecodeError): every block that comes from outside passes here."""
        if body_hash(self.txs) != self.header.body_hash:
            raise DecodeError("the transactions do not match the header's body hash")
        return self

    @classmethod
    def decode(cls, data: bytes, max_size: int = encoding.MAX_MESSAGE) -> Block:
        return cls.from_obj(encoding.decode(data, max_size=max_size))


ZERO_HASH = bytes(HASH_SIZE)


def require_signature(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidSignature(what)
