"""Torn stores: a store or replace that reached only some servers must stop the run before
any share is sent, never compute on shares of two different values."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import MpcError, PeerGone
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.local import split
from accord.mpc.server import MpcServer, ServerInfo, pack, unpack


@pytest.fixture
def mesh():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    servers = [MpcServer(i, infos, keys[i], timeout=5) for i in range(3)]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with Cluster(infos) as c:
        yield servers, c
    for s in servers:
        s.stop()


def _store_on(c: Cluster, reached: tuple[int, ...], name: str, values, frac: int = 0) -> None:
    """A client that loses one of its three store requests: only ``reached`` get theirs."""
    triple = split(np.asarray(values), frac)
    sid = os.urandom(16)
    for i in reached:
        a, b = triple[i]
        head = {"t": "store", "name": name, "shape": list(a.shape), "frac": frac, "id": sid}
        c.channels[i].send(pack(head, a.tobytes() + b.tobytes()))
        assert unpack(c.channels[i].recv())[0]["t"] == "stored"


def _stats(servers):
    return [(s.data_frames, s.input_mismatches, s.failed_runs) for s in servers]


def test_a_torn_replace_aborts_the_run_before_any_share_is_sent(mesh):
    """Server 2 keeps the old x, servers 0 and 1 hold the new one. The old servers ran the
    program on the mix and answered garbage (a wrong product, without any error)."""
    servers, c = mesh
    c.share("x", np.array([1, 2, 3]), 0)
    c.share("y", np.array([10, 20, 30]), 0)
    assert c.run("mul", ["x", "y"])[0]["z"].tolist() == [10, 40, 90]

    _store_on(c, (0, 1), "x", [7, 7, 7])  # the request to server 2 was lost
    before = _stats(servers)
    with pytest.raises(MpcError, match="different versions of input 'x'") as err:
        c.run("mul", ["x", "y"])
    assert "result" not in str(err.value)
    after = _stats(servers)
    for (f0, m0, r0), (f1, m1, r1) in zip(before, after, strict=True):
        assert f1 - f0 == 2  # the check to each peer, and nothing else: no nonce, no share
        assert m1 - m0 == 1 and r1 - r0 == 1  # counted on every server

    c.share("x", np.array([7, 7, 7]), 0)  # stored again, on all three: runs work again
    assert c.run("mul", ["x", "y"])[0]["z"].tolist() == [70, 140, 210]


def test_a_store_that_missed_a_server_fails_without_sending_shares(mesh):
    servers, c = mesh
    c.share("y", np.array([1, 2]), 0)
    _store_on(c, (1, 2), "x", [5, 6])  # server 0 never got x
    before = _stats(servers)
    with pytest.raises((MpcError, PeerGone), match="no input named 'x' on server 0"):
        c.run("mul", ["x", "y"])
    after = _stats(servers)
    assert after[0][0] == before[0][0]  # server 0 refused before sending anything
    assert all(after[i][0] - before[i][0] <= 2 for i in (1, 2))  # at most the check


def test_servers_asked_for_different_params_refuse_the_run(mesh):
    """A hostile requester sends each server another limit: the servers compare the run,
    not only the inputs, and nothing is computed on the mix."""
    servers, c = mesh
    for i, v in enumerate((40, 25)):
        c.share(f"b{i}", np.array(v), 0)
    frames = [
        pack(
            {
                "t": "run",
                "s": "mixed-limits",
                "program": "anti_stacking",
                "inputs": ["b0", "b1"],
                "params": {"limit": limit},
            }
        )
        for limit in (100, 100, 66)
    ]
    before = _stats(servers)
    with pytest.raises(MpcError, match="asked for different runs"):
        c._all(frames)
    after = _stats(servers)
    assert [(a[0] - b[0], a[1] - b[1]) for b, a in zip(before, after, strict=True)] == [(2, 1)] * 3
    assert int(c.run("anti_stacking", ["b0", "b1"], {"limit": 100})[0]["ok"]) == 1
