"""The wallet side of shielded transfers: keys, notes, the commitment tree, the regulator's
ciphertext, and the witness of a shielded transfer.

Keys. A spending key ``sk`` is a field element; the owner key written into notes is
Poseidon(sk) and a spent note's nullifier is Poseidon(sk, rho). A viewing key (X25519, derived
from sk) lets its holder find and read notes sent to them. An :class:`Address` is what a payer
needs: (owner key, viewing public key).

Notes. A note is (value, owner, rho, r); its commitment Poseidon(value, owner, rho, r) goes into
the pool's Merkle tree. A new note travels to its recipient as a sealed box to their viewing key
(event data on chain): the recipient scans events and keeps the notes that open.

Regulator. The circuit encrypts (sender owner key, receiver 1, value 1, receiver 2, value 2) to
the regulator's BabyJubJub key: E = e*B8 with e != 0 mod l (E is never the identity), S = e*R,
c_i = m_i + pad_i with the pads the rate lanes of one width-6 Poseidon permutation of
(0; Sx, Sy, PAD_TAG, 0, 0), its capacity lane kept secret, so an observer who guesses the
plaintext gets no whole permutation state to invert and check (see :func:`regulator_pads`). :class:`RegulatorKey` reverses it with S = s*E.

Every value hashed here is a field element below :data:`FIELD`; bytes on the wire are 32-byte
big-endian (:func:`fe_bytes`, :func:`fe_from_bytes`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from accord.base import encoding
from accord.base.errors import DecodeError, ValidationError
from accord.zk import babyjub
from accord.zk.poseidon import FIELD, hash2, poseidon, poseidon_ex

NOTE_VALUE_MAX = 2**64 - 1
N_CIPHER = 5
BIND_DOMAIN = "accord/zk-bind/v2"


def fe_bytes(x: int) -> bytes:
    if not 0 <= x < FIELD:
        raise ValidationError("not a field element")
    return x.to_bytes(32, "big")


def fe_from_bytes(b: Any, what: str = "field element") -> int:
    if type(b) is not bytes or len(b) != 32:
        raise DecodeError(f"{what} must be 32 bytes")
    x = int.from_bytes(b, "big")
    if x >= FIELD:
        raise DecodeError(f"{what} is not below the field size")
    return x


def random_fe() -> int:
    return secrets.randbelow(FIELD)


def hash_to_field(*parts: bytes) -> int:
    h = hashlib.sha512(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).digest()
    return int.from_bytes(h, "big") % FIELD


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    owner: int
    viewing: bytes  # X25519 public key

    def to_bytes(self) -> bytes:
        return fe_bytes(self.owner) + self.viewing

    @classmethod
    def from_bytes(cls, b: bytes) -> Address:
        if type(b) is not bytes or len(b) != 64:
            raise DecodeError("an address has 64 bytes")
        return cls(fe_from_bytes(b[:32], "owner key"), b[32:])

    def hex(self) -> str:
        return self.to_bytes().hex()


@dataclass(frozen=True)
class SpendingKey:
    sk: int

    @classmethod
    def generate(cls) -> SpendingKey:
        return cls(1 + secrets.randbelow(FIELD - 1))

    @classmethod
    def from_seed(cls, seed: bytes) -> SpendingKey:
        """Deterministic keys (tests, demos): never use a guessable seed for real funds."""
        return cls(hash_to_field(b"accord/spending-key", seed))

    @property
    def owner(self) -> int:
        return poseidon(self.sk)

    @property
    def viewing_key(self) -> PrivateKey:
        return PrivateKey(hashlib.sha256(b"accord/viewing-key/" + fe_bytes(self.sk)).digest())

    @property
    def address(self) -> Address:
        return Address(self.owner, bytes(self.viewing_key.public_key))

    def nullifier(self, rho: int) -> int:
        return poseidon(self.sk, rho)


# --- notes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    value: int
    owner: int
    rho: int
    r: int

    def __post_init__(self) -> None:
        if not 0 <= self.value <= NOTE_VALUE_MAX:
            raise ValidationError("a note's value must fit in 64 bits")
        for x in (self.owner, self.rho, self.r):
            if not 0 <= x < FIELD:
                raise ValidationError("note fields must be field elements")

    @property
    def commitment(self) -> int:
        return poseidon(self.value, self.owner, self.rho, self.r)

    def encrypt(self, viewing: bytes) -> bytes:
        """A sealed box for the recipient's viewing key (X25519 + XSalsa20-Poly1305)."""
        body = encoding.encode(
            [self.value, fe_bytes(self.owner), fe_bytes(self.rho), fe_bytes(self.r)]
        )
        return bytes(SealedBox(PublicKey(viewing)).encrypt(body))

    @classmethod
    def decrypt(cls, key: SpendingKey, blob: bytes) -> Note | None:
        """The note in ``blob`` if it is for ``key`` (and well-formed), else None."""
        try:
            body = SealedBox(key.viewing_key).decrypt(blob)
            v = encoding.decode(body, max_size=256)
            if type(v) is not list or len(v) != 4 or type(v[0]) is not int:
                return None
            note = cls(v[0], fe_from_bytes(v[1]), fe_from_bytes(v[2]), fe_from_bytes(v[3]))
        except (CryptoError, DecodeError, ValidationError, ValueError, TypeError):
            return None
        return note if note.owner == key.owner else None


# --- the commitment tree --------------------------------------------------------------------

_ZEROS: list[int] = [0]


def zeros(depth: int) -> list[int]:
    """zeros[i]: the root of an empty subtree of height i (leaf 0 is the empty leaf)."""
    while len(_ZEROS) <= depth:
        _ZEROS.append(hash2(_ZEROS[-1], _ZEROS[-1]))
    return _ZEROS[: depth + 1]


@dataclass
class MerkleTree:
    """An append-only Poseidon Merkle tree that keeps every node, for wallets and nodes that
    serve Merkle paths (the contract keeps only the frontier: see ``shielded_pool``)."""

    depth: int
    levels: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 32:
            raise ValidationError("tree depth must be in 1..32")
        if not self.levels:
            self.levels = [[] for _ in range(self.depth + 1)]

    def __len__(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: int) -> int:
        index = len(self.levels[0])
        if index >= 1 << self.depth:
            raise ValidationError("the commitment tree is full")
        z = zeros(self.depth)
        self.levels[0].append(leaf)
        i, node = index, leaf
        for h in range(self.depth):
            sib = i ^ 1
            row = self.levels[h]
            sibling = row[sib] if sib < len(row) else z[h]
            node = hash2(node, sibling) if i % 2 == 0 else hash2(sibling, node)
            i //= 2
            up = self.levels[h + 1]
            if i < len(up):
                up[i] = node
            else:
                up.append(node)
        return index

    @property
    def root(self) -> int:
        top = self.levels[self.depth]
        return top[0] if top else zeros(self.depth)[self.depth]

    def path(self, index: int) -> tuple[list[int], list[int]]:
        """(sibling hashes, position bits) from leaf ``index`` up to the root."""
        if not 0 <= index < len(self):
            raise ValidationError(f"leaf {index} is not in the tree")
        z = zeros(self.depth)
        elements, bits = [], []
        i = index
        for h in range(self.depth):
            row = self.levels[h]
            sib = i ^ 1
            elements.append(row[sib] if sib < len(row) else z[h])
            bits.append(i & 1)
            i //= 2
        return elements, bits


def root_from_path(leaf: int, elements: Sequence[int], bits: Sequence[int]) -> int:
    node = leaf
    for sib, bit in zip(elements, bits, strict=True):
        node = hash2(sib, node) if bit else hash2(node, sib)
    return node


# --- the regulator --------------------------------------------------------------------------


PAD_TAG = int.from_bytes(b"accord/regulator-pad/v2", "big")
"""Domain tag of the regulator's pads (the circuit's ``PAD_TAG``)."""


def regulator_pads(shared: babyjub.Point) -> list[int]:
    """Lanes 1..5 of the width-6 Poseidon permutation of (0; Sx, Sy, PAD_TAG, 0, 0).

    A sponge keyed by the shared point S, squeezed once: the five rate lanes are the pads and
    the capacity lane 0 is never published. (Version 1 published all five lanes of a width-5
    permutation of (0, Sx, Sy, 5, 0), capacity included: since the permutation is public and
    invertible, ``ciphertext - guess`` inverted showed whether a guess was right.) Here a guess
    yields five of six lanes; running the permutation backwards needs the sixth, a field
    element nobody but the sender and the regulator can compute."""
    return poseidon_ex((shared[0], shared[1], PAD_TAG, 0, 0), 0, N_CIPHER + 1)[1:]


def check_ephemeral(ephemeral: babyjub.Point) -> babyjub.Point:
    """Refuse an ephemeral key that is off the curve, outside the prime-order subgroup or the
    identity (a scalar e = 0 mod l): with it the pads would be public constants."""
    if len(ephemeral) != 2 or not babyjub.in_subgroup(ephemeral) or ephemeral[0] == 0:
        raise ValidationError("the regulator's ephemeral key is not a non-identity subgroup point")
    return ephemeral


def regulator_encrypt(
    regulator: babyjub.Point, plain: Sequence[int], e: int
) -> tuple[babyjub.Point, list[int]]:
    """What the circuit computes: (E, ciphertext) for the 5 plaintext field elements. ``e``
    must be nonzero modulo the subgroup order (the circuit has no proof otherwise)."""
    if len(plain) != N_CIPHER:
        raise ValidationError(f"the regulator's plaintext has {N_CIPHER} elements")
    if e % babyjub.SUBORDER == 0:
        raise ValidationError(
            "the ephemeral scalar is 0 modulo the subgroup order: "
            "the transfer would be readable by anyone"
        )
    eph = babyjub.mul(babyjub.BASE8, e)
    pads = regulator_pads(babyjub.mul(regulator, e))
    return eph, [(m + p) % FIELD for m, p in zip(plain, pads, strict=True)]


@dataclass(frozen=True)
class AuditRecord:
    sender: int
    receivers: tuple[int, int]
    values: tuple[int, int]


@dataclass(frozen=True)
class RegulatorKey:
    secret: int

    @classmethod
    def generate(cls) -> RegulatorKey:
        return cls(babyjub.random_scalar())

    @classmethod
    def from_seed(cls, seed: bytes) -> RegulatorKey:
        return cls(1 + hash_to_field(b"accord/regulator-key", seed) % (babyjub.SUBORDER - 1))

    @property
    def public(self) -> babyjub.Point:
        return babyjub.mul(babyjub.BASE8, self.secret)

    def decrypt(self, ephemeral: babyjub.Point, ciphertext: Sequence[int]) -> AuditRecord:
        if len(ciphertext) != N_CIPHER:
            raise ValidationError("malformed regulator ciphertext")
        check_ephemeral(ephemeral)
        pads = regulator_pads(babyjub.mul(ephemeral, self.secret))
        m = [(c - p) % FIELD for c, p in zip(ciphertext, pads, strict=True)]
        return AuditRecord(m[0], (m[1], m[3]), (m[2], m[4]))


# --- a shielded transfer --------------------------------------------------------------------


def transfer_bind(chain_id: str, recipient: bytes, note_ciphertexts: Sequence[bytes]) -> int:
    """The ``bind`` public input: the transaction data the proof must not be detached from
    (the chain, who receives a withdrawal, the recipients' note ciphertexts)."""
    return (
        int.from_bytes(
            encoding.hash_value([BIND_DOMAIN, chain_id, recipient, list(note_ciphertexts)]), "big"
        )
        % FIELD
    )


@dataclass(frozen=True)
class SpendInput:
    """A note the spender owns, with its leaf index in the tree."""

    note: Note
    index: int


@dataclass
class TransferPlan:
    """Everything a shielded transfer needs: the circuit input (private and public), the public
    signals in circuit order, the new notes and their ciphertexts for the recipients."""

    circuit_input: dict[str, Any]
    public: list[int]
    out_notes: list[Note]
    note_ciphertexts: list[bytes]
    nullifiers: list[int]


def plan_transfer(
    key: SpendingKey,
    inputs: Sequence[SpendInput],
    outputs: Sequence[tuple[Address, int]],
    tree: MerkleTree,
    regulator: babyjub.Point,
    *,
    deposit: int = 0,
    withdrawal: int = 0,
    recipient: bytes = b"",
    rng: Any = None,
    chain_id: str,
) -> TransferPlan:
    """Build the witness of a 2-in-2-out transfer on chain ``chain_id``. Missing inputs become
    zero-value dummies; a missing output becomes a zero-value note to the sender. The two
    inputs must be different notes (the circuit refuses equal nullifiers)."""
    rnd = rng.randrange if rng is not None else (lambda n: secrets.randbelow(n))
    if len(inputs) > 2 or len(outputs) > 2:
        raise ValidationError("a transfer has at most 2 inputs and 2 outputs")
    for v in (deposit, withdrawal):
        if not 0 <= v <= NOTE_VALUE_MAX:
            raise ValidationError("amounts must fit in 64 bits")
    depth = tree.depth
    ins: list[tuple[Note, list[int], list[int]]] = []
    for spend in inputs:
        if spend.note.owner != key.owner:
            raise ValidationError("an input note is not owned by this spending key")
        if spend.index >= len(tree) or tree.levels[0][spend.index] != spend.note.commitment:
            raise ValidationError(f"input note is not leaf {spend.index} of the tree")
        elements, bits = tree.path(spend.index)
        ins.append((spend.note, elements, bits))
    while len(ins) < 2:
        dummy = Note(0, key.owner, rnd(FIELD), rnd(FIELD))
        ins.append((dummy, [0] * depth, [0] * depth))
    outs = list(outputs)
    while len(outs) < 2:
        outs.append((key.address, 0))
    total_in = sum(n.value for n, _, _ in ins) + deposit
    total_out = sum(v for _, v in outs) + withdrawal
    if total_in != total_out:
        raise ValidationError(f"inputs ({total_in}) and outputs ({total_out}) differ")
    nfs = [key.nullifier(n.rho) for n, _, _ in ins]
    out_notes = [
        Note(v, addr.owner, poseidon(nfs[0], nfs[1], j), rnd(FIELD))
        for j, (addr, v) in enumerate(outs)
    ]
    blobs = [n.encrypt(addr.viewing) for n, (addr, _) in zip(out_notes, outs, strict=True)]
    if nfs[0] == nfs[1]:
        raise ValidationError("the two inputs are the same note")
    bind = transfer_bind(chain_id, recipient, blobs)
    e = 1 + rnd(babyjub.SUBORDER - 1)
    plain = [
        key.owner,
        out_notes[0].owner,
        out_notes[0].value,
        out_notes[1].owner,
        out_notes[1].value,
    ]
    eph, cipher = regulator_encrypt(regulator, plain, e)
    root = tree.root
    public_named: dict[str, Any] = {
        "root": root,
        "nullifier": nfs,
        "commitment": [n.commitment for n in out_notes],
        "deposit": deposit,
        "withdrawal": withdrawal,
        "bind": bind,
        "regulator": list(regulator),
        "ephemeral": list(eph),
        "ciphertext": cipher,
    }
    private = {
        "sk": key.sk,
        "inValue": [n.value for n, _, _ in ins],
        "inRho": [n.rho for n, _, _ in ins],
        "inR": [n.r for n, _, _ in ins],
        "pathElements": [el for _, el, _ in ins],
        "pathIndices": [bits for _, _, bits in ins],
        "outValue": [n.value for n in out_notes],
        "outOwner": [n.owner for n in out_notes],
        "outR": [n.r for n in out_notes],
        "e": e,
    }
    public = [
        root,
        *nfs,
        *public_named["commitment"],
        deposit,
        withdrawal,
        bind,
        *regulator,
        *eph,
        *cipher,
    ]
    return TransferPlan({**public_named, **private}, public, out_notes, blobs, nfs)


# Positions of the transfer's public inputs (the circuit's declaration order).
PUB_ROOT, PUB_NF, PUB_CM, PUB_DEPOSIT, PUB_WITHDRAWAL, PUB_BIND = 0, 1, 3, 5, 6, 7
PUB_REGULATOR, PUB_EPHEMERAL, PUB_CIPHER = 8, 10, 12
N_TRANSFER_PUBLIC = 17


# --- anti-stacking --------------------------------------------------------------------------

NULL_LENDER_SECRET = hashlib.sha256(b"accord/null-lender").digest()
"""A public secret: slots of the anti-stacking circuit without a real lender use this key. Anyone
can sign for it, but a signed balance only raises the sum, so 0 is the only useful value."""


ATTEST_TAG = int.from_bytes(b"accord/attestation/v2", "big")
"""Domain tag of a lender's attestation (the anti-stacking circuit's first message input)."""
LOAN_BIND_DOMAIN = "accord/loan-bind/v1"


def attestation_message(borrower: int, balance: int, epoch: int) -> int:
    """Poseidon(ATTEST_TAG, borrower, balance, epoch): tagged, so that no other message a
    lender's key signs can pass for an attestation."""
    return poseidon(ATTEST_TAG, borrower, balance, epoch)


def loan_bind(chain_id: str, lender: bytes, borrower: int, amount: int, epoch: int) -> int:
    """The anti-stacking proof's ``bind`` input: the one loan (chain, applying lender's
    account, borrower, amount, epoch) the proof was made for. ``loans.apply`` derives it from
    the transaction, so another caller, amount, epoch or chain makes the proof fail."""
    return (
        int.from_bytes(
            encoding.hash_value(
                [LOAN_BIND_DOMAIN, chain_id, lender, fe_bytes(borrower), amount, epoch]
            ),
            "big",
        )
        % FIELD
    )


def attest(lender_secret: bytes, borrower: int, balance: int, epoch: int) -> babyjub.Signature:
    """A lender's signed statement: `borrower` owes/holds `balance` with us in `epoch`."""
    return babyjub.eddsa_sign(lender_secret, attestation_message(borrower, balance, epoch))


def plan_anti_stacking(
    lender_keys: Sequence[babyjub.Point],
    attestations: Sequence[tuple[int, babyjub.Signature]],
    *,
    borrower: int,
    epoch: int,
    limit: int,
    slots: int,
    bind: int,
) -> tuple[dict[str, Any], list[int]]:
    """Circuit input and public signals. ``attestations[i]`` is (balance, signature) from
    ``lender_keys[i]``; unused slots are filled with the null lender and balance 0. ``bind``
    is :func:`loan_bind` of the loan the proof is for."""
    if len(lender_keys) != len(attestations) or len(lender_keys) > slots:
        raise ValidationError("one attestation per lender, at most `slots` lenders")
    if sum(b for b, _ in attestations) >= limit:
        raise ValidationError("the balances are not below the limit: no proof exists")
    keys = list(lender_keys)
    atts = list(attestations)
    null_key = babyjub.eddsa_public_key(NULL_LENDER_SECRET)
    while len(keys) < slots:
        keys.append(null_key)
        atts.append((0, attest(NULL_LENDER_SECRET, borrower, 0, epoch)))
    circuit_input = {
        "limit": limit,
        "borrower": borrower,
        "epoch": epoch,
        "lenderKey": [list(k) for k in keys],
        "balance": [b for b, _ in atts],
        "sigS": [s.s for _, s in atts],
        "sigR8": [list(s.r8) for _, s in atts],
        "bind": bind,
    }
    public = [limit, borrower, epoch, *[c for k in keys for c in k], bind]
    return circuit_input, public


def null_lender_key() -> babyjub.Point:
    return babyjub.eddsa_public_key(NULL_LENDER_SECRET)
