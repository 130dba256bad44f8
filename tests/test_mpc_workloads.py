"""K-means and CNN inference on shared data (accord.mpc.workloads), against NumPy."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from accord.mpc import workloads as W
from accord.mpc.local import run_local
from accord.mpc.programs import PROGRAMS


def test_argmin_onehot_is_exact_and_breaks_ties_to_the_first():
    d = np.array(
        [
            [3.0, 1.0, 2.0, 1.0, 5.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [-1.0, 2.0, -3.5, 4.0, -3.4],
            [9.0, 8.0, 7.0, 6.0, 5.0],
        ]
    )
    got = run_local(lambda p, d: W.argmin_onehot(d).reveal(), {"d": (d, 16)})[0]
    assert np.array_equal(got, np.eye(5, dtype=np.int64)[np.argmin(d, axis=1)])


def test_kmeans_matches_plain_lloyd():
    x, c0 = W.blobs(240, 28, 5, seed=2)
    centers, onehot = run_local(
        lambda p, X, C: [v.reveal() for v in W.kmeans(X, C, 4)], {"X": (x, 16), "C": (c0, 16)}
    )[0]
    ref_c, ref_lab = W.kmeans_plain(x, c0, 4)
    assert np.max(np.abs(centers - ref_c)) < 1e-3
    assert np.array_equal(onehot.argmax(axis=1), ref_lab) and np.all(onehot.sum(axis=1) == 1)


def test_kmeans_keeps_an_empty_clusters_centre():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 0.3, (30, 3)), rng.normal(2, 0.3, (30, 3))])
    c0 = np.array([[-2.0, -2, -2], [2.0, 2, 2], [40.0, 40, 40]])  # nobody is near the third
    centers = run_local(
        lambda p, X, C: W.kmeans(X, C, 2)[0].reveal(), {"X": (x, 16), "C": (c0, 16)}
    )[0]
    ref, _ = W.kmeans_plain(x, c0, 2)
    assert np.allclose(centers[2], [40, 40, 40], atol=1e-3)
    assert np.max(np.abs(centers - ref)) < 1e-3


def test_kmeans_program_checks_its_inputs():
    x, c0 = W.blobs(30, 4, 3)
    out = run_local(
        lambda p, X, C: PROGRAMS["kmeans"](p, {"X": X, "C": C}, iters=2)["centers"].reveal(),
        {"X": (x, 16), "C": (c0, 16)},
    )[0]
    assert np.max(np.abs(out - W.kmeans_plain(x, c0, 2)[0])) < 1e-3
    from accord.base.errors import MpcError

    with pytest.raises(MpcError):
        run_local(
            lambda p, X, C: PROGRAMS["kmeans"](p, {"X": X, "C": C}, iters=0),
            {"X": (x, 16), "C": (c0, 16)},
        )
    with pytest.raises(MpcError):
        run_local(lambda p, X: PROGRAMS["kmeans"](p, {"X": X, "C": X[:, :2]}), {"X": (x, 16)})


@pytest.fixture(scope="module")
def cnn():
    pytest.importorskip("sklearn")
    xtr, ytr, xte, yte = W.digits_split()
    return W.train_cnn(xtr, ytr), xte, yte


def test_cnn_secure_inference_agrees_with_plaintext(cnn):
    params, xte, yte = cnn
    x, y = xte[:60], yte[:60]
    inputs = {"X": (x, 16), **{k: (v, 16) for k, v in params.items()}}
    labels = run_local(lambda p, X, **w: W.cnn_infer(X, w).reveal(), inputs)[0]
    plain = W.cnn_plain(params, x)
    assert np.mean(labels == plain) >= 59 / 60  # a near-tie of two scores may flip, no more
    assert np.mean(labels == y) >= 0.9 and np.mean(plain == y) >= 0.9


def test_cnn_program_refuses_bad_shapes(cnn):
    from accord.base.errors import MpcError

    params, xte, _ = cnn
    inputs = {"X": (xte[:2].reshape(2, 64), 16), **{k: (v, 16) for k, v in params.items()}}
    with pytest.raises(MpcError, match="shape"):
        run_local(lambda p, **kw: PROGRAMS["cnn_infer"](p, kw), inputs)
    bad = dict(inputs, X=(xte[:2], 16), W2=(np.zeros((16, 54)), 16))
    with pytest.raises(MpcError, match="W2"):
        run_local(lambda p, **kw: PROGRAMS["cnn_infer"](p, kw), bad)
    with pytest.raises(MpcError, match="missing"):
        run_local(lambda p, X: PROGRAMS["cnn_infer"](p, {"X": X}), {"X": (xte[:2], 16)})


def test_bench_kmeans_subbench_runs_on_three_servers():
    from accord.benches import mpc_privpy

    out = mpc_privpy.run(argparse.Namespace(workload="kmeans", points=50, iters=1, images=1))
    assert out["assignment_agreement"] == 1.0 and out["max_center_error"] < 1e-3
    assert out["kmeans_s_per_instance"] > 0
