"""PrivPy's other two workloads: K-means clustering and CNN inference on shared data.

Both read like their NumPy versions (which are here too, as the references the tests and
the bench compare against) and reveal nothing but what the caller reveals: K-means returns
shared centres (and the shared one-hot assignment), the CNN shared labels.

* :func:`kmeans`: Lloyd's iterations. Squared distances to the centres are one matrix
  product (the |x|^2 term does not change the argmin and is left out), the nearest centre
  a one-hot row from one comparison call over all pairs of centres, the new centres a
  matrix product and a division by the shared counts (:func:`~accord.mpc.engine.divide`).
  An empty cluster keeps its centre, as in the reference.
* :func:`cnn_infer`: a LeNet-style network for 8x8 digits: 3x3 convolution with 6
  channels, 2x2 max pooling, ReLU, a 3x3 convolution with 16 channels (on a 3x3 map it is a
  dense layer), ReLU, a dense layer to 10 scores and argmax. Convolution is a matrix
  product over patches (the patches are a rearrangement of shares, local), pooling two
  rounds of :func:`~accord.mpc.engine.maximum`, argmax one comparison call over all pairs of
  classes. Max pooling comes before the ReLU (they commute), a quarter of the comparisons.

The digits are scikit-learn's 8x8 set (1,797 images, shipped with the package: install
``accord[ml]``); the weights are trained here in NumPy at the time they are needed
(:func:`train_cnn`, deterministic, a few seconds), so no weights are shipped. PrivPy's
K-means figure is on a 28-feature credit-card set no package ships; :func:`blobs` makes a
synthetic set of the same shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from accord.base.errors import MpcError
from accord.mpc.engine import SharedArray, concatenate, divide, maximum, where

Params = dict[str, npt.NDArray[np.float64]]
CNN_PARAMS = ("W1", "b1", "W2", "b2", "W3", "b3")
CNN_SHAPES = {"W1": (9, 6), "b1": (6,), "W2": (54, 16), "b2": (16,), "W3": (16, 10), "b3": (10,)}


# --- helpers on shared arrays ----------------------------------------------------------------


def _and_all(bits: SharedArray) -> SharedArray:
    """AND along the last axis of shared bits, by halving (log2 rounds of products)."""
    while bits.shape[-1] > 1:
        m = bits.shape[-1]
        half = m // 2
        prod = bits[..., :half] * bits[..., half : 2 * half]
        bits = concatenate([prod, bits[..., 2 * half :]], axis=-1) if m % 2 else prod
    return bits[..., 0]


def argmin_onehot(d: SharedArray) -> SharedArray:
    """One-hot (shared bits) of the smallest entry of each row; ties go to the first."""
    n, k = d.shape
    pairs = [(j, m) for j in range(k) for m in range(j + 1, k)]
    if not pairs:
        return (d * 0 + 1).reshape(n, 1) if d.frac == 0 else (d.ltz() * 0 + 1)
    diffs = concatenate([d[:, m] - d[:, j] for j, m in pairs])  # [d_m < d_j]: m beats j
    later = diffs.ltz().reshape(len(pairs), n)
    wins: list[list[SharedArray]] = [[] for _ in range(k)]
    for p, (j, m) in enumerate(pairs):
        wins[m].append(later[p])
        wins[j].append(1 - later[p])
    table = concatenate(
        [concatenate([w.reshape(n, 1) for w in ws], axis=1).reshape(n, 1, k - 1) for ws in wins],
        axis=1,
    )
    return _and_all(table)


def argmax_onehot(s: SharedArray) -> SharedArray:
    return argmin_onehot(-s)


# --- K-means ---------------------------------------------------------------------------------


def kmeans(x: SharedArray, centers: SharedArray, iters: int) -> tuple[SharedArray, SharedArray]:
    """Lloyd's algorithm from shared initial ``centers`` (k, d); returns (centres, one-hot).

    Each iteration: 1 matrix product and 1 product for the distances, k(k-1)/2 comparisons
    per point in one call and ceil(log2(k-1)) rounds of bit products for the one-hot rows, a
    matrix product for the sums, and the division (k comparisons per centre for the
    counts' power of two, in one call). Counts range over [1, n] (0 is mapped to 1 and the
    centre kept), so the coordinate sums must stay below 2^20 and n below 2^25 (the bounds of
    :func:`~accord.mpc.engine.divide` at 16 fractional bits).
    """
    n, d = x.shape
    k = centers.shape[0]
    if type(iters) is not int or not 1 <= iters <= 100:
        raise MpcError("kmeans needs 1 <= iters <= 100")
    onehot = None
    for _ in range(iters):
        dist = (centers * centers).sum(axis=1) - 2 * (x @ centers.T)  # (n, k), up to |x|^2
        onehot = argmin_onehot(dist)
        counts = onehot.sum(axis=0)  # (k,) shared integers
        sums = onehot.T @ x  # (k, d)
        empty = (counts - 1).ltz()  # counts >= 0, so this is counts == 0
        new = divide(sums, (counts + empty).reshape(k, 1), 1, max(2, n))
        centers = where(empty.reshape(k, 1), centers, new)
    assert onehot is not None
    return centers, onehot


def kmeans_plain(
    x: npt.NDArray[np.float64], centers: npt.NDArray[np.float64], iters: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The same iterations in NumPy (the reference)."""
    c = centers.copy()
    lab = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        dist = (c * c).sum(axis=1) - 2 * (x @ c.T)
        lab = np.argmin(dist, axis=1)
        for j in range(len(c)):
            members = x[lab == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return c, lab


def blobs(
    n: int, d: int = 28, k: int = 5, seed: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A synthetic set of PrivPy's K-means shape: n points, d features, k clusters
    (Gaussian blobs, then standardised); returns (points, initial centres = k of the points)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 3.0, (k, d))
    x = means[rng.integers(0, k, n)] + rng.normal(0.0, 1.0, (n, d))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x, x[rng.choice(n, k, replace=False)].copy()


# --- CNN inference ---------------------------------------------------------------------------

_ROWS = np.array(
    [[[r + i for i in range(3) for _ in range(3)] for _ in range(6)] for r in range(6)]
)
_COLS = np.array(
    [[[c + j for _ in range(3) for j in range(3)] for c in range(6)] for _ in range(6)]
)


def load_digits() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """scikit-learn's 8x8 digits, scaled to [0, 1]: images (n, 8, 8) and labels."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise MpcError("the digits set comes with scikit-learn: pip install 'accord[ml]'") from None
    data = sk_digits()
    return np.asarray(data.images, dtype=np.float64) / 16.0, np.asarray(data.target, dtype=np.int64)


def digits_split(
    seed: int = 0, train: int = 1500
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]
]:
    """A shuffled train/test split of the digits (the set is ordered by writer, so the last
    images alone are harder than the rest): (x_train, y_train, x_test, y_test)."""
    x, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:train], order[train:]
    return x[tr], y[tr], x[te], y[te]


def _forward(p: Params, x: npt.NDArray[np.float64]) -> dict[str, Any]:
    n = len(x)
    patches = x[:, _ROWS, _COLS]  # (n, 6, 6, 9)
    z1 = patches @ p["W1"] + p["b1"]  # (n, 6, 6, 6)
    blocks = z1.reshape(n, 3, 2, 3, 2, 6)
    pooled = blocks.max(axis=(2, 4))
    a1 = np.maximum(pooled, 0.0).reshape(n, 54)
    z2 = a1 @ p["W2"] + p["b2"]
    a2 = np.maximum(z2, 0.0)
    z3 = a2 @ p["W3"] + p["b3"]
    return {
        "patches": patches,
        "blocks": blocks,
        "pooled": pooled,
        "a1": a1,
        "z2": z2,
        "a2": a2,
        "z3": z3,
    }


def cnn_plain(p: Params, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Plaintext inference with the same network (the reference)."""
    return np.argmax(_forward(p, x)["z3"], axis=1)


def train_cnn(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], *, epochs: int = 15, seed: int = 0
) -> Params:
    """Train the network in NumPy (Adam, mini-batches of 32, softmax cross-entropy)."""
    rng = np.random.default_rng(seed)
    p: Params = {
        "W1": rng.normal(0, np.sqrt(2 / 9), (9, 6)),
        "b1": np.zeros(6),
        "W2": rng.normal(0, np.sqrt(2 / 54), (54, 16)),
        "b2": np.zeros(16),
        "W3": rng.normal(0, np.sqrt(2 / 16), (16, 10)),
        "b3": np.zeros(10),
    }
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), 32):
            idx = order[s : s + 32]
            g = _grads(p, x[idx], y[idx])
            step += 1
            for k in p:
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v2[k] = 0.999 * v2[k] + 0.001 * g[k] ** 2
                mh, vh = m[k] / (1 - 0.9**step), v2[k] / (1 - 0.999**step)
                p[k] = p[k] - 0.01 * mh / (np.sqrt(vh) + 1e-8)
    return p


def _grads(p: Params, x: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> Params:
    n = len(x)
    f = _forward(p, x)
    z3 = f["z3"] - f["z3"].max(axis=1, keepdims=True)
    prob = np.exp(z3)
    prob /= prob.sum(axis=1, keepdims=True)
    prob[np.arange(n), y] -= 1.0
    dz3 = prob / n
    da2 = dz3 @ p["W3"].T
    dz2 = da2 * (f["z2"] > 0)
    da1 = (dz2 @ p["W2"].T).reshape(n, 3, 3, 6) * (f["pooled"] > 0)
    mask = f["blocks"] == f["pooled"][:, :, None, :, None, :]
    dz1 = (mask * da1[:, :, None, :, None, :]).reshape(n, 6, 6, 6)
    return {
        "W1": f["patches"].reshape(-1, 9).T @ dz1.reshape(-1, 6),
        "b1": dz1.reshape(-1, 6).sum(axis=0),
        "W2": f["a1"].T @ dz2,
        "b2": dz2.sum(axis=0),
        "W3": f["a2"].T @ dz3,
        "b3": dz3.sum(axis=0),
    }


def cnn_infer(images: SharedArray, p: dict[str, SharedArray]) -> SharedArray:
    """Shared labels (integers 0..9) of shared images (n, 8, 8) under shared weights.

    Per batch: 3 matrix products, 2 rounds of maximum (2 comparison calls), 2 ReLUs
    (comparison calls), one argmax comparison call (45 comparisons per image) and 4 rounds
    of bit products: the number of rounds does not depend on the batch size.
    """
    missing = [k for k in CNN_PARAMS if k not in p]
    if missing:
        raise MpcError(f"missing weights: {', '.join(missing)}")
    wrong = [
        f"{k} {p[k].shape} (expected {CNN_SHAPES[k]})"
        for k in CNN_PARAMS
        if p[k].shape != CNN_SHAPES[k]
    ]
    if wrong:
        raise MpcError(f"weights of the wrong shape: {', '.join(wrong)}")
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise MpcError(f"images must have shape (n, 8, 8), not {images.shape}")
    n = images.shape[0]
    patches = images[:, _ROWS, _COLS].reshape(n * 36, 9)
    z1 = (patches @ p["W1"] + p["b1"]).reshape(n, 3, 2, 3, 2, 6)
    rows = maximum(z1[:, :, 0], z1[:, :, 1])  # (n, 3, 3, 2, 6)
    pooled = maximum(rows[:, :, :, 0], rows[:, :, :, 1])  # (n, 3, 3, 6)
    a1 = _relu(pooled.reshape(n, 54))
    a2 = _relu(a1 @ p["W2"] + p["b2"])
    scores = a2 @ p["W3"] + p["b3"]
    onehot = argmax_onehot(scores)
    return onehot @ np.arange(10, dtype=np.int64)


def _relu(x: SharedArray) -> SharedArray:
    return (1 - x.ltz()) * x
