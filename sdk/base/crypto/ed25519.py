"""Ed25519 account keys and the address derived from a public key.

An address is the first 20 bytes of SHA-256 over the public key: short enough for state keys,
long enough that finding a collision is out of reach for anyone.

Keys and signing use PyNaCl (libsodium). Verification uses ed25519-zebra, which implements
the ZIP-215 rules: a precise, consensus-safe definition of which signatures are valid
(canonical ``s``; cofactored equation; any encoding of the points accepted), so every
validator accepts exactly the same transactions, and it is about a quarter faster than
libsodium's check on this hardware, which matters because every validator checks every
transaction. Every signature a standard signer produces verifies under both rules; they
differ only on crafted edge cases. One of those matters for a ledger: under ZIP-215 anyone can
sign any message for a public key of small order (the identity point, say), so the address of
such a key would be one whose funds anybody could move. Those keys are refused here, in every
encoding (as libsodium does), before the signature is looked at.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import ed25519_zebra
import nacl.signing

from accord.base.errors import InvalidSignature, ValidationError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
ADDRESS_SIZE = 20


def address_of(public_key: bytes) -> bytes:
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValidationError("an Ed25519 public key has 32 bytes")
    return hashlib.sha256(public_key).digest()[:ADDRESS_SIZE]


_zebra_verify = ed25519_zebra.ed_verify


def _small_order_encodings() -> frozenset[bytes]:
    """The encodings, sign bit cleared, of the eight points of order dividing 8: the y values
    1 (order 1), p - 1 (order 2), 0 (order 4) and the two y values of the order-8 points,
    each also as y + p where that still fits in 255 bits (a non-canonical encoding that
    ZIP-215 accepts). Derived from the curve equation rather than copied: 7 encodings."""
    p = 2**255 - 19
    d = -121665 * pow(121666, p - 2, p) % p

    def sqrt(a: int) -> int | None:  # p = 5 (mod 8): Atkin's square root
        r = pow(a, (p + 3) // 8, p)
        if r * r % p != a % p:
            r = r * pow(2, (p - 1) // 4, p) % p
        return r if r * r % p == a % p else None

    ys = {0, 1, p - 1}
    # An order-8 point doubles to an order-4 point (y = 0), i.e. x^2 = -y^2; with the curve
    # equation -x^2 + y^2 = 1 + d x^2 y^2 that gives d y^4 + 2 y^2 - 1 = 0.
    root = sqrt(1 + d)
    assert root is not None
    for t in (root, p - root):
        y = sqrt((t - 1) * pow(d, p - 2, p) % p)
        if y is not None:
            ys |= {y, p - y}
    out = {y.to_bytes(32, "little") for y in ys}
    out |= {(y + p).to_bytes(32, "little") for y in ys if y + p < 2**255}
    return frozenset(out)


_SMALL_ORDER = _small_order_encodings()


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`InvalidSignature` unless ``signature`` signs ``message`` under the key."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature("malformed Ed25519 key or signature")
    if public_key[:31] + bytes((public_key[31] & 0x7F,)) in _SMALL_ORDER:
        raise InvalidSignature("an Ed25519 public key of small order signs nothing")
    if not _zebra_verify(signature, message, public_key):
        raise InvalidSignature("Ed25519 signature does not verify")


@dataclass(frozen=True)
class AccountKey:
    """A private account key. Keep it in the host application; never send it anywhere."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValidationError("an Ed25519 seed has 32 bytes")

    @classmethod
    def generate(cls) -> AccountKey:
        return cls(os.urandom(32))

    @classmethod
    def from_name(cls, name: str) -> AccountKey:
        """A deterministic key for demos and tests only (its seed is public)."""
        return cls(hashlib.sha256(b"accord/demo-account/" + name.encode()).digest())

    # Derived once per key: expanding the seed costs as much as a signature, and a client
    # signs many transactions with one key.
    @cached_property
    def _signing(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @cached_property
    def public_key(self) -> bytes:
        return bytes(self._signing.verify_key)

    @cached_property
    def address(self) -> bytes:
        return address_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message).signature

    def save(self, path: str | Path) -> None:
        """Write the key as JSON readable by the owner only (mode 0600)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(
            {
                "type": "ed25519",
                "seed": self.seed.hex(),
                "public_key": self.public_key.hex(),
                "address": self.address.hex(),
            },
            indent=2,
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data + "\n")
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: str | Path) -> AccountKey:
        path = Path(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ValidationError(
                f"key file {path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        doc = json.loads(path.read_text())
        if doc.get("type") != "ed25519":
            raise ValidationError(f"{path} is not an Ed25519 account key")
        key = cls(bytes.fromhex(doc["seed"]))
        if doc.get("public_key") and bytes.fromhex(doc["public_key"]) != key.public_key:
            raise ValidationError(f"{path}: public key does not match the seed")
        return key
