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
K-means figure is on a 28-feature credit-card set no package ships: :func:`breast_cancer_kmeans`
gives a real set of that kind (30 features, shipped here) and :func:`blobs` a synthetic set
of the same shape. :func:`lenet5_infer` is LeNet-5 itself (PrivPy's CNN figure) on 32x32
inputs.
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


def breast_cancer_kmeans(
    k: int = 5, seed: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A real data set for K-means: the breast cancer set this package ships (569 instances,
    30 features, standardised as an owner would before sharing; the labels are not used),
    and k of its points as initial centres (a seeded choice, so every run starts alike)."""
    from accord.mpc.ml import load_breast_cancer

    x, _ = load_breast_cancer()
    if not 1 <= k <= 16:
        raise MpcError("k-means here takes 1 <= k <= 16 clusters")
    return x, x[np.random.default_rng(seed).choice(len(x), k, replace=False)].copy()


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


# --- LeNet-5 (PrivPy's CNN figure) -------------------------------------------------------------
#
# The real LeNet-5 shapes on 32x32 inputs: 5x5 convolution to 6 channels (28x28), 2x2 max
# pooling (14x14), 5x5 convolution to 16 channels (10x10), 2x2 max pooling (5x5x16 = 400),
# dense 120, 84 and 10, ReLU after each pooling and hidden dense layer. No package installable
# here ships MNIST without a download at run time, so the inputs are scikit-learn's 8x8 digits
# upsampled to 32x32 (each pixel a 4x4 block): the network's cost depends on its shapes only.

LENET5_PARAMS = ("W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4", "W5", "b5")
LENET5_SHAPES = {
    "W1": (25, 6),
    "b1": (6,),
    "W2": (150, 16),
    "b2": (16,),
    "W3": (400, 120),
    "b3": (120,),
    "W4": (120, 84),
    "b4": (84,),
    "W5": (84, 10),
    "b5": (10,),
}
LENET5_VERSION = 1  # part of the trained weights' cache key: bump when training changes


def _patch_index(size: int, k: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Row and column indices of every k x k patch of a size x size map: (m, m, k*k) each,
    m = size - k + 1, patch entries in row-major order."""
    m = size - k + 1
    oi, oj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    rows = np.arange(m)[:, None, None] + oi.reshape(1, 1, k * k)
    cols = np.arange(m)[None, :, None] + oj.reshape(1, 1, k * k)
    return np.broadcast_to(rows, (m, m, k * k)).copy(), np.broadcast_to(cols, (m, m, k * k)).copy()


_R1, _C1 = _patch_index(32, 5)  # (28, 28, 25)
_R2, _C2 = _patch_index(14, 5)  # (10, 10, 25)


def upsample32(images: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """8x8 images to 32x32 (nearest neighbour: each pixel becomes a 4x4 block)."""
    if images.ndim != 3 or images.shape[1:] != (8, 8):
        raise MpcError(f"images must have shape (n, 8, 8), not {images.shape}")
    return np.repeat(np.repeat(images, 4, axis=1), 4, axis=2)


def _lenet_forward(p: Params, x: npt.NDArray[np.float64]) -> dict[str, Any]:
    n = len(x)
    p1 = x[:, _R1, _C1]  # (n, 28, 28, 25)
    z1 = p1 @ p["W1"] + p["b1"]
    b1 = z1.reshape(n, 14, 2, 14, 2, 6)
    m1 = b1.max(axis=(2, 4))
    a1 = np.maximum(m1, 0.0)  # (n, 14, 14, 6)
    p2 = a1[:, _R2, _C2, :].reshape(n, 10, 10, 150)
    z2 = p2 @ p["W2"] + p["b2"]
    b2 = z2.reshape(n, 5, 2, 5, 2, 16)
    m2 = b2.max(axis=(2, 4))
    a2 = np.maximum(m2, 0.0).reshape(n, 400)
    z3 = a2 @ p["W3"] + p["b3"]
    a3 = np.maximum(z3, 0.0)
    z4 = a3 @ p["W4"] + p["b4"]
    a4 = np.maximum(z4, 0.0)
    z5 = a4 @ p["W5"] + p["b5"]
    return dict(p1=p1, b1=b1, m1=m1, a1=a1, p2=p2, b2=b2, m2=m2, a2=a2, z3=z3, a3=a3, z4=z4,
                a4=a4, z5=z5)  # fmt: skip


def lenet5_scores(p: Params, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Plaintext class scores of 32x32 images (the reference)."""
    return np.asarray(_lenet_forward(p, x)["z5"])


def lenet5_plain(p: Params, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Plaintext labels of 32x32 images under the same network (the reference)."""
    return np.argmax(lenet5_scores(p, x), axis=1)


def _pool_back(blocks: Any, pooled: Any, d: Any) -> Any:
    mask = blocks == pooled[:, :, None, :, None, :]
    return mask * d[:, :, None, :, None, :]


def _lenet_grads(p: Params, x: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> Params:
    n = len(x)
    f = _lenet_forward(p, x)
    z5 = f["z5"] - f["z5"].max(axis=1, keepdims=True)
    prob = np.exp(z5)
    prob /= prob.sum(axis=1, keepdims=True)
    prob[np.arange(n), y] -= 1.0
    dz5 = prob / n
    dz4 = (dz5 @ p["W5"].T) * (f["z4"] > 0)
    dz3 = (dz4 @ p["W4"].T) * (f["z3"] > 0)
    dm2 = (dz3 @ p["W3"].T).reshape(n, 5, 5, 16) * (f["m2"] > 0)
    dz2 = _pool_back(f["b2"], f["m2"], dm2).reshape(n, 10, 10, 16)
    dp2 = (dz2 @ p["W2"].T).reshape(n, 10, 10, 25, 6)
    da1 = np.zeros((n, 14, 14, 6))
    for k in range(25):  # scatter the patch gradients back (col2im)
        di, dj = divmod(k, 5)
        da1[:, di : di + 10, dj : dj + 10, :] += dp2[:, :, :, k, :]
    dm1 = da1 * (f["m1"] > 0)
    dz1 = _pool_back(f["b1"], f["m1"], dm1).reshape(n, 28, 28, 6)
    return {
        "W1": f["p1"].reshape(-1, 25).T @ dz1.reshape(-1, 6),
        "b1": dz1.reshape(-1, 6).sum(axis=0),
        "W2": f["p2"].reshape(-1, 150).T @ dz2.reshape(-1, 16),
        "b2": dz2.reshape(-1, 16).sum(axis=0),
        "W3": f["a2"].T @ dz3,
        "b3": dz3.sum(axis=0),
        "W4": f["a3"].T @ dz4,
        "b4": dz4.sum(axis=0),
        "W5": f["a4"].T @ dz5,
        "b5": dz5.sum(axis=0),
    }


def train_lenet5(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    *,
    epochs: int = 6,
    seed: int = 0,
    lr: float = 0.002,
    progress: Any = None,
) -> Params:
    """Train LeNet-5 on 32x32 images in NumPy (Adam, mini-batches of 32, He initialisation,
    softmax cross-entropy). Deterministic for given inputs: one seeded generator draws the
    initial weights and the batch order. ``progress(step, total)`` is called per batch."""
    rng = np.random.default_rng(seed)
    p: Params = {}
    for w, b in zip(LENET5_PARAMS[0::2], LENET5_PARAMS[1::2], strict=True):
        fan_in = LENET5_SHAPES[w][0]
        p[w] = rng.normal(0.0, np.sqrt(2.0 / fan_in), LENET5_SHAPES[w])
        p[b] = np.zeros(LENET5_SHAPES[b])
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    step = 0
    total = epochs * -(-len(x) // 32)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), 32):
            idx = order[s : s + 32]
            g = _lenet_grads(p, x[idx], y[idx])
            step += 1
            for k in p:
                m[k] = 0.9 * m[k] + 0.1 * g[k]
                v2[k] = 0.999 * v2[k] + 0.001 * g[k] ** 2
                mh, vh = m[k] / (1 - 0.9**step), v2[k] / (1 - 0.999**step)
                p[k] = p[k] - lr * mh / (np.sqrt(vh) + 1e-8)
            if progress is not None:
                progress(step, total)
    return p


def lenet5_digits(
    seed: int = 0, epochs: int = 6, progress: Any = None
) -> tuple[Params, npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """LeNet-5 trained on the upsampled digits' training split, and the test split (32x32).

    Training takes tens of seconds on a loaded machine, so the weights are cached under
    ``$ACCORD_CACHE`` (or ``~/.cache/accord``) in ``mpc/``, keyed by the training inputs'
    hash, the seed, the epochs and :data:`LENET5_VERSION`; a damaged cache file is retrained.
    """
    import hashlib
    import os
    from pathlib import Path

    xtr, ytr, xte, yte = digits_split(seed)
    xtr, xte = upsample32(xtr), upsample32(xte)
    h = hashlib.sha256(f"lenet5/{LENET5_VERSION}/{seed}/{epochs}".encode())
    h.update(np.ascontiguousarray(xtr).tobytes())
    h.update(np.ascontiguousarray(ytr).tobytes())
    base = Path(os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord") / "mpc"
    path = base / f"lenet5-{h.hexdigest()[:24]}.npz"
    try:
        with np.load(path) as z:
            p = {k: np.asarray(z[k], dtype=np.float64) for k in LENET5_PARAMS}
        if all(p[k].shape == LENET5_SHAPES[k] for k in LENET5_PARAMS):
            return p, xte, yte
    except (OSError, KeyError, ValueError):
        pass
    p = train_lenet5(xtr, ytr, epochs=epochs, seed=seed, progress=progress)
    try:
        base.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        arrays: dict[str, Any] = dict(p)
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the training again
    return p, xte, yte


def lenet5_infer(images: SharedArray, p: dict[str, SharedArray]) -> SharedArray:
    """Shared labels (0..9) of shared 32x32 images (n, 32, 32) under shared LeNet-5 weights.

    Convolutions are matrix products over patches (gathering patches rearranges shares:
    local), each max pooling two rounds of :func:`~accord.mpc.engine.maximum` (ReLU after
    the pooling: they commute, a quarter of the comparisons), argmax one comparison call.
    Per image: about 6,550 comparisons and 5 matrix products; the rounds do not depend on
    the batch size.
    """
    missing = [k for k in LENET5_PARAMS if k not in p]
    if missing:
        raise MpcError(f"missing weights: {', '.join(missing)}")
    wrong = [
        f"{k} {p[k].shape} (expected {LENET5_SHAPES[k]})"
        for k in LENET5_PARAMS
        if p[k].shape != LENET5_SHAPES[k]
    ]
    if wrong:
        raise MpcError(f"weights of the wrong shape: {', '.join(wrong)}")
    if images.ndim != 3 or images.shape[1:] != (32, 32):
        raise MpcError(f"images must have shape (n, 32, 32), not {images.shape}")
    n = images.shape[0]
    z1 = (images[:, _R1, _C1].reshape(n * 784, 25) @ p["W1"] + p["b1"]).reshape(n, 14, 2, 14, 2, 6)
    a1 = _relu(_pool(z1))  # (n, 14, 14, 6)
    z2 = (a1[:, _R2, _C2, :].reshape(n * 100, 150) @ p["W2"] + p["b2"]).reshape(n, 5, 2, 5, 2, 16)
    a2 = _relu(_pool(z2)).reshape(n, 400)
    a3 = _relu(a2 @ p["W3"] + p["b3"])
    a4 = _relu(a3 @ p["W4"] + p["b4"])
    scores = a4 @ p["W5"] + p["b5"]
    return argmax_onehot(scores) @ np.arange(10, dtype=np.int64)


def _pool(blocks: SharedArray) -> SharedArray:
    """2x2 max pooling of (n, h, 2, w, 2, c) blocks: two rounds of maximum."""
    rows = maximum(blocks[:, :, 0], blocks[:, :, 1])  # (n, h, w, 2, c)
    return maximum(rows[:, :, :, 0], rows[:, :, :, 1])
