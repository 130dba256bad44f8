"""Two hospitals train one logistic-regression model without showing each other their patients.

Three MPC servers run on loopback; the cluster registers three client keys. Each hospital
shares its own rows from its own machine, under its own key, and grants the analyst exactly
one run: ``lr_train`` with these params on these four inputs, as they are now (another
learning rate, one epoch more, a swapped or replaced input is refused: such a choice could make
the model reveal a patient's row). The analyst's run combines both hospitals' rows
(horizontal partitioning) and receives only the model. A run without both grants is refused.
Then the analyst scores new records privately (its own inputs, nothing to grant).

    python examples/mpc_logistic_regression.py
"""

from __future__ import annotations

import time

import numpy as np

from accord.base.errors import MpcError
from accord.mpc.client import Cluster, ref
from accord.mpc.cluster import LocalCluster
from accord.mpc.ml import load_breast_cancer, train_plain


def two_hospitals(cluster: LocalCluster, x: np.ndarray, y: np.ndarray, epochs: int = 5) -> dict:
    """Hospital A holds the first 285 patients, hospital B the rest; returns the analyst's model."""
    half = 285
    analyst = cluster.connect("analyst")
    keys = {}
    for name, rows in (("hospital_a", slice(0, half)), ("hospital_b", slice(half, None))):
        with cluster.connect(name) as h:  # on the hospital's machine: only shares leave it
            h.share("rows", x[rows])
            h.share("labels", y[rows].astype(float))
            keys[name] = h.public_key
    inputs = [
        ref(keys["hospital_a"], "rows", "X_a"),
        ref(keys["hospital_a"], "labels", "y_a"),
        ref(keys["hospital_b"], "rows", "X_b"),
        ref(keys["hospital_b"], "labels", "y_b"),
    ]
    params = {"epochs": epochs, "lr": "0.5", "batch": 128}  # the run both hospitals agree to
    try:
        analyst.run("lr_train", inputs, params)
        raise AssertionError("a run without the hospitals' grants must be refused")
    except MpcError as e:
        print("before the grants:", str(e).split(";")[0])
    for name in keys:
        with cluster.connect(name) as h:
            for own in ("rows", "labels"):
                h.grant(own, "lr_train", analyst.public_key, params=params, inputs=inputs)
    try:
        analyst.run("lr_train", inputs, {**params, "lr": "16"})
        raise AssertionError("a run with other params than the granted ones must be refused")
    except MpcError as e:
        print("other params than granted:", str(e).split(";")[0])
    t0 = time.perf_counter()
    out, public = analyst.run("lr_train", inputs, params)
    out["wall_s"] = time.perf_counter() - t0
    out["train_s"] = public["train_ns"] / 1e9
    out["analyst"] = analyst
    return out


def main() -> None:
    x, y = load_breast_cancer()
    with LocalCluster(clients=("hospital_a", "hospital_b", "analyst")) as cluster:
        out = two_hospitals(cluster, x, y)
        w, b = out["w"], float(out["b"][0])
        acc = float((((x @ w + b) > 0).astype(int) == y).mean())
        wp, bp = train_plain(x, y, epochs=5, lr=0.5, batch=128)
        acc_plain = float((((x @ wp + bp) > 0).astype(int) == y).mean())
        print(
            f"trained on both hospitals' shares in {out['wall_s']:.2f} s ({out['train_s']:.2f} s on the servers)"
        )
        print(
            f"accuracy: MPC {acc:.4f}, plain NumPy {acc_plain:.4f}; max |w - w_plain| = {np.abs(w - wp).max():.4f}"
        )

        # private inference: the model and the new records stay shared
        analyst: Cluster = out["analyst"]
        analyst.share("X", x[:20])
        analyst.share("w", w)
        analyst.share("b", np.array([b]))
        scores, _ = analyst.run("lr_predict", ["X", "w", "b"])
        print("scores of 20 records (revealed to the analyst only):", np.round(scores["p"], 3))
        analyst.close()


if __name__ == "__main__":
    main()
