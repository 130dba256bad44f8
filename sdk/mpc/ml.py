"""Logistic regression on shared data, and the dataset it is shown on.

Training reads like the NumPy version (and like the loop in the PrivPy talk): ``X`` and ``y``
are :class:`~accord.mpc.engine.SharedArray` values, and only the final weights are revealed,
to whom the caller chooses. Horizontally partitioned data (owners hold different rows) is
``concatenate([X1, X2], axis=0)``; vertically partitioned data (owners hold different
features of the same rows) is ``concatenate([XA, XB], axis=1)``: sharing makes both the same.

The dataset is the Wisconsin diagnostic breast cancer data (569 instances, 30 features),
vendored as ``breast_cancer.csv`` from scikit-learn 1.9.1's bundled copy (BSD-3-Clause
package; data by W. H. Wolberg, W. N. Street and O. L. Mangasarian, UCI repository,
CC BY 4.0). It ships inside this package, so nothing is downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from accord.mpc.engine import Party, SharedArray, append, dot, mulv, sigmoid, zeros
from accord.mpc.vectorize import vectorize

DATA = Path(__file__).with_name("breast_cancer.csv")


def load_breast_cancer() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Features standardized to mean 0, variance 1 (as an owner would before sharing), labels 0/1."""
    with DATA.open() as fh:
        head = fh.readline().strip().split(",")
        n, d = int(head[0]), int(head[1])
        raw = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    if raw.shape != (n, d + 1):
        raise ValueError("breast_cancer.csv has an unexpected shape")
    x = raw[:, :d]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = raw[:, d].astype(np.int64)
    return x, y


def train_logistic(
    x: SharedArray, y: SharedArray, *, epochs: int = 5, lr: float = 0.5, batch: int = 128
) -> tuple[SharedArray, SharedArray]:
    """Mini-batch gradient descent; returns shared (weights, bias). Nothing is revealed."""
    n, d = x.shape
    w = zeros(x.party, (d,))
    b = zeros(x.party, (1,))
    for _ in range(epochs):
        for start in range(0, n, batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            p = sigmoid(xb @ w + b)
            err = p - yb
            step = lr / len(xb)
            w = w - (xb.T @ err) * step
            b = b - err.sum(axis=0, keepdims=True) * step
    return w, b


@vectorize
def train_listing(
    party: Party,
    x: SharedArray,
    y: SharedArray,
    w: SharedArray,
    round_cnt: int,
    batch: int,
    eta: float,
) -> SharedArray:
    """The PrivPy talk's logistic-regression listing, line for line in this API.

    Labels ``y`` are -1/1 (shared integers), ``w`` holds the weights and, last, the bias. The
    element-wise loops are rewritten by :func:`~accord.mpc.vectorize.vectorize`: ``xy`` is one
    vector multiply instead of one per row, the gradient sum one local sum; the epoch and
    mini-batch loops stay as written (each step needs the previous weights).
    ``train_listing.__wrapped__`` is the same code run as written (the tests compare both).
    """
    n, dimension = x.shape
    xy = [x[i] * y[i] for i in range(n)]
    for _ in range(round_cnt):
        for i in range(n // batch):
            start = i * batch
            end = (i + 1) * batch
            grads = zeros(party, dimension + 1)
            wTx = dot(x[start:end], w[:-1]) + w[-1]  # noqa: N806 - the talk's name
            coeff = sigmoid(-y[start:end] * wTx)
            coexy = mulv(coeff, xy[start:end])
            coey = coeff * y[start:end]
            for j in range(batch):
                grads += append(coexy[j], coey[j])
            w += eta * grads / batch
    return w


def predict_proba(x: SharedArray, w: SharedArray, b: SharedArray) -> SharedArray:
    """Private inference: scores of shared inputs under a shared model."""
    return sigmoid(x @ w + b)


def train_plain(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    *,
    epochs: int = 5,
    lr: float = 0.5,
    batch: int = 128,
) -> tuple[npt.NDArray[np.float64], float]:
    """The same algorithm in plain NumPy (exact sigmoid): the reference the tests compare to."""
    n, d = x.shape
    w = np.zeros(d)
    b = 0.0
    for _ in range(epochs):
        for start in range(0, n, batch):
            xb, yb = x[start : start + batch], y[start : start + batch]
            p = 1.0 / (1.0 + np.exp(-(xb @ w + b)))
            err = p - yb
            w = w - (xb.T @ err) * (lr / len(xb))
            b = b - float(err.sum()) * (lr / len(xb))
    return w, b
