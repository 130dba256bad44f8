"""Arithmetic in the ring Z_2^64 and the fixed-point encoding of reals into it.

Every share is a ``numpy.uint64`` array: NumPy's unsigned arithmetic wraps modulo 2^64, which
is exactly the ring we compute in, so addition and multiplication of shares are plain NumPy
operations. A real ``x`` is encoded as ``round(x * 2**frac_bits)`` in two's complement; the
encoding of a product carries ``2 * frac_bits`` fractional bits until it is truncated.

Matrix products are the one place where NumPy is slow on integers (no BLAS for uint64), so
:func:`matmul` splits both operands into 16-bit limbs and multiplies the limbs with float64
BLAS, which is exact while every partial sum stays below 2^53.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from accord.base.errors import MpcError

U64 = np.uint64
Ring = npt.NDArray[np.uint64]

MASK64 = (1 << 64) - 1
TRUNC_BITS = 62  # truncation is exact for every |z| < 2^62 (see FixedPoint)


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point parameters shared by all servers of one computation.

    ``frac_bits`` is the precision (the last bit is worth 2^-frac_bits). A value that is
    truncated (a product before truncation, with ``2 * frac_bits`` fractional bits) must lie
    in [-2^62, 2^62) (:data:`TRUNC_BITS`): inside that range truncation is exact to one unit
    in the last place, always; outside it the result is wrong (never less private: the
    opened value is masked uniformly over the whole ring whatever ``z`` is). With 16
    fractional bits that is any product of reals below 2^30 in magnitude. Programs keep
    their values inside it (``sigmoid`` clamps before its polynomial).
    """

    frac_bits: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 30:
            raise MpcError("frac_bits must be in [0, 30]")

    @property
    def scale(self) -> float:
        return float(1 << self.frac_bits)


def encode_fixed(values: npt.ArrayLike, frac_bits: int) -> Ring:
    """Reals -> ring elements with ``frac_bits`` fractional bits (two's complement)."""
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise MpcError("cannot encode NaN or infinity")
    scaled = np.rint(x * float(1 << frac_bits))
    if np.any(np.abs(scaled) >= 2.0**63):
        raise MpcError("value out of the 64-bit fixed-point range")
    return scaled.astype(np.int64).view(np.uint64)


def encode_int(values: npt.ArrayLike) -> Ring:
    """Integers (possibly negative, within 64 bits) -> ring elements."""
    x = np.asarray(values)
    if x.dtype == np.uint64:
        return x.copy()
    if x.dtype.kind == "O":
        try:
            return np.array([int(v) & MASK64 for v in x.ravel()], dtype=np.uint64).reshape(x.shape)
        except (TypeError, ValueError) as e:
            raise MpcError(f"not an integer array: {e}") from None
    if x.dtype.kind not in "iub":
        raise MpcError(f"expected integers, got dtype {x.dtype}")
    return x.astype(np.int64).view(np.uint64)


def decode_fixed(ring: Ring, frac_bits: int) -> npt.NDArray[np.float64]:
    """Ring elements with ``frac_bits`` fractional bits -> float64 (signed)."""
    return np.asarray(ring, dtype=np.uint64).view(np.int64).astype(np.float64) / float(
        1 << frac_bits
    )


def decode_int(ring: Ring) -> npt.NDArray[np.int64]:
    return np.asarray(ring, dtype=np.uint64).view(np.int64).copy()


# --- matrix products ---------------------------------------------------------------------

_LIMB = 22
_NLIMBS = 3  # 22 + 22 + 20 bits
_LIMB_MASK = np.uint64((1 << _LIMB) - 1)
_K_CHUNK = 511  # 511 * (2^22 - 1)^2 < 2^53: every limb product sum is an exact float64
_FLOAT_THRESHOLD = 200_000  # below this many multiply-adds the integer loop is cheaper


def _limbs(x: Ring) -> list[npt.NDArray[np.float64]]:
    return [((x >> np.uint64(_LIMB * p)) & _LIMB_MASK).astype(np.float64) for p in range(_NLIMBS)]


def matmul(a: Ring, b: Ring) -> Ring:
    """``a @ b`` modulo 2^64 with NumPy matmul semantics (1-D and 2-D operands, stacks).

    NumPy has no BLAS for integers, so large products split both operands into 22-bit limbs
    and multiply limbs with float64 BLAS: a limb product summed over at most 511 terms stays
    below 2^53 and is exact, so the inner axis is cut into chunks of 511. Only the limb pairs
    whose weight 2^(22 (p + q)) is below 2^64 are needed: 6 of 9.
    """
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if a.ndim == 0 or b.ndim == 0:
        raise MpcError("matmul needs arrays of at least one dimension")
    k = a.shape[-1]
    work = a.size * (b.shape[-1] if b.ndim > 1 else 1)
    if work < _FLOAT_THRESHOLD:
        return np.matmul(a, b)
    out: Ring | None = None
    for start in range(0, k, _K_CHUNK):
        stop = min(k, start + _K_CHUNK)
        ac = a[..., start:stop]
        bc = b[start:stop] if b.ndim == 1 else b[..., start:stop, :]
        la, lb = _limbs(ac), _limbs(bc)
        for p in range(_NLIMBS):
            for q in range(_NLIMBS - p):
                term = np.matmul(la[p], lb[q]).astype(np.uint64) << np.uint64(_LIMB * (p + q))
                out = term if out is None else out + term
    assert out is not None
    return out
