"""Poseidon over the BN254 scalar field, bit for bit as circomlib's ``Poseidon``/``PoseidonEx``.

The circuits hash with circomlib's Poseidon; the wallet, the contracts (commitment tree) and
the regulator must compute the very same values in Python. Parameters: x^5 S-box, 8 full
rounds, partial rounds per width from the Poseidon paper (tables 2 and 8, rounded up as
circomlib does); round constants and MDS matrices come from the paper's Grain LFSR, computed
here at first use (they equal circomlib's tables; the tests check known outputs). The state is (initial state, inputs...) and the output is state[0],
as in circomlib (not the paper's reference, which outputs state[1]).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from accord.base.errors import ValidationError

FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617
"""BN254's scalar field r: every circuit signal and public input lives below it."""

N_ROUNDS_F = 8
N_ROUNDS_P = (56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68)
MAX_INPUTS = 5  # widths we ship constants for: t = 2..6


class _Grain:
    """The Grain LFSR of the Poseidon paper (appendix F), which derives round constants and
    the Cauchy MDS matrix from the parameters alone: nothing to ship, nothing to trust."""

    def __init__(self, t: int, n_rounds_f: int, n_rounds_p: int, n_bits: int = 254) -> None:
        # field = prime (01), S-box x^alpha (0000), field size, width, rounds, then 30 ones.
        init = (
            "01"
            + "0000"
            + format(n_bits, "012b")
            + format(t, "012b")
            + format(n_rounds_f, "010b")
            + format(n_rounds_p, "010b")
            + "1" * 30
        )
        self.bits = [int(b) for b in init]
        self.n_bits = n_bits
        for _ in range(160):
            self._next()

    def _next(self) -> int:
        b = self.bits
        new = b[62] ^ b[51] ^ b[38] ^ b[23] ^ b[13] ^ b[0]
        b.pop(0)
        b.append(new)
        return new

    def _bit(self) -> int:
        # Bits come in pairs; the second is kept only when the first is 1.
        while True:
            first, second = self._next(), self._next()
            if first:
                return second

    def _raw(self) -> int:
        v = 0
        for _ in range(self.n_bits):
            v = (v << 1) | self._bit()
        return v

    def field_element(self) -> int:
        while True:  # rejection sampling: uniform below the field size
            v = self._raw()
            if v < FIELD:
                return v

    def reduced(self) -> int:
        return self._raw() % FIELD


@functools.cache
def _params(t: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Round constants and MDS matrix for width ``t`` (the values circomlib uses)."""
    n_p = N_ROUNDS_P[t - 2]
    g = _Grain(t, N_ROUNDS_F, n_p)
    c = tuple(g.field_element() for _ in range((N_ROUNDS_F + n_p) * t))
    xy = [g.reduced() for _ in range(2 * t)]
    xs, ys = xy[:t], xy[t:]
    m = tuple(tuple(pow(xs[i] + ys[j], FIELD - 2, FIELD) for j in range(t)) for i in range(t))
    return c, m


def poseidon_ex(inputs: Sequence[int], init: int = 0, n_out: int = 1) -> list[int]:
    """circomlib's ``PoseidonEx(len(inputs), n_out)`` with ``initialState = init``."""
    n = len(inputs)
    if not 1 <= n <= MAX_INPUTS:
        raise ValidationError(f"Poseidon takes 1..{MAX_INPUTS} inputs, got {n}")
    t = n + 1
    if not 1 <= n_out <= t:
        raise ValidationError(f"PoseidonEx with {n} inputs gives at most {t} outputs")
    p = FIELD
    for x in inputs:
        if not 0 <= x < p:
            raise ValidationError("Poseidon inputs must be field elements")
    c, m = _params(t)
    n_p = N_ROUNDS_P[t - 2]
    half = N_ROUNDS_F // 2
    state = [init % p, *inputs]
    rng = range(t)
    for r in range(N_ROUNDS_F + n_p):
        base = r * t
        state = [(state[i] + c[base + i]) % p for i in rng]
        if r < half or r >= half + n_p:
            state = [pow(a, 5, p) for a in state]
        else:
            state[0] = pow(state[0], 5, p)
        state = [sum(row[j] * state[j] for j in rng) % p for row in m]
    return state[:n_out]


def poseidon(*inputs: int) -> int:
    """circomlib's ``Poseidon(n)``: one field element from 1..5 field elements."""
    return poseidon_ex(inputs)[0]


def hash2(left: int, right: int) -> int:
    """The Merkle tree's node hash."""
    return poseidon_ex((left, right))[0]
