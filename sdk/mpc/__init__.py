"""accord.mpc: three-party replicated secret sharing over Z_2^64, servers and the oracle.

The shared-array API reads like NumPy::

    from accord.mpc import run_local, sigmoid

    def score(party, x, w):          # runs on each of the three servers
        return sigmoid(x @ w).reveal()

    run_local(score, {"x": (features, 16), "w": (weights, 16)})

Data owners share on their own machine (:func:`split`, :meth:`Cluster.share`); servers run
registered programs (:mod:`accord.mpc.programs`); contracts reach them through the oracle
(:mod:`accord.mpc.oracle`).
"""

from __future__ import annotations

from accord.mpc.client import Cluster, ref, share
from accord.mpc.engine import (
    Party,
    SharedArray,
    append,
    concatenate,
    divide,
    dot,
    exp,
    log,
    maximum,
    mulv,
    reciprocal,
    relu,
    select,
    sigmoid,
    sqrt,
    stack,
    where,
    zeros,
)
from accord.mpc.local import combine, run_local, split
from accord.mpc.ring import FixedPoint
from accord.mpc.vectorize import vectorize

__all__ = [
    "Cluster",
    "FixedPoint",
    "Party",
    "SharedArray",
    "append",
    "combine",
    "concatenate",
    "divide",
    "dot",
    "exp",
    "log",
    "maximum",
    "mulv",
    "reciprocal",
    "ref",
    "relu",
    "run_local",
    "select",
    "share",
    "sigmoid",
    "split",
    "sqrt",
    "stack",
    "vectorize",
    "where",
    "zeros",
]
