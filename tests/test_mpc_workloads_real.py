"""LeNet-5 on 32x32 digits and K-means on a real data set (accord.mpc.workloads), against
their NumPy references."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from accord.base.errors import MpcError
from accord.mpc import workloads as W
from accord.mpc.local import run_local
from accord.mpc.programs import PROGRAMS


@pytest.fixture(scope="module")
def lenet():
    pytest.importorskip("sklearn")
    return W.lenet5_digits()


def _confident(params, x, margin=0.5):
    """Images whose top two plaintext scores are far apart: fixed-point rounding (fresh
    randomness every run) cannot flip their label, so a disagreement is an engine error."""
    s = np.sort(W.lenet5_scores(params, x), axis=1)
    return x[s[:, -1] - s[:, -2] > margin]


def test_lenet5_has_lenet5s_shapes_and_learns(lenet):
    params, xte, yte = lenet
    assert {k: v.shape for k, v in params.items()} == W.LENET5_SHAPES
    assert xte.shape[1:] == (32, 32)
    assert np.mean(W.lenet5_plain(params, xte) == yte) >= 0.95


def test_lenet5_secure_inference_agrees_with_plaintext(lenet):
    params, xte, _ = lenet
    x = _confident(params, xte[:12])[:3]
    assert len(x) == 3
    inputs = {"X": (x, 16), **{k: (v, 16) for k, v in params.items()}}
    out = run_local(lambda p, **kw: PROGRAMS["lenet5_infer"](p, kw)["labels"].reveal(), inputs)
    assert np.array_equal(out[0], W.lenet5_plain(params, x))


def test_lenet5_secure_scores_follow_the_weights(lenet):
    """Not only the argmax: a secure label changes when a shared weight does (the program
    really computes with the shared weights, not with anything cached)."""
    params, xte, _ = lenet
    x = _confident(params, xte[:12])[:1]
    label = int(W.lenet5_plain(params, x)[0])
    other = (label + 1) % 10
    bumped = {k: v.copy() for k, v in params.items()}
    bumped["b5"][other] += 1000.0  # a huge bias forces the other class
    inputs = {"X": (x, 16), **{k: (v, 16) for k, v in bumped.items()}}
    got = run_local(lambda p, X, **w: W.lenet5_infer(X, w).reveal(), inputs)[0]
    assert got.tolist() == [other]


def test_lenet5_refuses_bad_shapes(lenet):
    params, xte, _ = lenet
    inputs = {"X": (xte[:1, :8, :8], 16), **{k: (v, 16) for k, v in params.items()}}
    with pytest.raises(MpcError, match="32, 32"):
        run_local(lambda p, **kw: PROGRAMS["lenet5_infer"](p, kw), inputs)
    bad = dict(inputs, X=(xte[:1], 16), W3=(np.zeros((120, 400)), 16))
    with pytest.raises(MpcError, match="W3"):
        run_local(lambda p, **kw: PROGRAMS["lenet5_infer"](p, kw), bad)
    with pytest.raises(MpcError, match="missing"):
        run_local(lambda p, X: PROGRAMS["lenet5_infer"](p, {"X": X}), {"X": (xte[:1], 16)})


def test_kmeans_on_breast_cancer_matches_plain_lloyd():
    x, c0 = W.breast_cancer_kmeans(5)
    assert x.shape == (569, 30)
    centers, onehot = run_local(
        lambda p, X, C: [v.reveal() for v in W.kmeans(X, C, 5)], {"X": (x, 16), "C": (c0, 16)}
    )[0]
    ref_c, ref_lab = W.kmeans_plain(x, c0, 5)
    assert np.array_equal(onehot.argmax(axis=1), ref_lab) and np.all(onehot.sum(axis=1) == 1)
    assert len(set(ref_lab.tolist())) == 5  # every cluster is used: not a degenerate run
    assert np.max(np.abs(centers - ref_c)) < 1e-3


def test_bench_kmeans_real_and_lenet5_on_three_servers(lenet):
    from accord.benches import mpc_privpy

    ns = dict(points=50, iters=2, images=2)
    out = mpc_privpy.run(argparse.Namespace(workload="kmeans", dataset="breast_cancer", **ns))
    assert out["dataset"] == "breast_cancer" and out["points"] == 569 and out["features"] == 30
    assert out["assignment_agreement"] == 1.0 and out["max_center_error"] < 1e-3
    out = mpc_privpy.run(argparse.Namespace(workload="kmeans", dataset="blobs", **ns))
    assert out["points"] == 50 and out["features"] == 28
    out = mpc_privpy.run(argparse.Namespace(workload="lenet5", dataset="blobs", **ns))
    assert out["images"] == 2 and out["lenet5_s_per_instance"] > 0
    assert out["privpy_published"] == {"lenet5_s_per_instance": 0.097}
