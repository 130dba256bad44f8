"""Vote aggregates: gossip-merged BLS signatures with per-signer counts, and certificates.

A live :class:`Aggregate` is the sum of signatures on one vote message
(height, round, phase, block hash) together with ``counts[i]``, how many times validator i's
signature is folded in. Aggregates from different peers overlap, so merging adds signatures
*and* counts; verification checks ``e(g, sigma) == e(sum(counts_i * pk_i), H(m))``. The number
of distinct signers (``counts > 0``) is what counts towards a quorum.

Merge policy (keeps counts small and work low): an incoming aggregate whose signers are a
subset of ours brings nothing and is not even verified; one that is a superset replaces ours;
otherwise the two are added. If adding would push a count past :data:`MAX_COUNT`, the larger
of the two is kept instead.

**Stored certificates.** A block's commit certificate is an :class:`accord.base.types.Certificate`
with a signer bitmap and one signature in which each signer appears once. Besides the weighted
aggregate, the core keeps per vote the largest *pure* aggregate it has seen (every count 1;
disjoint pure aggregates are joined, and every individual vote is one), and stores that when it
reaches a quorum; failing that, it re-aggregates the individual signatures it holds. In
broadcast mode (small validator sets, every Accord deployment) each validator receives the
individual votes directly, so the bitmap form is what gets stored unless messages were lost.
In gossip mode (simulations of thousands of validators) a validator may not hold enough
individual signatures; it then stores the *weighted form*: ``signers`` is the counts vector
(2 bytes little-endian per validator, length ``2 * n``, which no bitmap can have) and the
signature is the weighted sum. :func:`verify_certificate` accepts both forms, so storage,
catch-up and light clients need not care; :func:`certificate_signers` reads either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from accord.base import encoding
from accord.base.errors import DecodeError, InvalidSignature, ValidationError
from accord.base.types import HASH_SIZE, Certificate, bitmap_from, bitmap_indices, vote_message
from accord.consensus.crypto import Crypto

PHASE_P = 1
PHASE_C = 2
MAX_COUNT = 60_000
TAG_VOTES = 2


class Aggregate:
    """A mutable weighted aggregate of votes on one (height, round, phase, block hash)."""

    __slots__ = (
        "height",
        "round",
        "phase",
        "block_hash",
        "counts",
        "signature",
        "signers",
        "mask",
        "maxc",
        "_enc",
        "_ok",
    )

    def __init__(
        self,
        height: int,
        round: int,
        phase: int,
        block_hash: bytes,
        counts: np.ndarray,
        signature: bytes,
    ):
        self.height = height
        self.round = round
        self.phase = phase
        self.block_hash = block_hash
        self.counts = counts
        self.signature = signature
        self._enc: bytes | None = None
        self._ok: bool | None = None
        self._set_counts(counts)

    def _set_counts(
        self, counts: np.ndarray, mask: int | None = None, maxc: int | None = None
    ) -> None:
        # The signer set as a Python integer bitmask: subset tests on 10,000 validators are
        # then a couple of big-integer operations instead of several array passes.
        self.counts = counts
        if mask is None:
            mask = int.from_bytes(np.packbits(counts > 0, bitorder="little").tobytes(), "little")
        self.mask = mask
        self.maxc = int(counts.max()) if maxc is None else maxc
        self.signers = mask.bit_count()
        self._enc = None
        self._ok = None

    @property
    def key(self) -> tuple[int, int, int, bytes]:
        return (self.height, self.round, self.phase, self.block_hash)

    @classmethod
    def single(
        cls, n: int, height: int, round: int, phase: int, block_hash: bytes, index: int, sig: bytes
    ) -> Aggregate:
        counts = np.zeros(n, dtype=np.uint16)
        counts[index] = 1
        return cls(height, round, phase, block_hash, counts, sig)

    def copy(self) -> Aggregate:
        a = Aggregate.__new__(Aggregate)
        a.height, a.round, a.phase, a.block_hash = (
            self.height,
            self.round,
            self.phase,
            self.block_hash,
        )
        a.counts, a.signature, a.mask, a.maxc, a.signers = (
            self.counts,
            self.signature,
            self.mask,
            self.maxc,
            self.signers,
        )
        a._enc, a._ok = self._enc, self._ok
        return a  # counts arrays are never modified in place, so sharing them is safe

    def message(self, chain_id: str) -> bytes:
        return vote_message(chain_id, self.height, self.round, self.phase, self.block_hash)

    def verify(self, crypto: Crypto, chain_id: str) -> bool:
        """Check the signature (the verdict is remembered: a decoded aggregate is immutable
        until merged into, and merging resets it). Every call is charged as one check; a
        crypto that meters checks by signer count (the simulator's) is told the count."""
        if self._ok is None:
            self._ok = crypto.verify_weighted(self.counts, self.message(chain_id), self.signature)
        else:
            recheck = getattr(crypto, "recheck", None)
            if recheck is None:
                crypto.checks += 1
            else:
                recheck(self.signers, self.maxc)
        return self._ok

    def to_obj(self) -> list[Any]:
        return [
            TAG_VOTES,
            self.height,
            self.round,
            self.phase,
            self.block_hash,
            self.counts.astype("<u2", copy=False).tobytes(),
            self.signature,
        ]

    def encode(self) -> bytes:
        # to_obj() holds only ints and bytes, whose MessagePack form is already canonical.
        if self._enc is None:
            self._enc = encoding.encode_shaped(self.to_obj())
        return self._enc

    @classmethod
    def from_obj(cls, obj: Any, n: int) -> Aggregate:
        if type(obj) is not list or len(obj) != 7 or obj[0] != TAG_VOTES:
            raise DecodeError("not a vote aggregate")
        _, height, rnd, phase, block_hash, counts_b, sig = obj
        if type(height) is not int or type(rnd) is not int or height < 1 or rnd < 0:
            raise DecodeError("bad height or round")
        if type(phase) is not int or phase not in (PHASE_P, PHASE_C):
            raise DecodeError("bad phase")
        if type(block_hash) is not bytes or len(block_hash) != HASH_SIZE:
            raise DecodeError("bad block hash")
        if type(counts_b) is not bytes or len(counts_b) != 2 * n:
            raise DecodeError("counts vector has the wrong size")
        if type(sig) is not bytes or len(sig) != 96:
            raise DecodeError("bad aggregate signature")
        counts = np.frombuffer(counts_b, dtype="<u2")
        if int(counts.max()) > MAX_COUNT or not counts.any():
            raise DecodeError("counts out of range")
        return cls(height, rnd, phase, block_hash, counts, sig)

    def subset_of(self, other: Aggregate) -> bool:
        """Every signer of self also signed in other."""
        return self.mask & ~other.mask == 0

    def merge(self, other: Aggregate, crypto: Crypto) -> bool:
        """Fold a *verified* aggregate into this one; return True when the signer set grew."""
        if other.subset_of(self):
            return False
        before = self.signers
        if self.subset_of(other) or self.maxc + other.maxc > MAX_COUNT:
            if other.signers <= self.signers:
                return False
            self._set_counts(other.counts, other.mask, other.maxc)
            self.signature = other.signature
        else:
            # maxc bounds keep the uint16 sum exact (no overflow).
            total = self.counts + other.counts
            self._set_counts(total, self.mask | other.mask, int(total.max()))
            self.signature = crypto.add(self.signature, other.signature)
        return self.signers > before

    def to_certificate(
        self, singles: dict[int, bytes], crypto: Crypto, quorum: int, pure: Aggregate | None = None
    ) -> Certificate:
        """Reduce to a stored certificate (see the module docstring for the two forms).

        In order of preference: this aggregate if every count is 1; ``pure``, a quorum
        aggregate with every count 1 that the caller kept; the sum of the individual
        signatures held; otherwise the weighted form."""
        n = len(self.counts)
        for cand in (self, pure):
            if cand is not None and cand.maxc <= 1 and cand.signers >= quorum:
                idx = np.nonzero(cand.counts)[0].tolist()
                return Certificate(
                    self.height,
                    self.round,
                    self.phase,
                    self.block_hash,
                    bitmap_from(idx, n),
                    cand.signature,
                )
        held = sorted(i for i in singles)
        if len(held) >= quorum:
            sig = crypto.aggregate([singles[i] for i in held])
            return Certificate(
                self.height, self.round, self.phase, self.block_hash, bitmap_from(held, n), sig
            )
        return Certificate(
            self.height,
            self.round,
            self.phase,
            self.block_hash,
            self.counts.astype("<u2").tobytes(),
            self.signature,
        )


def certificate_counts(cert: Certificate, n: int) -> np.ndarray:
    """Per-validator counts of a certificate in either form."""
    if len(cert.signers) == 2 * n:
        counts = np.frombuffer(cert.signers, dtype="<u2").astype(np.uint16)
        if int(counts.max(initial=0)) > MAX_COUNT:
            raise ValidationError("certificate counts out of range")
        return counts
    if len(cert.signers) != (n + 7) // 8:
        raise ValidationError("certificate signer bitmap has the wrong size")
    idx = bitmap_indices(cert.signers)
    if any(i >= n for i in idx):
        raise ValidationError("certificate names a validator that does not exist")
    counts = np.zeros(n, dtype=np.uint16)
    counts[idx] = 1
    return counts


def certificate_signers(cert: Certificate, n: int) -> list[int]:
    """The signers, with the count range checked (``Certificate.signer_indices`` is the same
    list without that check: tests/test_types.py compares them)."""
    return np.nonzero(certificate_counts(cert, n))[0].tolist()


def verify_certificate(
    keys_or_crypto: Any, chain_id: str, cert: Certificate, quorum: int, *, phase: int = PHASE_C
) -> None:
    """Check that ``cert`` carries ``quorum`` distinct validators' votes of ``phase``.

    ``keys_or_crypto`` is a :class:`accord.base.genesis.Genesis` (its proofs of possession are
    checked), a list of BLS public keys (assumed already checked, e.g. from a loaded genesis) or
    a :class:`Crypto`. Raises :class:`ValidationError` for a malformed certificate and
    :class:`InvalidSignature` when the signature does not verify.
    """
    crypto = _crypto_for(keys_or_crypto)
    if cert.phase != phase:
        raise ValidationError(f"certificate has phase {cert.phase}, expected {phase}")
    if len(cert.block_hash) != HASH_SIZE or cert.height < 1:
        raise ValidationError("certificate names no block")
    counts = certificate_counts(cert, crypto.n)
    signers = int(np.count_nonzero(counts))
    if signers < quorum:
        raise ValidationError(f"certificate has {signers} signers, quorum is {quorum}")
    msg = vote_message(chain_id, cert.height, cert.round, cert.phase, cert.block_hash)
    if not crypto.verify_weighted(counts, msg, cert.signature):
        raise InvalidSignature("certificate signature does not verify")


_crypto_cache: dict[tuple[bytes, ...], Crypto] = {}


def _crypto_for(x: Any) -> Crypto:
    from accord.base.genesis import Genesis
    from accord.consensus.crypto import BlsCrypto

    if isinstance(x, Genesis):
        keys = tuple(x.validator_keys())
        if keys not in _crypto_cache:
            _crypto_cache[keys] = BlsCrypto.from_genesis(x)
        return _crypto_cache[keys]
    if isinstance(x, Sequence) and not isinstance(x, bytes | str):
        keys = tuple(x)
        if keys not in _crypto_cache:
            _crypto_cache[keys] = BlsCrypto(list(keys), checked=True)
        return _crypto_cache[keys]
    return x
