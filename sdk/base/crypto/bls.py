"""BLS12-381 signatures for validators: the one module that touches the BLS backend.

We use the proof-of-possession scheme (blspy ``PopSchemeMPL``): every validator key in genesis
comes with a proof that its owner knows the secret key, which makes aggregating signatures on
one message by simply adding public keys safe against rogue-key attacks.

Signatures are unique (one valid signature per key and message), which is what lets
:mod:`accord.consensus` use a signature as a sortition ticket.

Deserialising a point costs more than adding two, so public keys are parsed once and cached.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Sequence

from blspy import G1Element, G2Element, PopSchemeMPL, PrivateKey

from accord.base.errors import InvalidSignature, ValidationError

PUBLIC_KEY_SIZE = 48
SIGNATURE_SIZE = 96
SECRET_KEY_SIZE = 32


def keygen(seed: bytes | None = None) -> bytes:
    """A secret key (32 bytes) from ``seed`` (>= 32 bytes of entropy) or fresh randomness."""
    seed = seed if seed is not None else os.urandom(32)
    if len(seed) < 32:
        raise ValidationError("a BLS key seed needs at least 32 bytes")
    return bytes(PopSchemeMPL.key_gen(seed))


def demo_secret(name: str) -> bytes:
    """A deterministic validator key for simulations and tests only (its seed is public)."""
    return keygen(hashlib.sha256(b"accord/demo-validator/" + name.encode()).digest())


@functools.lru_cache(maxsize=4096)
def _sk(secret: bytes) -> PrivateKey:
    return PrivateKey.from_bytes(secret)


@functools.lru_cache(maxsize=65536)
def _pk(public_key: bytes) -> G1Element:
    try:
        return G1Element.from_bytes(public_key)
    except Exception:  # blspy raises plain RuntimeError/ValueError for bad points
        raise ValidationError("not a valid BLS public key") from None


def _sig(signature: bytes) -> G2Element:
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature("a BLS signature has 96 bytes")
    try:
        return G2Element.from_bytes(signature)
    except Exception:
        raise InvalidSignature("not a valid BLS signature point") from None


def public_key(secret: bytes) -> bytes:
    return bytes(_sk(secret).get_g1())


def sign(secret: bytes, message: bytes) -> bytes:
    return bytes(PopSchemeMPL.sign(_sk(secret), message))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        return bool(PopSchemeMPL.verify(_pk(public_key), message, _sig(signature)))
    except (ValidationError, InvalidSignature):
        return False


def pop_prove(secret: bytes) -> bytes:
    return bytes(PopSchemeMPL.pop_prove(_sk(secret)))


def pop_verify(public_key: bytes, proof: bytes) -> bool:
    try:
        return bool(PopSchemeMPL.pop_verify(_pk(public_key), _sig(proof)))
    except (ValidationError, InvalidSignature):
        return False


def aggregate(signatures: Iterable[bytes]) -> bytes:
    """Sum of signatures. The caller tracks whose signatures (and how often) are inside."""
    return bytes(PopSchemeMPL.aggregate([_sig(s) for s in signatures]))


def aggregate_public_keys(public_keys: Iterable[bytes]) -> G1Element:
    acc = G1Element()
    for pk in public_keys:
        acc = acc + _pk(pk)
    return acc


def fast_aggregate_verify(public_keys: Sequence[bytes], message: bytes, signature: bytes) -> bool:
    """Verify an aggregate of distinct signers on one message (PoP makes this safe)."""
    if not public_keys:
        return False
    try:
        return bool(
            PopSchemeMPL.fast_aggregate_verify(
                [_pk(pk) for pk in public_keys], message, _sig(signature)
            )
        )
    except (ValidationError, InvalidSignature):
        return False


def weighted_aggregate_verify(
    weighted_keys: Sequence[tuple[bytes, int]], message: bytes, signature: bytes
) -> bool:
    """Verify a sum in which signer i's signature appears ``count_i`` times.

    Gossip merges overlapping aggregates by adding them, so a signature may be folded in more
    than once; ``e(g, sigma) == e(sum(count_i * pk_i), H(m))`` still checks it. We compute the
    weighted key by repeated doubling-and-adding of points (counts are small).
    """
    if not weighted_keys:
        return False
    try:
        acc = G1Element()
        for pk, count in weighted_keys:
            if count <= 0:
                return False
            acc = acc + _mul_small(_pk(pk), count)
        return bool(PopSchemeMPL.fast_aggregate_verify([acc], message, _sig(signature)))
    except (ValidationError, InvalidSignature):
        return False


def _mul_small(p: G1Element, k: int) -> G1Element:
    result = G1Element()
    addend = p
    while k:
        if k & 1:
            result = result + addend
        addend = addend + addend
        k >>= 1
    return result


def sortition_hash(signature: bytes) -> int:
    """The lottery value of a sortition signature: SHA-256 of it as a 256-bit integer."""
    return int.from_bytes(hashlib.sha256(signature).digest(), "big")
