"""The crypto the consensus core needs, behind one small interface.

The core never imports blspy. It signs through a :class:`Signer` (one validator's secret) and
checks through a :class:`Crypto` (everybody's public keys). Two implementations:

* :class:`BlsCrypto` / :class:`BlsSigner`: real BLS12-381 (proof-of-possession scheme) through
  :mod:`accord.base.crypto.bls`. Used by nodes, by tests and by small simulations.
* :class:`CostModelCrypto`: for simulations of thousands of validators. A "signature" of
  validator i on message m is ``H(m) * k_i mod P`` (P = 2**61 - 1, ``k_i`` derived from the
  simulation seed and i), padded to 96 bytes. The scheme is linear like BLS, so sums of
  signatures with per-signer counts verify the same way (``sum(c_i * k_i) * H(m)``), and a
  forged or garbled signature is detected. It is NOT cryptography (anyone who knows the
  construction can forge); it only lets the simulator keep the protocol's data flow while
  charging a configurable virtual cost per check instead of spending real CPU.

Every expensive check increments :attr:`Crypto.checks`; the simulator converts the increase
into virtual busy time (``--verify-ms`` per check), which is how verification cost shapes the
agreement time at 10,000 validators.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from accord.base.crypto import bls
from accord.base.errors import GenesisError

SIGNATURE_SIZE = 96


class Signer(Protocol):
    """One validator's signing key."""

    index: int

    def sign(self, message: bytes) -> bytes: ...


class Crypto(Protocol):
    """Verification against the validator set (index = position in genesis)."""

    n: int
    checks: int

    def verify(self, index: int, message: bytes, signature: bytes) -> bool: ...

    def verify_weighted(self, counts: np.ndarray, message: bytes, signature: bytes) -> bool:
        """Check a sum in which validator i's signature appears ``counts[i]`` times."""
        ...

    def add(self, a: bytes, b: bytes) -> bytes:
        """The sum of two (aggregate) signatures."""
        ...

    def aggregate(self, signatures: Sequence[bytes]) -> bytes: ...


def sortition_value(signature: bytes) -> int:
    """The lottery value of a sortition signature (lower is better)."""
    return bls.sortition_hash(signature)


# --- real BLS ------------------------------------------------------------------------------


class BlsSigner:
    def __init__(self, index: int, secret: bytes) -> None:
        self.index = index
        self._secret = secret

    def sign(self, message: bytes) -> bytes:
        return bls.sign(self._secret, message)


class BlsCrypto:
    """BLS verification over the genesis keys. Constructing it from a genesis checks every
    proof of possession (weighted aggregate verification is only safe against rogue keys
    when each key's owner has proved knowledge of its secret)."""

    def __init__(
        self, public_keys: Sequence[bytes], *, checked: bool = False, pops: Sequence[bytes] = ()
    ) -> None:
        if not checked:
            if len(pops) != len(public_keys):
                raise GenesisError("every validator key needs a proof of possession")
            for i, (pk, pop) in enumerate(zip(public_keys, pops, strict=True)):
                if not bls.pop_verify(pk, pop):
                    raise GenesisError(f"validator {i}: proof of possession does not verify")
        self.keys = list(public_keys)
        self.n = len(self.keys)
        self.checks = 0

    @classmethod
    def from_genesis(cls, genesis: object) -> BlsCrypto:
        from accord.base.genesis import Genesis

        assert isinstance(genesis, Genesis)
        genesis.check()  # raises GenesisError on a missing or bad proof of possession
        return cls(genesis.validator_keys(), checked=True)

    def verify(self, index: int, message: bytes, signature: bytes) -> bool:
        self.checks += 1
        if not 0 <= index < self.n:
            return False
        return bls.verify(self.keys[index], message, signature)

    def verify_weighted(self, counts: np.ndarray, message: bytes, signature: bytes) -> bool:
        self.checks += 1
        idx = np.nonzero(counts)[0]
        if len(idx) == 0 or len(counts) != self.n:
            return False
        if all(counts[i] == 1 for i in idx):
            return bls.fast_aggregate_verify([self.keys[i] for i in idx], message, signature)
        return bls.weighted_aggregate_verify(
            [(self.keys[i], int(counts[i])) for i in idx], message, signature
        )

    def add(self, a: bytes, b: bytes) -> bytes:
        return bls.aggregate([a, b])

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        return bls.aggregate(signatures)


# --- cost model ----------------------------------------------------------------------------

_P = (1 << 61) - 1


def _h(message: bytes) -> int:
    return int.from_bytes(hashlib.sha256(message).digest()[:16], "big") % (_P - 1) + 1


def _to_sig(v: int) -> bytes:
    return v.to_bytes(SIGNATURE_SIZE, "big")


def _from_sig(sig: bytes) -> int | None:
    if len(sig) != SIGNATURE_SIZE:
        return None
    v = int.from_bytes(sig, "big")
    return v if v < _P else None


class CostModelSigner:
    def __init__(self, crypto: CostModelCrypto, index: int) -> None:
        self.index = index
        self._k = int(crypto.k[index])

    def sign(self, message: bytes) -> bytes:
        return _to_sig(_h(message) * self._k % _P)


class CostModelCrypto:
    """Symbolic linear signatures for large simulations (see the module docstring)."""

    def __init__(self, n: int, seed: bytes = b"accord-sim") -> None:
        self.n = n
        self.checks = 0
        ks = [
            int.from_bytes(hashlib.sha256(seed + i.to_bytes(4, "big")).digest()[:4], "big")
            % ((1 << 31) - 2)
            + 1
            for i in range(n)
        ]
        # k_i < 2**31 and counts < 2**16: a dot product over 10**4 validators stays below 2**63.
        self.k = np.array(ks, dtype=np.int64)

    def signer(self, index: int) -> CostModelSigner:
        return CostModelSigner(self, index)

    def verify(self, index: int, message: bytes, signature: bytes) -> bool:
        self.checks += 1
        v = _from_sig(signature)
        if v is None or not 0 <= index < self.n:
            return False
        return v == _h(message) * int(self.k[index]) % _P

    def verify_weighted(self, counts: np.ndarray, message: bytes, signature: bytes) -> bool:
        self.checks += 1
        v = _from_sig(signature)
        if v is None or len(counts) != self.n or not counts.any():
            return False
        total = int(np.dot(counts.astype(np.int64), self.k)) % _P
        return v == _h(message) * total % _P

    def add(self, a: bytes, b: bytes) -> bytes:
        va, vb = _from_sig(a), _from_sig(b)
        if va is None or vb is None:
            return _to_sig(_P)  # never verifies
        return _to_sig((va + vb) % _P)

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        acc = 0
        for s in signatures:
            v = _from_sig(s)
            if v is None:
                return _to_sig(_P)
            acc = (acc + v) % _P
        return _to_sig(acc)


class ReindexedSigner:
    """A validator's signer under its index in another validator set (an epoch's position,
    see "Validator-set changes" in :mod:`accord.consensus.state`): same key, new index."""

    def __init__(self, index: int, inner: Signer) -> None:
        self.index = index
        self._inner = inner

    def sign(self, message: bytes) -> bytes:
        return self._inner.sign(message)


class SubsetCrypto:
    """Verification against a validator set drawn from a larger one: index j of this set is
    index ``members[j]`` of ``base``. The simulator runs every epoch's set over one pool of
    keys this way; checks are counted on ``base`` (one meter for every epoch)."""

    def __init__(self, base: Crypto, members: Sequence[int]) -> None:
        if len(set(members)) != len(members) or not all(0 <= m < base.n for m in members):
            raise GenesisError("a validator set names each member of the pool once")
        self.base = base
        self.members = list(members)
        self.n = len(self.members)
        self._at = np.array(self.members, dtype=np.int64)

    @property
    def checks(self) -> int:
        return self.base.checks

    @checks.setter
    def checks(self, value: int) -> None:
        self.base.checks = value

    def verify(self, index: int, message: bytes, signature: bytes) -> bool:
        if not 0 <= index < self.n:
            return False
        return self.base.verify(self.members[index], message, signature)

    def verify_weighted(self, counts: np.ndarray, message: bytes, signature: bytes) -> bool:
        if len(counts) != self.n:
            return False
        full = np.zeros(self.base.n, dtype=counts.dtype)
        full[self._at] = counts
        return self.base.verify_weighted(full, message, signature)

    def add(self, a: bytes, b: bytes) -> bytes:
        return self.base.add(a, b)

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        return self.base.aggregate(signatures)
