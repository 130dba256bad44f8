"""A pure-Python Groth16 verifier for snarkjs proofs (BN254), for light clients and validators
without Node.js, plus compact proof bytes (compressed points, 128 bytes).

What a verifier must refuse before it pairs anything (each is a test in ``tests/``):

* coordinates that are not canonical field elements (>= q), points off the curve, the point
  at infinity for A or C, and a B outside G2's prime-order subgroup (G2 has a cofactor; G1
  has none, so on-curve suffices there);
* public inputs that are not canonical scalars (>= r): x and x + r give the same pairing, so
  accepting both would let one proof be replayed under a second set of public inputs;
* the wrong number of public inputs, malformed JSON, a protocol or curve it does not speak.

The check itself is e(A, B) = e(alpha, beta) * e(vk_x, gamma) * e(C, delta), evaluated as one
product e(A, B) * e(-vk_x, gamma) * e(-C, delta) -- one shared Miller loop, one final
exponentiation (:mod:`accord.zk.pairing`) -- compared against e(alpha, beta), cached per key.
vk_x uses fixed-base window tables of the IC points, also cached per key.

snarkjs writes G2 coordinates as [[x.c0, x.c1], [y.c0, y.c1]]: py_ecc's FQ2([c0, c1]) order.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from py_ecc.optimized_bn128 import (
    FQ,
    FQ2,
    add,
    b,
    b2,
    curve_order,
    field_modulus,
    is_inf,
    is_on_curve,
    multiply,
    neg,
    normalize,
)
from py_ecc.optimized_bn128.optimized_pairing import (
    cast_point_to_fq12,
    final_exponentiate,
    miller_loop,
    twist,
)

from accord.base.errors import ProofError
from accord.zk import pairing

Q = field_modulus
R = curve_order

G1Point = tuple[FQ, FQ, FQ]
G2Point = tuple[FQ2, FQ2, FQ2]


# --- parsing ------------------------------------------------------------------------------


_DECIMAL = re.compile(r"0|[1-9][0-9]{0,79}")


def _int(v: Any, what: str, bound: int) -> int:
    """A number as an int or its one canonical decimal text: ASCII digits, no sign, no leading
    zero, no whitespace (``str.isdigit`` would let in '0012' and other scripts' digits, giving
    one proof several encodings)."""
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ProofError(f"{what}: expected a decimal number")
    if isinstance(v, str):
        if not _DECIMAL.fullmatch(v):
            raise ProofError(f"{what}: expected a canonical decimal number")
        v = int(v)
    if not 0 <= v < bound:
        raise ProofError(f"{what}: not a canonical field element")
    return v


def parse_g1(v: Any, what: str, allow_inf: bool = False) -> G1Point:
    if not isinstance(v, list) or len(v) not in (2, 3):
        raise ProofError(f"{what}: expected [x, y, z]")
    x, y = _int(v[0], what, Q), _int(v[1], what, Q)
    z = _int(v[2], what, Q) if len(v) == 3 else 1
    if z == 0:
        if not allow_inf:
            raise ProofError(f"{what}: the point at infinity")
        return (FQ(1), FQ(1), FQ(0))
    if z != 1:
        raise ProofError(f"{what}: expected affine coordinates (z = 1)")
    pt = (FQ(x), FQ(y), FQ(1))
    if not is_on_curve(pt, b):
        raise ProofError(f"{what}: not on the curve")
    return pt


SUBGROUP_ERROR = "proof: B is not in the prime-order subgroup of G2"
"""The one message for a B outside G2's subgroup, whichever encoding or verifier found it."""


def in_g2_subgroup(pt: G2Point) -> bool:
    return bool(is_inf(multiply(pt, R)))


def parse_g2(v: Any, what: str, subgroup: bool = True) -> G2Point:
    if not isinstance(v, list) or len(v) not in (2, 3):
        raise ProofError(f"{what}: expected [[x0, x1], [y0, y1], [z0, z1]]")
    coords = []
    for c in v:
        if not isinstance(c, list) or len(c) != 2:
            raise ProofError(f"{what}: expected pairs of coordinates")
        coords.append((_int(c[0], what, Q), _int(c[1], what, Q)))
    if len(coords) == 3 and coords[2] != (1, 0):
        raise ProofError(f"{what}: expected affine coordinates (z = 1) and not infinity")
    pt = (FQ2(list(coords[0])), FQ2(list(coords[1])), FQ2.one())
    if not is_on_curve(pt, b2):
        raise ProofError(f"{what}: not on the curve (coordinate order is [c0, c1])")
    if subgroup and not in_g2_subgroup(pt):
        raise ProofError(f"{what}: not in the prime-order subgroup of G2")
    return pt


@dataclass(frozen=True)
class Proof:
    a: G1Point
    b: G2Point
    c: G1Point


@dataclass
class VerifyingKey:
    alpha: G1Point
    beta: G2Point
    gamma: G2Point
    delta: G2Point
    ic: list[G1Point]

    @property
    def n_public(self) -> int:
        return len(self.ic) - 1

    @functools.cached_property
    def alpha_beta(self) -> list[int]:
        """e(alpha, beta): the same for every proof, so computed once per key."""
        return pairing.pairing_product([(_g1_affine(self.alpha), _g2_affine(self.beta))])

    @functools.cached_property
    def gamma_affine(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return _g2_affine(self.gamma)

    @functools.cached_property
    def delta_affine(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return _g2_affine(self.delta)

    @functools.cached_property
    def ic_tables(self) -> list[list[G1Point]]:
        """Per IC point, its multiples by 16^k * d (d < 16): a fixed-base window table that makes
        vk_x cost ~64 additions per public input instead of ~380 group operations."""
        tables = []
        for pt in self.ic[1:]:
            rows = []
            base = pt
            for _ in range(64):  # 64 windows of 4 bits cover 256-bit scalars
                row: list[G1Point] = [(FQ(1), FQ(1), FQ(0))]
                for _d in range(15):
                    row.append(add(row[-1], base))
                rows.append(row)
                base = add(row[15], base)
            tables.append([p for row in rows for p in row])
        return tables


def parse_vk(vk: Any) -> VerifyingKey:
    if isinstance(vk, str | bytes):
        try:
            vk = json.loads(vk)
        except ValueError as e:
            raise ProofError(f"verification key is not JSON: {e}") from None
    if not isinstance(vk, dict):
        raise ProofError("verification key must be a JSON object")
    if vk.get("protocol") != "groth16" or vk.get("curve") not in ("bn128", "bn254"):
        raise ProofError("only groth16 over bn128 is supported")
    ic = vk.get("IC")
    if not isinstance(ic, list) or not ic:
        raise ProofError("verification key has no IC points")
    n_pub = vk.get("nPublic")
    if n_pub is not None and n_pub != len(ic) - 1:
        raise ProofError("nPublic does not match the IC points")
    return VerifyingKey(
        alpha=parse_g1(vk.get("vk_alpha_1"), "vk_alpha_1"),
        beta=parse_g2(vk.get("vk_beta_2"), "vk_beta_2"),
        gamma=parse_g2(vk.get("vk_gamma_2"), "vk_gamma_2"),
        delta=parse_g2(vk.get("vk_delta_2"), "vk_delta_2"),
        ic=[parse_g1(p, f"IC[{i}]") for i, p in enumerate(ic)],
    )


def parse_proof(proof: Any, subgroup: bool = True) -> Proof:
    """A snarkjs proof (dict or JSON text) or 128 compressed bytes, checked in THE order (the
    verification outcome, error message included, enters receipts, so every verifier must find
    the same first fault): the encoding; A, B, C in that order (canonical coordinates, on
    their curves, not infinity); then, last, B in G2's prime-order subgroup (the costly check;
    ``subgroup=False`` leaves it to the caller, who must do it next, before any pairing: the
    validators' fast path has the snarkjs worker do it). See :func:`precheck`."""
    if isinstance(proof, bytes | bytearray):
        p = decompress_proof(bytes(proof), subgroup=False)
    else:
        if isinstance(proof, str):
            try:
                proof = json.loads(proof)
            except ValueError as e:
                raise ProofError(f"proof is not JSON: {e}") from None
        if not isinstance(proof, dict):
            raise ProofError("proof must be a JSON object")
        if proof.get("protocol", "groth16") != "groth16":
            raise ProofError("only groth16 proofs are supported")
        p = Proof(
            parse_g1(proof.get("pi_a"), "pi_a"),
            parse_g2(proof.get("pi_b"), "pi_b", subgroup=False),
            parse_g1(proof.get("pi_c"), "pi_c"),
        )
    if subgroup:
        check_subgroup(p)
    return p


def check_subgroup(p: Proof) -> None:
    if not in_g2_subgroup(p.b):
        raise ProofError(SUBGROUP_ERROR)


def precheck(
    vk: VerifyingKey, proof: Any, public: Sequence[Any], *, subgroup: bool = True
) -> tuple[Proof, list[int]]:
    """Every check before the pairing, in the one order all verifiers follow: (1) the public
    inputs (a list of ``vk.n_public`` canonical scalars below r), (2) the proof's encoding and
    points (:func:`parse_proof`), (3) B's subgroup (skipped with ``subgroup=False``: the
    caller's next step). A fault raises :class:`ProofError` with the same message whichever
    verifier runs; a test compares receipts of both over tampered proofs."""
    inputs = parse_public(public, vk.n_public)
    return parse_proof(proof, subgroup=subgroup), inputs


def parse_public(public: Sequence[Any], n: int) -> list[int]:
    if not isinstance(public, list | tuple):
        raise ProofError("public inputs must be a list")
    if len(public) != n:
        raise ProofError(f"expected {n} public inputs, got {len(public)}")
    return [_int(x, f"public input {i}", R) for i, x in enumerate(public)]


# --- verification -------------------------------------------------------------------------


def _vk_x(vk: VerifyingKey, inputs: Sequence[int]) -> G1Point:
    acc = vk.ic[0]
    tables = vk.ic_tables
    for x, table in zip(inputs, tables, strict=True):
        k = 0
        while x:
            d = x & 15
            if d:
                acc = add(acc, table[k * 16 + d])
            x >>= 4
            k += 1
    return acc


def _g1_affine(pt: G1Point) -> tuple[int, int]:
    x, y = normalize(pt)
    return int(x.n), int(y.n)


def _g2_affine(pt: G2Point) -> tuple[tuple[int, int], tuple[int, int]]:
    x, y = normalize(pt)
    return (int(x.coeffs[0]), int(x.coeffs[1])), (int(y.coeffs[0]), int(y.coeffs[1]))


def verify_parsed(vk: VerifyingKey, proof: Proof, inputs: Sequence[int]) -> bool:
    """e(A, B) * e(-vk_x, gamma) * e(-C, delta) == e(alpha, beta): one shared Miller loop and
    one final exponentiation (:mod:`accord.zk.pairing`)."""
    vk_x = _vk_x(vk, inputs)
    pairs = [
        (_g1_affine(proof.a), _g2_affine(proof.b)),
        (_g1_affine(neg(proof.c)), vk.delta_affine),
    ]
    if not is_inf(vk_x):
        pairs.append((_g1_affine(neg(vk_x)), vk.gamma_affine))
    return pairing.pairing_product(pairs) == vk.alpha_beta


def verify_parsed_reference(vk: VerifyingKey, proof: Proof, inputs: Sequence[int]) -> bool:
    """The same check with py_ecc's own Miller loop and final exponentiation (slow; kept as
    the reference the fast path is tested against)."""
    vk_x = _vk_x(vk, inputs)
    f = miller_loop(twist(proof.b), cast_point_to_fq12(proof.a), final_exponentiate=False)
    if not is_inf(vk_x):
        f = f * miller_loop(
            twist(vk.gamma), cast_point_to_fq12(neg(vk_x)), final_exponentiate=False
        )
    f = f * miller_loop(twist(vk.delta), cast_point_to_fq12(neg(proof.c)), final_exponentiate=False)
    ab = final_exponentiate(miller_loop(twist(vk.beta), cast_point_to_fq12(vk.alpha)))
    return bool(final_exponentiate(f) == ab)


def verify(vk: Any, proof: Any, public: Sequence[Any]) -> bool:
    """True iff ``proof`` is valid for ``public`` under ``vk``. Malformed input raises
    :class:`ProofError` (a clear reason); a well-formed wrong proof returns False."""
    key = vk if isinstance(vk, VerifyingKey) else parse_vk(vk)
    p, inputs = precheck(key, proof, public)
    return verify_parsed(key, p, inputs)


# --- compressed points --------------------------------------------------------------------

_FLAG_NEG = 0x80  # y is the larger of the two roots
_FLAG_INF = 0x40


def _sqrt_fq(a: int) -> int | None:
    r = pow(a, (Q + 1) // 4, Q)  # q = 3 mod 4
    return r if r * r % Q == a % Q else None


def _fq2_mul(x: tuple[int, int], y: tuple[int, int]) -> tuple[int, int]:
    return ((x[0] * y[0] - x[1] * y[1]) % Q, (x[0] * y[1] + x[1] * y[0]) % Q)


def _fq2_pow(x: tuple[int, int], e: int) -> tuple[int, int]:
    out = (1, 0)
    while e:
        if e & 1:
            out = _fq2_mul(out, x)
        x = _fq2_mul(x, x)
        e >>= 1
    return out


def _sqrt_fq2(a: tuple[int, int]) -> tuple[int, int] | None:
    """Square root in Fq2 = Fq[i]/(i^2 + 1) for q = 3 mod 4 (the complex method)."""
    a1 = _fq2_pow(a, (Q - 3) // 4)
    alpha = _fq2_mul(_fq2_mul(a1, a1), a)
    x0 = _fq2_mul(a1, a)
    if alpha == (Q - 1, 0):
        cand = _fq2_mul((0, 1), x0)
    else:
        bb = _fq2_pow(((1 + alpha[0]) % Q, alpha[1]), (Q - 1) // 2)
        cand = _fq2_mul(bb, x0)
    return cand if _fq2_mul(cand, cand) == (a[0] % Q, a[1] % Q) else None


def _big(y: int) -> bool:
    return y > (Q - 1) // 2


def _big2(y: tuple[int, int]) -> bool:
    return _big(y[1]) if y[1] else _big(y[0])


def compress_g1(pt: G1Point) -> bytes:
    if is_inf(pt):
        return bytes([_FLAG_INF]) + bytes(31)
    x, y = (int(c.n) for c in normalize(pt))
    out = bytearray(x.to_bytes(32, "big"))
    if _big(y):
        out[0] |= _FLAG_NEG
    return bytes(out)


def decompress_g1(data: bytes, what: str) -> G1Point:
    if len(data) != 32:
        raise ProofError(f"{what}: a compressed G1 point has 32 bytes")
    flags = data[0] & 0xC0
    x = int.from_bytes(bytes([data[0] & 0x3F]) + data[1:], "big")
    if flags & _FLAG_INF:
        raise ProofError(f"{what}: the point at infinity")
    if x >= Q:
        raise ProofError(f"{what}: not a canonical field element")
    y = _sqrt_fq((x * x * x + 3) % Q)
    if y is None:
        raise ProofError(f"{what}: not on the curve")
    if _big(y) != bool(flags & _FLAG_NEG):
        y = Q - y
    return (FQ(x), FQ(y), FQ(1))


def compress_g2(pt: G2Point) -> bytes:
    xa, ya = normalize(pt)
    x = (int(xa.coeffs[0]), int(xa.coeffs[1]))
    y = (int(ya.coeffs[0]), int(ya.coeffs[1]))
    out = bytearray(x[1].to_bytes(32, "big") + x[0].to_bytes(32, "big"))
    if _big2(y):
        out[0] |= _FLAG_NEG
    return bytes(out)


_B2 = (int(b2.coeffs[0]), int(b2.coeffs[1]))


def decompress_g2(data: bytes, what: str, subgroup: bool = True) -> G2Point:
    if len(data) != 64:
        raise ProofError(f"{what}: a compressed G2 point has 64 bytes")
    flags = data[0] & 0xC0
    if flags & _FLAG_INF:
        raise ProofError(f"{what}: the point at infinity")
    x1 = int.from_bytes(bytes([data[0] & 0x3F]) + data[1:32], "big")
    x0 = int.from_bytes(data[32:], "big")
    if x0 >= Q or x1 >= Q:
        raise ProofError(f"{what}: not a canonical field element")
    x = (x0, x1)
    rhs = _fq2_mul(_fq2_mul(x, x), x)
    rhs = ((rhs[0] + _B2[0]) % Q, (rhs[1] + _B2[1]) % Q)
    y = _sqrt_fq2(rhs)
    if y is None:
        raise ProofError(f"{what}: not on the curve")
    if _big2(y) != bool(flags & _FLAG_NEG):
        y = ((Q - y[0]) % Q, (Q - y[1]) % Q)
    pt = (FQ2([x0, x1]), FQ2([y[0], y[1]]), FQ2.one())
    if subgroup and not in_g2_subgroup(pt):
        raise ProofError(f"{what}: not in the prime-order subgroup of G2")
    return pt


def compress_proof(proof: Any) -> bytes:
    """128 bytes: A (32) || B (64) || C (32)."""
    p = proof if isinstance(proof, Proof) else parse_proof(proof)
    return compress_g1(p.a) + compress_g2(p.b) + compress_g1(p.c)


def decompress_proof(data: bytes, subgroup: bool = True) -> Proof:
    """A || B || C; B's subgroup is checked after all three parse (see :func:`parse_proof`)."""
    if len(data) != 128:
        raise ProofError("a compressed proof has 128 bytes")
    p = Proof(
        decompress_g1(data[:32], "A"),
        decompress_g2(data[32:96], "B", subgroup=False),
        decompress_g1(data[96:], "C"),
    )
    if subgroup:
        check_subgroup(p)
    return p


def _g1_json(point: G1Point) -> list[str]:
    x, y = normalize(point)
    return [str(x.n), str(y.n), "1"]


def _g2_json(point: G2Point) -> list[list[str]]:
    x, y = normalize(point)
    return [
        [str(x.coeffs[0]), str(x.coeffs[1])],
        [str(y.coeffs[0]), str(y.coeffs[1])],
        ["1", "0"],
    ]


def proof_to_json(proof: Proof) -> dict[str, Any]:
    """The snarkjs JSON form (for the Node worker)."""
    return {
        "pi_a": _g1_json(proof.a),
        "pi_b": _g2_json(proof.b),
        "pi_c": _g1_json(proof.c),
        "protocol": "groth16",
        "curve": "bn128",
    }


def vk_to_json(vk: VerifyingKey) -> dict[str, Any]:
    """The snarkjs JSON form of a parsed key (for the Node worker): the points exactly as
    :func:`parse_vk` read them, in the one text form the worker reads without loss. A key
    file may write coordinates as JSON numbers (Python reads them exactly; JavaScript's
    JSON.parse rounds them to doubles), so the worker is never sent the file itself."""
    return {
        "protocol": "groth16",
        "curve": "bn128",
        "nPublic": vk.n_public,
        "vk_alpha_1": _g1_json(vk.alpha),
        "vk_beta_2": _g2_json(vk.beta),
        "vk_gamma_2": _g2_json(vk.gamma),
        "vk_delta_2": _g2_json(vk.delta),
        "IC": [_g1_json(p) for p in vk.ic],
    }
