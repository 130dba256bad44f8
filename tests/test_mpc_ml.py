"""Logistic regression on shared data (horizontal and vertical partitions) and inference."""

from __future__ import annotations

import numpy as np

from accord.mpc import engine as E
from accord.mpc.local import run_local
from accord.mpc.ml import load_breast_cancer, predict_proba, train_logistic, train_plain
from accord.mpc.programs import PROGRAMS, code_hash


def _accuracy(x, y, w, b):
    return float((((x @ w + b) > 0).astype(int) == y).mean())


def test_dataset_ships_with_the_package():
    x, y = load_breast_cancer()
    assert x.shape == (569, 30) and set(np.unique(y)) == {0, 1}
    assert np.abs(x.mean(axis=0)).max() < 1e-9


def test_horizontal_training_matches_numpy():
    x, y = load_breast_cancer()
    half = 300

    def prog(p, xa, xb, ya, yb):
        X = E.concatenate([xa, xb], axis=0)
        Y = E.concatenate([ya, yb], axis=0)
        w, b = train_logistic(X, Y, epochs=2, lr=0.5, batch=128)
        return w.reveal(), b.reveal()

    inputs = {
        "xa": (x[:half], 16),
        "xb": (x[half:], 16),
        "ya": (y[:half].astype(float), 16),
        "yb": (y[half:].astype(float), 16),
    }
    w, b = run_local(prog, inputs)[0]
    wp, bp = train_plain(x, y, epochs=2, lr=0.5, batch=128)
    assert np.abs(w - wp).max() < 0.05  # sigmoid approximation + fixed point
    assert _accuracy(x, y, w, b[0]) > 0.95
    assert abs(_accuracy(x, y, w, b[0]) - _accuracy(x, y, wp, bp)) < 0.02


def test_vertical_training_and_private_inference():
    x, y = load_breast_cancer()

    def prog(p, fa, fb, y):
        X = E.concatenate([fa, fb], axis=1)  # two owners hold different features
        w, b = train_logistic(X, y, epochs=1, lr=0.5, batch=256)
        scores = predict_proba(X[:50], w, b)
        return scores.reveal(to=0)

    r = run_local(prog, {"fa": (x[:, :12], 16), "fb": (x[:, 12:], 16), "y": (y.astype(float), 16)})
    assert r[1] is None and r[2] is None
    wp, bp = train_plain(x, y, epochs=1, lr=0.5, batch=256)
    plain = 1 / (1 + np.exp(-(x[:50] @ wp + bp)))
    assert np.abs(r[0] - plain).max() < 0.05


def test_programs_have_stable_code_hashes():
    for name in PROGRAMS:
        h = code_hash(name)
        assert len(h) == 64 and h == code_hash(name)
