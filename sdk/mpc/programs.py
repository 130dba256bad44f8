"""Programs the MPC servers run, by name. Genesis registers each by name and code hash.

A program is ``fn(party, inputs, **params) -> dict``: ``inputs`` maps names to shared arrays,
``params`` are public values (canonical encoding: ints and strings, so reals travel as
decimal strings). Shared arrays in the result go to the requester as shares; anything else
is a public result.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from accord.base.errors import MpcError
from accord.mpc.engine import Party, SharedArray, concatenate
from accord.mpc.ml import predict_proba, train_listing, train_logistic

Inputs = dict[str, SharedArray]


def _need(inputs: Inputs, *names: str) -> list[SharedArray]:
    missing = [n for n in names if n not in inputs]
    if missing:
        raise MpcError(f"missing inputs: {', '.join(missing)}")
    return [inputs[n] for n in names]


def _rate(program: str, name: str, value: Any) -> float:
    """A learning rate from public params: a finite number in (0, 16].

    Reals travel as decimal strings; ``nan``, ``inf`` or a huge rate would only overflow the
    fixed-point encoding deep inside a run, after every server has started it.
    """
    if type(value) not in (str, int, float):
        raise MpcError(f"{program} needs {name} as a decimal string")
    try:
        rate = float(value)
    except ValueError:
        raise MpcError(
            f"{program} needs {name} as a decimal string, not {str(value)[:32]!r}"
        ) from None
    if not (math.isfinite(rate) and 0 < rate <= 16):
        raise MpcError(f"{program} needs 0 < {name} <= 16")
    return rate


# Gradient steps one lr_train run may take (epochs x batches per epoch): each step is a few
# dozen rounds on all three servers, so an unbounded count lets one client pin the cluster.
MAX_LR_EPOCHS = 10_000
MAX_LR_STEPS = 100_000

BALANCE_BITS = 40  # a recorded balance must lie in [0, 2^40): checked in MPC


def anti_stacking(party: Party, inputs: Inputs, limit: int) -> dict[str, Any]:
    """The talk's example: are all balances in range, and is sum(s_i) below ``limit``?

    Every input is one lender's recorded balance (one integer). A balance outside
    [0, 2^40) (a negative "balance" that would hide real debt, or a huge one) makes the
    answer 0: the range tests are comparisons in MPC, so nothing is opened but the answer
    bit; the sum itself is never opened either. Two comparison calls and one product.
    """
    if not inputs:
        raise MpcError("anti_stacking needs at least one balance")
    for name, v in inputs.items():
        if v.size != 1 or v.ndim > 1 or v.frac != 0:
            raise MpcError(f"balance {name!r} must be one integer (shape {v.shape}, frac {v.frac})")
    if type(limit) is not int or not 0 < limit < 2**62:
        raise MpcError("limit must be an integer in (0, 2^62)")
    vals = concatenate([v.reshape(1) for _, v in sorted(inputs.items())])
    n = vals.size
    total = vals.sum().reshape(1)
    bits = concatenate([vals, vals - (1 << BALANCE_BITS), total - int(limit)]).ltz()
    negative, in_range, below = bits[:n], bits[n : 2 * n], bits[2 * n :]
    bad = negative.sum() + (n - in_range.sum())  # how many balances are out of range (0..2n)
    all_valid = (bad - 1).ltz()  # bad >= 0, so bad - 1 < 0 exactly when bad == 0
    return {"ok": (all_valid * below).reshape(())}


def mul(party: Party, inputs: Inputs) -> dict[str, Any]:
    x, y = _need(inputs, "x", "y")
    return {"z": x * y}


def compare(party: Party, inputs: Inputs) -> dict[str, Any]:
    x, y = _need(inputs, "x", "y")
    return {"lt": x < y}


def lr_train(
    party: Party, inputs: Inputs, epochs: int = 5, lr: str = "0.5", batch: int = 128
) -> dict[str, Any]:
    """Train on row blocks ``X*``/``y*`` (horizontal) or column blocks ``F*`` (vertical)."""
    rows = sorted(k for k in inputs if k.startswith("X"))
    cols = sorted(k for k in inputs if k.startswith("F"))
    labels = sorted(k for k in inputs if k.startswith("y"))
    if not (rows or cols) or not labels:
        raise MpcError("lr_train needs row blocks X* or column blocks F*, and labels y*")
    if cols:
        x = concatenate([inputs[k] for k in cols], axis=1)
    else:
        x = concatenate([inputs[k] for k in rows], axis=0)
    y = concatenate([inputs[k] for k in labels], axis=0)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise MpcError("lr_train needs rows X (n, d) and labels y (n,)")
    n = x.shape[0]
    if type(epochs) is not int or not 1 <= epochs <= MAX_LR_EPOCHS:
        raise MpcError(f"lr_train needs an integer 1 <= epochs <= {MAX_LR_EPOCHS}")
    if type(batch) is not int or batch < 1:
        raise MpcError("lr_train needs an integer batch >= 1")
    steps = epochs * -(-n // batch)
    if steps > MAX_LR_STEPS:
        raise MpcError(
            f"lr_train: epochs x ceil(n / batch) = {steps} gradient steps, at most "
            f"{MAX_LR_STEPS}; use fewer epochs or a larger batch"
        )
    rate = _rate("lr_train", "lr", lr)
    held: list[tuple[SharedArray, SharedArray]] = []
    ns = timed_until_all(
        party, lambda: held.append(train_logistic(x, y, epochs=epochs, lr=rate, batch=batch))
    )
    w, b = held[0]
    return {"w": w, "b": b, "train_ns": ns}  # until the last server holds its model shares


def lr_listing(
    party: Party, inputs: Inputs, round_cnt: int = 5, batch: int = 16, eta: str = "0.5"
) -> dict[str, Any]:
    """The PrivPy talk's LR listing (:func:`accord.mpc.ml.train_listing`, loops rewritten):
    rows ``X``, labels ``y`` in {-1, 1} (integers), initial weights and bias ``w``."""
    x, y, w = _need(inputs, "X", "y", "w")
    if x.ndim != 2 or y.shape != (x.shape[0],) or w.shape != (x.shape[1] + 1,) or y.frac != 0:
        raise MpcError("lr_listing needs X (n, d), integer labels y (n,) and weights w (d + 1,)")
    if (
        type(round_cnt) is not int
        or type(batch) is not int
        or not (1 <= round_cnt <= 1000 and 1 <= batch <= x.shape[0])
    ):
        raise MpcError("lr_listing needs 1 <= round_cnt <= 1000 and 1 <= batch <= n")
    return {"w": train_listing(party, x, y, w, round_cnt, batch, _rate("lr_listing", "eta", eta))}


def lr_predict(party: Party, inputs: Inputs) -> dict[str, Any]:
    x, w, b = _need(inputs, "X", "w", "b")
    return {"p": predict_proba(x, w, b)}


def bench(party: Party, inputs: Inputs, n: int = 1_000_000, m: int = 500) -> dict[str, Any]:
    """Time fixed-point mul and comparison on vectors of ``n``, and an m x m matrix product.

    Inputs are private values of server 0 (shared with one message, not timed); each timing
    lasts until the last server holds its result (:func:`timed_until_all`).
    """
    if type(n) is not int or type(m) is not int or not (1 <= n <= 10**7 and 1 <= m <= 2000):
        raise MpcError("bench needs 1 <= n <= 10^7 and 1 <= m <= 2000")
    vals = None
    mats = None
    if party.i == 0:
        from accord.mpc.prf import LocalRandom

        rnd = LocalRandom()
        vals = (rnd.words(2 * int(n)) >> np.uint64(44)).astype(np.int64) - (1 << 19)
        mats = (rnd.words(2 * int(m) * int(m)) >> np.uint64(46)).astype(np.int64) - (1 << 17)
    f = party.fp.frac_bits
    ab = party.input_from(0, None if vals is None else vals.astype(np.uint64), (2 * int(n),))
    xy = SharedArray(party, ab[0], ab[1], f)
    x, y = xy[: int(n)], xy[int(n) :]
    mm = party.input_from(
        0, None if mats is None else mats.astype(np.uint64), (2 * int(m) * int(m),)
    )
    mab = SharedArray(party, mm[0], mm[1], f)
    ma = mab[: int(m) * int(m)].reshape(int(m), int(m))
    mb = mab[int(m) * int(m) :].reshape(int(m), int(m))
    out: dict[str, Any] = {}
    for name, fn in (("mul", lambda: x * y), ("cmp", lambda: x < y), ("matmul", lambda: ma @ mb)):
        out[name + "_ns"] = timed_until_all(party, fn)
    return out


def kmeans(party: Party, inputs: Inputs, iters: int = 10) -> dict[str, Any]:
    """K-means on shared points ``X`` (n, d) from shared initial centres ``C`` (k, d)."""
    from accord.mpc.workloads import kmeans as run

    x, c = _need(inputs, "X", "C")
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1] or not 1 <= c.shape[0] <= 16:
        raise MpcError("kmeans needs X (n, d) and C (k, d) with 1 <= k <= 16")
    if type(iters) is not int or not 1 <= iters <= 100:
        raise MpcError("kmeans needs 1 <= iters <= 100")
    box: list[Any] = []
    ns = timed_until_all(party, lambda: box.append(run(x, c, iters)))
    centers, onehot = box[0]
    return {"centers": centers, "onehot": onehot, "train_ns": ns}


def cnn_infer(party: Party, inputs: Inputs) -> dict[str, Any]:
    """Labels of shared 8x8 images ``X`` (n, 8, 8) under shared CNN weights ``W1`` .. ``b3``."""
    from accord.mpc.workloads import CNN_PARAMS
    from accord.mpc.workloads import cnn_infer as run

    (x,) = _need(inputs, "X")
    weights = dict(zip(CNN_PARAMS, _need(inputs, *CNN_PARAMS), strict=True))
    box: list[Any] = []
    ns = timed_until_all(party, lambda: box.append(run(x, weights)))
    return {"labels": box[0], "infer_ns": ns}


def lenet5_infer(party: Party, inputs: Inputs) -> dict[str, Any]:
    """Labels of shared 32x32 images ``X`` (n, 32, 32) under shared LeNet-5 weights
    ``W1`` .. ``b5`` (:func:`accord.mpc.workloads.lenet5_infer`)."""
    from accord.mpc.workloads import LENET5_PARAMS
    from accord.mpc.workloads import lenet5_infer as run

    (x,) = _need(inputs, "X")
    weights = dict(zip(LENET5_PARAMS, _need(inputs, *LENET5_PARAMS), strict=True))
    box: list[Any] = []
    ns = timed_until_all(party, lambda: box.append(run(x, weights)))
    return {"labels": box[0], "infer_ns": ns}


def timed_until_all(party: Party, fn: Callable[[], Any]) -> int:
    """Nanoseconds from a common start until all three servers are done with ``fn``.

    A one-word opening before starts the servers together. Two after it form a barrier: a
    server leaves the first once its predecessor has finished ``fn``, the second once its
    predecessor has left the first, i.e. once the third server has finished too. Timing
    ``fn`` on one server alone overstated: server 0 may be done before the last round.
    """
    sync = SharedArray.from_public(party, np.zeros(1, dtype=np.int64))
    sync.reveal()
    t0 = time.perf_counter()
    fn()
    sync.reveal()
    sync.reveal()
    return int((time.perf_counter() - t0) * 1e9)


PROGRAMS: dict[str, Callable[..., dict[str, Any]]] = {
    "anti_stacking": anti_stacking,
    "mul": mul,
    "compare": compare,
    "lr_train": lr_train,
    "lr_listing": lr_listing,
    "lr_predict": lr_predict,
    "bench": bench,
    "kmeans": kmeans,
    "cnn_infer": cnn_infer,
    "lenet5_infer": lenet5_infer,
}


def source_hash(fn: Callable[..., Any]) -> bytes:
    """SHA-256 of a program's source: what genesis registers and what a grant binds.

    A grant allows one program, not one name: a server upgraded (or misconfigured) to run
    other code under the granted name must not run it on the granted inputs. A function
    without a source file (made with ``exec``) is hashed by its compiled code instead.
    """
    try:
        return hashlib.sha256(inspect.getsource(fn).encode()).digest()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is None:
            raise MpcError(f"program {fn!r} has neither source nor code to hash") from None
        return hashlib.sha256(b"accord/mpc/code\x00" + marshal.dumps(code)).digest()


def code_hash(name: str) -> str:
    """SHA-256 of a built-in program's source (hex): what genesis registers next to the name."""
    fn = PROGRAMS.get(name)
    if fn is None:
        raise MpcError(f"unknown program {name!r}")
    return source_hash(fn).hex()
