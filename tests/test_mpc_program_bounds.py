"""Every public parameter of a served program is bounded: one registered client cannot pin
all three servers with a tiny input and a huge loop count (found in review: ``lr_train``
with a 4x2 data set and ``epochs=10**9`` would have run for years)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import MpcError
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster, ref
from accord.mpc.cluster import free_port
from accord.mpc.server import MpcServer, ServerInfo


@pytest.fixture
def cluster():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    servers = [MpcServer(i, infos, keys[i], timeout=5) for i in range(3)]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    yield infos, servers
    for s in servers:
        s.stop()


BAD = [
    ("lr_train", {"epochs": 10**9, "batch": 1}, "epochs"),
    ("lr_train", {"epochs": 10_000, "batch": 1}, "gradient steps"),
    ("lr_train", {"epochs": 0}, "epochs"),
    ("lr_train", {"batch": 0}, "batch"),
    ("lr_train", {"batch": -5}, "batch"),
    ("lr_train", {"epochs": "5"}, "epochs"),
    ("lr_train", {"lr": "nan"}, "lr"),
    ("lr_train", {"lr": "1e300"}, "lr"),
    ("lr_train", {"lr": "fast"}, "lr"),
    ("lr_listing", {"round_cnt": 1, "batch": 1, "eta": "inf"}, "eta"),
]


def test_unbounded_parameters_are_refused_at_once_and_the_cluster_keeps_serving(cluster):
    infos, servers = cluster
    key = X25519PrivateKey.generate()
    with Cluster(infos, key=key) as m:
        m.share("X", np.ones((16, 2)))
        m.share("y", np.ones(16))
        m.share("w", np.zeros(3))
        m.share("labels", np.ones(16, dtype=np.int64), 0)  # lr_listing's labels are integers
        for program, params, word in BAD:
            inputs = (
                ["X", ref(public_bytes(key), "labels", "y"), "w"]
                if program == "lr_listing"
                else ["X", "y"]
            )
            err: list[BaseException] = []

            def go(program=program, params=params, inputs=inputs, err=err) -> None:
                try:
                    m.run(program, inputs, params)
                except BaseException as e:  # noqa: BLE001 - checked below
                    err.append(e)

            th = threading.Thread(target=go, daemon=True)
            th.start()
            th.join(30)  # generous: a refusal takes milliseconds, the old run took years
            assert not th.is_alive(), f"{program} {params} still running"
            assert err and isinstance(err[0], MpcError), (program, params, err)
            assert word in str(err[0]), (program, params, str(err[0]))
        # a bounded run still works after the refusals
        out, pub = m.run("lr_train", ["X", "y"], {"epochs": 2, "batch": 2})
        assert out["w"].shape == (2,) and pub["train_ns"] > 0
    assert all(s.failed_runs == len(BAD) for s in servers)
