"""Logistic regression on secret-shared data with three MPC servers on loopback.

Two hospitals hold different features of the same patients (vertical partitioning). Each
shares its columns from its own machine; the servers train on the shares; only the model is
revealed, to the requester. Then a third party scores new records privately.

    python examples/mpc_logistic_regression.py
"""

from __future__ import annotations

import time

import numpy as np

from accord.mpc.cluster import LocalCluster
from accord.mpc.ml import load_breast_cancer, train_plain


def main() -> None:
    x, y = load_breast_cancer()
    with LocalCluster() as cluster, cluster.connect() as servers:
        # hospital A holds features 0..14, hospital B 15..29; the labels sit with A
        servers.share("F_a", x[:, :15])
        servers.share("F_b", x[:, 15:])
        servers.share("y_a", y.astype(float))
        t0 = time.perf_counter()
        out, public = servers.run("lr_train", ["F_a", "F_b", "y_a"], {"epochs": 5, "lr": "0.5", "batch": 128})
        wall = time.perf_counter() - t0
        w, b = out["w"], float(out["b"][0])
        acc = float((((x @ w + b) > 0).astype(int) == y).mean())
        wp, bp = train_plain(x, y, epochs=5, lr=0.5, batch=128)
        acc_plain = float((((x @ wp + bp) > 0).astype(int) == y).mean())
        print(f"trained on shares in {wall:.2f} s ({public['train_ns'] / 1e9:.2f} s on the servers)")
        print(f"accuracy: MPC {acc:.4f}, plain NumPy {acc_plain:.4f}; max |w - w_plain| = {np.abs(w - wp).max():.4f}")

        # private inference: the model and the new records stay shared
        servers.share("X", x[:20])
        servers.share("w", w)
        servers.share("b", np.array([b]))
        scores, _ = servers.run("lr_predict", ["X", "w", "b"])
        print("scores of 20 records (revealed to the requester only):", np.round(scores["p"], 3))


if __name__ == "__main__":
    main()
