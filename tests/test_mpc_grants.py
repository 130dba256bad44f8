"""Multi-owner computations: each owner grants named programs and receivers access to its
named inputs; a run that reads another owner's input without its grant is refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import MpcError
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster, ref
from accord.mpc.cluster import free_port
from accord.mpc.ml import load_breast_cancer, train_plain
from accord.mpc.registry import parse_clients
from accord.mpc.server import MpcServer, ServerInfo

NAMES = ("hospital_a", "hospital_b", "analyst", "mallory")


@pytest.fixture
def consortium(tmp_path):
    keys = {n: X25519PrivateKey.generate() for n in NAMES}
    registry = parse_clients(
        [{"name": n, "public_key": public_bytes(k).hex()} for n, k in keys.items()],
        quota_bytes=64 << 20,
        max_connections=4,
    )
    skeys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in skeys]

    def make(i):
        return MpcServer(
            i, infos, skeys[i], timeout=10, clients=registry, data_dir=tmp_path / f"s{i}"
        )

    servers = [make(i) for i in range(3)]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    state = {"servers": servers, "make": make}
    yield infos, keys, state
    for s in state["servers"]:
        s.stop()


def _refs(keys):
    a, b = public_bytes(keys["hospital_a"]), public_bytes(keys["hospital_b"])
    return [
        ref(a, "rows", "X_a"),
        ref(a, "labels", "y_a"),
        ref(b, "rows", "X_b"),
        ref(b, "labels", "y_b"),
    ]


def _accuracy(x, y, w, b):
    return float((((x @ w + b) > 0).astype(int) == y).mean())


def test_two_hospitals_train_one_model_the_analyst_receives(consortium):
    infos, keys, _ = consortium
    x, y = load_breast_cancer()
    half = 285
    analyst = public_bytes(keys["analyst"])
    for name, rows in (("hospital_a", slice(0, half)), ("hospital_b", slice(half, None))):
        with Cluster(infos, key=keys[name]) as h:  # each hospital shares only its own rows
            h.share("rows", x[rows])
            h.share("labels", y[rows].astype(float))
    with Cluster(infos, key=keys["analyst"]) as an:
        # no grant yet: refused before anything is read
        with pytest.raises(MpcError, match="not granted"):
            an.run("lr_train", _refs(keys), {"epochs": 3})
        with Cluster(infos, key=keys["hospital_a"]) as h:
            h.grant("rows", ["lr_train"], [analyst])
            h.grant("labels", ["lr_train"], [analyst])
        with pytest.raises(MpcError, match="not granted"):  # hospital B has not granted yet
            an.run("lr_train", _refs(keys), {"epochs": 3})
        with Cluster(infos, key=keys["hospital_b"]) as h:
            h.grant("rows", ["lr_train"], [analyst])
            h.grant("labels", ["lr_train"], [analyst])
        out, _ = an.run("lr_train", _refs(keys), {"epochs": 3})
    wp, bp = train_plain(x, y, epochs=3, lr=0.5, batch=128)
    assert np.abs(out["w"] - wp).max() < 0.05
    assert abs(_accuracy(x, y, out["w"], out["b"][0]) - _accuracy(x, y, wp, bp)) < 0.02


def test_a_grant_covers_only_its_programs_receivers_and_owner(consortium):
    infos, keys, state = consortium
    a = public_bytes(keys["hospital_a"])
    analyst = public_bytes(keys["analyst"])
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.share("x", np.array([3, 5]), 0)
        h.share("y", np.array([4, 6]), 0)
        h.grant("x", ["compare"], [analyst])
        h.grant("y", ["compare"], [analyst])
    both = [ref(a, "x"), ref(a, "y")]
    with Cluster(infos, key=keys["analyst"]) as an:
        assert an.run("compare", both)[0]["lt"].tolist() == [1, 1]
        with pytest.raises(MpcError, match="not granted"):  # another program: it would reveal x*y
            an.run("mul", both)
    with Cluster(infos, key=keys["mallory"]) as m:
        with pytest.raises(MpcError, match="not granted"):  # another receiver
            m.run("compare", both)
        # a grant is made in the granter's own namespace: mallory cannot grant A's input
        with pytest.raises(MpcError, match="no input named"):
            m.grant("x", ["compare"], [public_bytes(keys["mallory"])])
        with pytest.raises(MpcError, match="not granted"):
            m.run("compare", both)
    assert all(s.refused_grants >= 3 for s in state["servers"])

    # grants are persisted with the shares: a restarted server still honours them
    state["servers"][1].stop()
    state["servers"][1] = state["make"](1)
    state["servers"][1].start()
    deadline = time.monotonic() + 20
    while any(s.dead or len(s.peers) < 2 for s in state["servers"]):
        assert time.monotonic() < deadline, "the restarted server did not rejoin"
        time.sleep(0.05)
    with Cluster(infos, key=keys["analyst"]) as an:
        assert an.run("compare", both)[0]["lt"].tolist() == [1, 1]
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.revoke("x", ["compare"], [analyst])
    with Cluster(infos, key=keys["analyst"]) as an, pytest.raises(MpcError, match="not granted"):
        an.run("compare", both)
    # deleting an input drops its grants: a new input under the name starts with none
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.delete("y")
        h.share("y", np.array([0, 0]), 0)
        h.grant("x", ["compare"], [analyst])
    with Cluster(infos, key=keys["analyst"]) as an, pytest.raises(MpcError, match="not granted"):
        an.run("compare", both)
