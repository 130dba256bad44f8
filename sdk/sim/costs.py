"""The simulator's cost model: signature checks by signer count, and message sizes.

**Verification.** A validator checks a vote aggregate by summing its signers' public keys
(each times its count) and doing one pairing check, so the cost grows with the signer count;
at 10,000 validators key aggregation, not the pairing, is most of it. :class:`VerifyCost`
charges ``fixed + per_signer * signers`` of virtual CPU time per check, with two slopes as
:class:`accord.consensus.crypto.BlsCrypto` has two paths: every count 1 (blspy sums the keys in
C) and some count above 1 (gossip merged overlapping aggregates; keys are scaled in Python).
A single-key check (a sortition ticket) costs ``single_us``.

:data:`MEASURED` holds the fit of ``accord bench aggverify`` on the development machine
(2026-12-02, 2 cores x86_64 AMD EPYC, Python 3.11.7, blspy; the machine shared with other
jobs, speed probe 8,200-11,500 Ed25519 checks/s against ~30,000/s idle, so these figures are
pessimistic by up to ~3x). Measured per check:

=========  ============  ===============
 signers    counts all 1   counts 1-3
=========  ============  ===============
 1          2.96 ms        2.87 ms
 10         3.06 ms        3.38 ms
 100        3.19 ms        4.06 ms
 1,000      5.42 ms        25.0 ms
 10,000     49.1 ms        152 ms
=========  ============  ===============

and one single-key verification 2.34 ms.

:class:`MeteredCrypto` wraps the simulation's :class:`~accord.consensus.crypto.Crypto` and adds
each check's modelled cost to :attr:`MeteredCrypto.cost_us`; the engine turns the increase
into busy time of the validator that made the check. It changes no verdict.

**Transactions.** :func:`tx_pool` makes transactions of an exact encoded size (250 bytes by
default: a token transfer with an Ed25519 key and signature is ~200-250 bytes) for the
simulated application's blocks, so blocks have their real wire size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accord.base.errors import AccordError
from accord.base.types import Tx
from accord.consensus.crypto import Crypto

FRAME_OVERHEAD = 64
"""Bytes each message costs on a link beyond its payload (IPv4 + TCP headers, 40 bytes, and
the transport's frame header and length)."""


@dataclass(frozen=True)
class VerifyCost:
    """Virtual CPU microseconds per signature check, by signer count (see the module doc)."""

    fixed_us: float
    per_signer_us: float
    per_weighted_signer_us: float
    weighted_fixed_us: float
    single_us: float

    def aggregate_us(self, signers: int, weighted: bool) -> float:
        if weighted:
            return self.weighted_fixed_us + self.per_weighted_signer_us * signers
        return self.fixed_us + self.per_signer_us * signers


MEASURED = VerifyCost(
    fixed_us=2828.4,
    per_signer_us=3.709,
    weighted_fixed_us=2903.3,
    per_weighted_signer_us=16.403,
    single_us=2338.0,
)
"""``accord bench aggverify`` on 2026-12-02 (module docstring): unit fit 2,828 us + 3.71 us
per signer, weighted fit 2,903 us + 16.4 us per signer, single check 2,338 us."""


def parse_verify_cost(text: str) -> VerifyCost | None:
    """``""``/``"off"``: none; ``"measured"``: :data:`MEASURED`; or five numbers in us,
    ``fixed,per_signer,weighted_fixed,per_weighted_signer,single``."""
    t = text.strip().lower()
    if t in ("", "off", "none"):
        return None
    if t == "measured":
        return MEASURED
    try:
        xs = [float(x) for x in t.split(",")]
    except ValueError:
        raise AccordError(f"bad verify cost {text!r}: 'measured' or five numbers in us") from None
    if len(xs) != 5 or any(x < 0 or x != x for x in xs):
        raise AccordError(f"bad verify cost {text!r}: five non-negative numbers in us")
    return VerifyCost(
        fixed_us=xs[0],
        per_signer_us=xs[1],
        weighted_fixed_us=xs[2],
        per_weighted_signer_us=xs[3],
        single_us=xs[4],
    )


class MeteredCrypto:
    """A :class:`Crypto` that forwards every call and meters each check by signer count.

    ``checks`` counts checks as the wrapped crypto does (the engine's flat ``verify_ms`` still
    applies to it); ``cost_us`` adds the :class:`VerifyCost` of each. The simulator shares
    decoded messages between validators, so an aggregate's verdict may be known already when
    another validator checks it: :meth:`recheck` (called by
    :meth:`accord.consensus.aggregate.Aggregate.verify`) charges that validator the same cost
    as a fresh check, since in a real network every validator does its own."""

    def __init__(self, inner: Crypto, cost: VerifyCost) -> None:
        self.inner = inner
        self.cost = cost
        self.n = inner.n
        self.checks = 0
        self.cost_us = 0.0

    def verify(self, index: int, message: bytes, signature: bytes) -> bool:
        self.checks += 1
        self.cost_us += self.cost.single_us
        return self.inner.verify(index, message, signature)

    def verify_weighted(self, counts: np.ndarray, message: bytes, signature: bytes) -> bool:
        self.checks += 1
        if len(counts) == self.n:
            signers = int(np.count_nonzero(counts))
            self.cost_us += self.cost.aggregate_us(signers, signers > 0 and int(counts.max()) > 1)
        return self.inner.verify_weighted(counts, message, signature)

    def recheck(self, signers: int, max_count: int) -> None:
        """Charge a check whose verdict the caller already holds (see the class docstring)."""
        self.checks += 1
        self.cost_us += self.cost.aggregate_us(signers, max_count > 1)

    def add(self, a: bytes, b: bytes) -> bytes:
        return self.inner.add(a, b)

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        return self.inner.aggregate(signatures)


def tx_pool(count: int, size: int, chain_id: str, seed: int = 0) -> tuple[Tx, ...]:
    """``count`` distinct transfers whose canonical encoding is exactly ``size`` bytes.

    The simulated application never executes them (validity is the block's state root); they
    give blocks their real size on the wire. Keys and signatures are deterministic filler of
    the right lengths, padded with a memo to the requested size."""
    if count <= 0:
        return ()
    base = hashlib.sha256(b"accord-sim-tx" + seed.to_bytes(8, "big")).digest()

    def make(i: int, memo_len: int) -> Tx:
        h = hashlib.sha256(base + i.to_bytes(8, "big")).digest()
        return Tx(
            chain_id=chain_id,
            contract="token",
            method="transfer",
            args={"amount": 1 + i % 1000, "memo": b"\x00" * memo_len, "to": h},
            public_key=hashlib.sha256(h).digest(),
            nonce=i,
            gas_limit=100_000,
            signature=hashlib.sha512(h).digest(),
        )

    bare = len(make(0, 0).encode())
    if size < bare:
        raise AccordError(f"a simulated transaction takes at least {bare} bytes")
    txs = []
    for i in range(count):
        memo = size - bare
        tx = make(i, memo)
        while len(tx.encode()) != size and memo > 0:  # msgpack length prefixes grow at 32/256
            memo -= len(tx.encode()) - size
            tx = make(i, max(0, memo))
        txs.append(tx)
    return tuple(txs)
