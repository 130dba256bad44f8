"""Curve points that a verifier must refuse, built by hand."""

from __future__ import annotations

from accord.zk import groth16


def g2_outside_subgroup() -> list[list[str]]:
    """A point on the G2 curve (the twist) that is not in the order-r subgroup."""
    x0 = 1
    while True:
        x = (x0, 2)
        rhs = groth16._fq2_mul(groth16._fq2_mul(x, x), x)
        rhs = ((rhs[0] + groth16._B2[0]) % groth16.Q, (rhs[1] + groth16._B2[1]) % groth16.Q)
        y = groth16._sqrt_fq2(rhs)
        if y is not None:
            return [[str(x[0]), str(x[1])], [str(y[0]), str(y[1])], ["1", "0"]]
        x0 += 1
