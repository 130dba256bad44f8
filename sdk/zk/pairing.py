"""A faster pure-Python optimal-ate pairing check for BN254, for Groth16 verification.

py_ecc's pairing is a clear reference but slow for a verifier (one Miller loop ~0.1 s, one
final exponentiation ~0.16 s on an idle core, and Groth16 needs three loops). This module
computes the *product* of several pairings the way verifiers do:

* one shared Miller loop: a single squaring of the accumulator per step for all pairs, each
  pair contributing only a sparse line (5 non-zero coefficients of 12);
* G2 points stay on the twist, in Fq2 affine coordinates (the slope of each line is an Fq2
  value; the line's value at P is assembled directly in Fq12);
* the final exponentiation splits (q^12 - 1)/r into the easy part (q^6 - 1)(q^2 + 1), done with
  Frobenius maps (cheap in this basis), and the hard part (q^4 - q^2 + 1)/r, done as a
  4-base multi-exponentiation in base q.

Fq12 = Fq[w]/(w^12 - 18 w^6 + 82), Fq2 = Fq[i]/(i^2 + 1) with i = w^6 - 9: py_ecc's towers, so
results equal py_ecc's ``pairing`` exactly (a test checks this). Elements are lists of ints.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from py_ecc.optimized_bn128 import curve_order, field_modulus
from py_ecc.optimized_bn128.optimized_pairing import pseudo_binary_encoding

Q = field_modulus
R = curve_order

Fq2 = tuple[int, int]
Fq12 = list[int]

# --- Fq2 ------------------------------------------------------------------------------------


def _f2_add(a: Fq2, b: Fq2) -> Fq2:
    return ((a[0] + b[0]) % Q, (a[1] + b[1]) % Q)


def _f2_sub(a: Fq2, b: Fq2) -> Fq2:
    return ((a[0] - b[0]) % Q, (a[1] - b[1]) % Q)


def _f2_mul(a: Fq2, b: Fq2) -> Fq2:
    return ((a[0] * b[0] - a[1] * b[1]) % Q, (a[0] * b[1] + a[1] * b[0]) % Q)


def _f2_scal(a: Fq2, k: int) -> Fq2:
    return (a[0] * k % Q, a[1] * k % Q)


def _f2_inv(a: Fq2) -> Fq2:
    inv = pow(a[0] * a[0] + a[1] * a[1], Q - 2, Q)
    return (a[0] * inv % Q, -a[1] * inv % Q)


def _f2_conj(a: Fq2) -> Fq2:
    return (a[0], -a[1] % Q)


def _f2_pow(a: Fq2, e: int) -> Fq2:
    out: Fq2 = (1, 0)
    while e:
        if e & 1:
            out = _f2_mul(out, a)
        a = _f2_mul(a, a)
        e >>= 1
    return out


# --- Fq12 -----------------------------------------------------------------------------------


def _reduce(t: list[int]) -> Fq12:
    """Fold coefficients of w^12.. back with w^12 = 18 w^6 - 82."""
    for k in range(len(t) - 1, 11, -1):
        c = t[k]
        if c:
            t[k - 6] += 18 * c
            t[k - 12] -= 82 * c
    return [x % Q for x in t[:12]]


def _mul(a: Fq12, b: Fq12) -> Fq12:
    t = [0] * 23
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                t[i + j] += x * y
    return _reduce(t)


def _sparse_mul(a: Fq12, line: Sequence[tuple[int, int]]) -> Fq12:
    t = [0] * 23
    for j, y in line:
        for i, x in enumerate(a):
            t[i + j] += x * y
    return _reduce(t)


def _emb(u: Fq2, k: int) -> list[tuple[int, int]]:
    """u * w^k as sparse terms: u = u0 + u1 i maps to (u0 - 9 u1) + u1 w^6."""
    return [(k, (u[0] - 9 * u[1]) % Q), (k + 6, u[1])]


def _from_terms(terms: Sequence[tuple[int, int]]) -> Fq12:
    t = [0] * 23
    for k, c in terms:
        t[k] += c
    return _reduce(t)


def _inv(a: Fq12) -> Fq12:
    from py_ecc.optimized_bn128 import FQ12

    return [int(c) for c in FQ12(a).inv().coeffs]


ONE: Fq12 = [1] + [0] * 11


def _pow(a: Fq12, e: int) -> Fq12:
    out = ONE
    for bit in bin(e)[2:]:
        out = _mul(out, out)
        if bit == "1":
            out = _mul(out, a)
    return out


# w^6 = 9 + i, so w^(q^k) = w * (9 + i)^((q^k - 1)/6), an Fq2 constant times w.
_XI: Fq2 = (9, 1)


@functools.cache
def _frob_table(k: int) -> tuple[Fq12, ...]:
    """(w^i)^(q^k) for i = 0..11."""
    gamma = _f2_pow(_XI, (Q**k - 1) // 6)
    wq = _from_terms(_emb(gamma, 1))
    out = [ONE]
    for _ in range(11):
        out.append(_mul(out[-1], wq))
    return tuple(out)


def _frob(a: Fq12, k: int) -> Fq12:
    """a^(q^k): coefficients are in Fq (fixed by Frobenius), only the basis moves."""
    table = _frob_table(k)
    acc = [0] * 12
    for c, row in zip(a, table, strict=True):
        if c:
            for j, v in enumerate(row):
                if v:
                    acc[j] += c * v
    return [x % Q for x in acc]


_HARD = (Q**4 - Q**2 + 1) // R


@functools.lru_cache(maxsize=1)
def _hard_digits() -> tuple[int, int, int, int]:
    d, out = _HARD, []
    for _ in range(4):
        out.append(d % Q)
        d //= Q
    assert d == 0
    return tuple(out)  # type: ignore[return-value]


def final_exponentiation(f: Fq12) -> Fq12:
    # easy part: f^((q^6 - 1)(q^2 + 1))
    f = _mul(_frob(f, 6), _inv(f))
    f = _mul(_frob(f, 2), f)
    # hard part: f^(d0 + d1 q + d2 q^2 + d3 q^3), one shared square-and-multiply
    digits = _hard_digits()
    bases = [f, _frob(f, 1), _frob(f, 2), _frob(f, 3)]
    out = ONE
    for bit in range(max(d.bit_length() for d in digits) - 1, -1, -1):
        out = _mul(out, out)
        for d, base in zip(digits, bases, strict=True):
            if d >> bit & 1:
                out = _mul(out, base)
    return out


# --- the Miller loop ------------------------------------------------------------------------

G1Affine = tuple[int, int]
G2Affine = tuple[Fq2, Fq2]


def _line(m: Fq2, x1: Fq2, y1: Fq2, p: G1Affine) -> list[tuple[int, int]]:
    """The line of slope m (on the twist) through (x1, y1), evaluated at P, as sparse Fq12:
    l = m w (xp - x1 w^2) - (yp - y1 w^3) = -yp + (m xp) w + (y1 - m x1) w^3."""
    mx = _f2_scal(m, p[0])
    c = _f2_sub(y1, _f2_mul(m, x1))
    return [(0, -p[1] % Q), *_emb(mx, 1), *_emb(c, 3)]


_G2 = (_f2_pow(_XI, (Q - 1) // 3), _f2_pow(_XI, (Q - 1) // 2))


def _frob_point(pt: G2Affine) -> G2Affine:
    return (_f2_mul(_f2_conj(pt[0]), _G2[0]), _f2_mul(_f2_conj(pt[1]), _G2[1]))


def miller_product(pairs: Sequence[tuple[G1Affine, G2Affine]]) -> Fq12:
    """prod_i f_{Q_i}(P_i) with one shared accumulator (before the final exponentiation)."""
    pairs = [(p, q) for p, q in pairs]
    rs = [q for _, q in pairs]
    f = ONE
    for v in pseudo_binary_encoding[63::-1]:
        f = _mul(f, f)
        for i, (p, q) in enumerate(pairs):
            x, y = rs[i]
            m = _f2_mul(_f2_scal(_f2_mul(x, x), 3), _f2_inv(_f2_scal(y, 2)))
            f = _sparse_mul(f, _line(m, x, y, p))
            x3 = _f2_sub(_f2_mul(m, m), _f2_scal(x, 2))
            rs[i] = (x3, _f2_sub(_f2_mul(m, _f2_sub(x, x3)), y))
            if v:
                qq = q if v == 1 else (q[0], ((-q[1][0]) % Q, (-q[1][1]) % Q))
                rs[i], line = _add(rs[i], qq, p)
                f = _sparse_mul(f, line)
    for i, (p, q) in enumerate(pairs):
        q1 = _frob_point(q)
        q2 = _frob_point(q1)
        nq2 = (q2[0], ((-q2[1][0]) % Q, (-q2[1][1]) % Q))
        rs[i], line = _add(rs[i], q1, p)
        f = _sparse_mul(f, line)
        _, line = _add(rs[i], nq2, p)
        f = _sparse_mul(f, line)
    return f


def _add(r: G2Affine, q: G2Affine, p: G1Affine) -> tuple[G2Affine, list[tuple[int, int]]]:
    (x1, y1), (x2, y2) = r, q
    m = _f2_mul(_f2_sub(y2, y1), _f2_inv(_f2_sub(x2, x1)))
    x3 = _f2_sub(_f2_sub(_f2_mul(m, m), x1), x2)
    y3 = _f2_sub(_f2_mul(m, _f2_sub(x1, x3)), y1)
    return (x3, y3), _line(m, x1, y1, p)


def pairing_product(pairs: Sequence[tuple[G1Affine, G2Affine]]) -> Fq12:
    """prod_i e(P_i, Q_i), with P_i in G1 and Q_i in G2 (affine, not infinity)."""
    return final_exponentiation(miller_product(pairs))
