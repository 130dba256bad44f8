"""``accord bench mpc kmeans`` and ``accord bench mpc cnn``: PrivPy's two other workloads.

Both run on three MPC server processes on loopback (:class:`~accord.mpc.cluster.LocalCluster`),
timed until the last server holds its result, and compare with the same computation in
plain NumPy from the same inputs:

* ``kmeans``: Lloyd's iterations, 5 clusters, on a real data set by default (the breast
  cancer set this package ships, 569 instances and 30 features: the credit-card set of
  PrivPy's figure, 28 features, is shipped by no package), or ``--dataset blobs``, a
  synthetic set of that shape with ``--points`` rows. ``kmeans_s_per_instance`` is the
  whole clustering's time divided by the points (``..._iteration``: also by the iterations);
  also the largest centre error and the share of points assigned as in plaintext.
* ``cnn``: the LeNet-style network of :mod:`accord.mpc.workloads` on scikit-learn's 8x8
  digits (weights trained in NumPy first, not timed), images and weights both shared.
  ``cnn_s_per_instance`` is the inference time divided by images, ``cnn_s_one_image`` the
  time for a batch of one; also the accuracy of secure and plaintext inference and how often
  they agree.
* ``lenet5``: LeNet-5's own shapes (32x32 input, 5x5 convolutions to 6 and 16 channels,
  two 2x2 poolings, dense 120, 84, 10), PrivPy's CNN figure, on the digits upsampled to
  32x32 (weights trained in NumPy and cached, not timed). Same figures as ``cnn``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from rich.progress import Progress

WORKLOADS = ("kmeans", "cnn", "lenet5")
PUBLISHED = {
    "kmeans_s_per_instance": 4.56e-3,
    "cnn_s_per_instance": 0.097,
    "lenet5_s_per_instance": 0.097,  # PrivPy's CNN figure is LeNet-5 on MNIST
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=("breast_cancer", "blobs"),
        default="breast_cancer",
        help="kmeans: the shipped breast cancer set (569 x 30) or synthetic blobs (--points x 28)",
    )
    p.add_argument("--points", type=int, default=2000, help="kmeans --dataset blobs: points")
    p.add_argument("--iters", type=int, default=10, help="kmeans: Lloyd iterations")
    p.add_argument("--images", type=int, default=297, help="cnn, lenet5: test images to classify")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from accord.mpc.cluster import LocalCluster

    out: dict[str, Any] = {"workload": args.workload}
    with Progress(transient=True) as prog, LocalCluster(timeout=600) as cl:
        task = prog.add_task(f"mpc {args.workload}", total=3)
        c = cl.connect()
        if args.workload == "kmeans":
            out.update(_kmeans(c, args, prog, task))
        elif args.workload == "lenet5":
            out.update(_lenet5(c, args, prog, task))
        else:
            out.update(_cnn(c, args, prog, task))
        c.close()
    out["privpy_published"] = {k: v for k, v in PUBLISHED.items() if k.startswith(args.workload)}
    return out


def _kmeans(c: Any, args: argparse.Namespace, prog: Progress, task: Any) -> dict[str, Any]:
    from accord.mpc.workloads import blobs, breast_cancer_kmeans, kmeans_plain

    iters = int(args.iters)
    dataset = getattr(args, "dataset", "breast_cancer")
    if dataset == "blobs":
        x, c0 = blobs(int(args.points), 28, 5, seed=1)
    else:
        x, c0 = breast_cancer_kmeans(5)
    n = len(x)
    c.share("X", x, 16)
    c.share("C", c0, 16)
    prog.advance(task)
    t0 = time.perf_counter()
    res, pub = c.run("kmeans", ["X", "C"], {"iters": iters})
    wall = time.perf_counter() - t0
    prog.advance(task)
    ref_c, ref_lab = kmeans_plain(x, c0, iters)
    prog.advance(task)
    return {
        "dataset": dataset,
        "points": n,
        "features": int(x.shape[1]),
        "clusters": 5,
        "iters": iters,
        "kmeans_s_per_instance": float(f"{pub['train_ns'] / 1e9 / n:.3e}"),
        "kmeans_s_per_instance_iteration": float(f"{pub['train_ns'] / 1e9 / (n * iters):.3e}"),
        "kmeans_total_s": round(pub["train_ns"] / 1e9, 3),
        "wall_s": round(wall, 3),
        "max_center_error": float(f"{np.max(np.abs(res['centers'] - ref_c)):.3e}"),
        "assignment_agreement": round(float((res["onehot"].argmax(axis=1) == ref_lab).mean()), 4),
    }


def _cnn(c: Any, args: argparse.Namespace, prog: Progress, task: Any) -> dict[str, Any]:
    from accord.mpc.workloads import cnn_plain, digits_split, train_cnn

    xtr, ytr, xte, yte = digits_split()
    params = train_cnn(xtr, ytr)
    m = max(1, min(int(args.images), len(xte)))
    x, y = xte[:m], yte[:m]
    c.share("X", x, 16)
    for k, v in params.items():
        c.share(k, v, 16)
    prog.advance(task)
    t0 = time.perf_counter()
    res, pub = c.run("cnn_infer", ["X", *params])
    wall = time.perf_counter() - t0
    prog.advance(task)
    secure = np.rint(res["labels"]).astype(np.int64)
    plain = cnn_plain(params, x)
    # One image alone: the rounds are the batch's, so this is the latency floor.
    c.delete("X")
    c.share("X", x[:1], 16)
    one, pub1 = c.run("cnn_infer", ["X", *params])
    prog.advance(task)
    return {
        "images": m,
        "input_size": 64,
        "network": "conv3x3x6-maxpool2-relu-conv3x3x16-relu-dense10",
        "cnn_s_per_instance": float(f"{pub['infer_ns'] / 1e9 / m:.3e}"),
        "cnn_total_s": round(pub["infer_ns"] / 1e9, 3),
        "wall_s": round(wall, 3),
        "cnn_s_one_image": float(f"{pub1['infer_ns'] / 1e9:.3e}"),
        "secure_accuracy": round(float((secure == y).mean()), 4),
        "plain_accuracy": round(float((plain == y).mean()), 4),
        "secure_plain_agreement": round(float((secure == plain).mean()), 4),
    }


def _lenet5(c: Any, args: argparse.Namespace, prog: Progress, task: Any) -> dict[str, Any]:
    from accord.mpc.workloads import lenet5_digits, lenet5_plain

    train = prog.add_task("training LeNet-5 (cached after the first run)", total=None)
    params, xte, yte = lenet5_digits(progress=lambda s, t: prog.update(train, completed=s, total=t))
    prog.remove_task(train)
    m = max(1, min(int(args.images), len(xte)))
    x, y = xte[:m], yte[:m]
    c.share("X", x, 16)
    for k, v in params.items():
        c.share(k, v, 16)
    prog.advance(task)
    t0 = time.perf_counter()
    res, pub = c.run("lenet5_infer", ["X", *params])
    wall = time.perf_counter() - t0
    prog.advance(task)
    secure = np.rint(res["labels"]).astype(np.int64)
    plain = lenet5_plain(params, x)
    c.delete("X")
    c.share("X", x[:1], 16)
    _, pub1 = c.run("lenet5_infer", ["X", *params])
    prog.advance(task)
    return {
        "images": m,
        "input_size": 1024,
        "network": "LeNet-5: conv5x5x6-maxpool2-relu-conv5x5x16-maxpool2-relu-dense120-84-10",
        "data": "scikit-learn digits upsampled to 32x32",
        "lenet5_s_per_instance": float(f"{pub['infer_ns'] / 1e9 / m:.3e}"),
        "lenet5_total_s": round(pub["infer_ns"] / 1e9, 3),
        "wall_s": round(wall, 3),
        "lenet5_s_one_image": float(f"{pub1['infer_ns'] / 1e9:.3e}"),
        "secure_accuracy": round(float((secure == y).mean()), 4),
        "plain_accuracy": round(float((plain == y).mean()), 4),
        "secure_plain_agreement": round(float((secure == plain).mean()), 4),
    }
