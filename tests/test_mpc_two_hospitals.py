"""The two-hospital example runs as written: two owner keys, grants, the analyst's model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from accord.mpc.cluster import LocalCluster
from accord.mpc.ml import load_breast_cancer, train_plain

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mpc_logistic_regression.py"


def test_two_hospitals_example():
    spec = importlib.util.spec_from_file_location("mpc_lr_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y = load_breast_cancer()
    with LocalCluster(timeout=10, clients=("hospital_a", "hospital_b", "analyst")) as cl:
        out = mod.two_hospitals(cl, x, y, epochs=2)  # asserts the refusal before the grants
        out["analyst"].close()
    wp, bp = train_plain(x, y, epochs=2, lr=0.5, batch=128)
    assert np.abs(out["w"] - wp).max() < 0.05
    acc = float((((x @ out["w"] + out["b"][0]) > 0).astype(int) == y).mean())
    assert acc > 0.95
