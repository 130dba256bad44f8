"""``accord bench aggverify``: what verifying one vote aggregate costs, by its signer count.

A validator checks every vote aggregate it receives (that is not a subset of one it holds)
the way :class:`accord.consensus.crypto.BlsCrypto` does: sum the signers' public keys (each
times its count), then one pairing check of the aggregate signature. Key aggregation is
O(signers), so at thousands of validators it, not the pairing, dominates. For each signer
count k (``--signers``, default 1, 10, 100, 1000, 10000) this measures, on one core:

* ``unit``: every count 1 (an aggregate of distinct votes; blspy sums the keys in C inside
  ``fast_aggregate_verify``), through ``BlsCrypto.verify_weighted`` as the core calls it;
* ``weighted``: counts 1-3 (what gossip merging of overlapping aggregates produces; the keys
  are scaled by double-and-add in Python, :func:`accord.base.crypto.bls.weighted_aggregate_verify`).

Then it fits ``cost = fixed + per_signer * k`` to each by least squares (weights 1/cost^2, so
the small counts, where the fixed part shows, count as much as the large ones) and prints the
fit next to the measured figures. The simulator's cost model (:mod:`accord.sim.costs`)
carries these fitted figures; ``accord sim --verify-cost measured`` charges them.

Signatures are made quickly but honestly: the aggregate of the signers' votes equals one
signature by the count-weighted sum of their secret keys (BLS is linear), checked once against
the aggregate of individual signatures for a small k.
"""

from __future__ import annotations

import argparse
import random
import timeit
from typing import Any

import numpy as np

from accord.base.crypto import bls
from accord.base.errors import ValidationError
from accord.consensus.crypto import BlsCrypto

BLS_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
MESSAGE = b"accord-bench-aggverify vote"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--signers", default="1,10,100,1000,10000", help="signer counts to measure")
    p.add_argument(
        "--min-time", type=float, default=0.3, help="seconds of timing per figure (at least)"
    )


def _sign_weighted(secrets: list[int], counts: np.ndarray) -> bytes:
    total = sum(int(c) * secrets[i] for i, c in enumerate(counts.tolist()) if c) % BLS_ORDER
    return bls.sign(total.to_bytes(32, "big"), MESSAGE)


def _time(fn: Any, min_time: float) -> float:
    """Seconds per call: the best of three timeit batches of at least ``min_time`` / 3 each."""
    t = timeit.Timer(fn)
    n, secs = t.autorange()
    per = secs / n
    reps = max(1, int(min_time / 3 / per))
    return min(t.repeat(repeat=3, number=reps)) / reps


def fit(ks: list[int], costs_us: list[float]) -> tuple[float, float]:
    """``(fixed_us, per_signer_us)`` minimising the relative squared error of fixed + per * k."""
    a = np.array([[1.0, float(k)] for k in ks])
    y = np.array(costs_us, dtype=float)
    w = 1.0 / y
    sol, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    return float(sol[0]), float(sol[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    ks = sorted({int(x) for x in args.signers.split(",") if x.strip()})
    if not ks or ks[0] < 1:
        raise ValidationError("--signers needs positive counts")
    n = ks[-1]
    raw = [bls.demo_secret(f"bench-aggverify-{i}") for i in range(n)]
    keys = [bls.public_key(s) for s in raw]
    secrets = [int.from_bytes(s, "big") for s in raw]
    crypto = BlsCrypto(keys, checked=True)  # bench keys: no proofs of possession to check
    rng = random.Random(14)

    # The summed-key shortcut is exactly the aggregate of individual votes (checked once).
    small = np.zeros(n, dtype=np.uint16)
    small[:3] = (1, 2, 1)
    agg = bls.aggregate(
        [
            bls.sign(raw[0], MESSAGE),
            bls.sign(raw[1], MESSAGE),
            bls.sign(raw[1], MESSAGE),
            bls.sign(raw[2], MESSAGE),
        ]
    )
    if agg != _sign_weighted(secrets, small):
        raise ValidationError("summed-key signature differs from the aggregate")

    rows = []
    for k in ks:
        idx = sorted(rng.sample(range(n), k))
        unit = np.zeros(n, dtype=np.uint16)
        unit[idx] = 1
        weighted = np.zeros(n, dtype=np.uint16)
        weighted[idx] = [rng.choice((1, 1, 2, 3)) for _ in idx]
        if k == 1:
            weighted[idx] = 2  # a single signer counted twice still takes the weighted path
        row: dict[str, Any] = {"signers": k}
        for name, counts in (("unit", unit), ("weighted", weighted)):
            sig = _sign_weighted(secrets, counts)
            if not crypto.verify_weighted(counts, MESSAGE, sig):
                raise ValidationError(f"{name} aggregate of {k} signers does not verify")
            row[f"{name}_ms"] = round(
                _time(lambda c=counts, s=sig: crypto.verify_weighted(c, MESSAGE, s), args.min_time)
                * 1e3,
                3,
            )
        rows.append(row)
    single_sig = bls.sign(raw[0], MESSAGE)
    single_ms = _time(lambda: bls.verify(keys[0], MESSAGE, single_sig), args.min_time) * 1e3
    out: dict[str, Any] = {"single_verify_ms": round(single_ms, 3), "by_signers": rows}
    for name in ("unit", "weighted"):
        fixed, per = fit([r["signers"] for r in rows], [r[f"{name}_ms"] * 1e3 for r in rows])
        out[f"{name}_fit"] = {"fixed_us": round(fixed, 1), "per_signer_us": round(per, 3)}
    return out
