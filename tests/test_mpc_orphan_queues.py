"""A run sent to one server only leaves nothing behind on its peers: the per-session queues
its messages created there expire once no local run claimed them within the session timeout
(found in review: 200 one-server runs left 200 queues on each peer for good)."""

from __future__ import annotations

import os
import threading
import time

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.server import MpcServer, ServerInfo, pack, unpack

N = 6
TIMEOUT = 0.5


def _wait_until(pred, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_one_server_runs_leave_no_queues_on_the_peers():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    servers = [MpcServer(i, infos, keys[i], timeout=TIMEOUT) for i in range(3)]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    try:
        with Cluster(infos) as c:
            for _ in range(N):
                c.channels[0].send(
                    pack(
                        {
                            "t": "run",
                            "s": os.urandom(8).hex(),
                            "program": "bench",
                            "inputs": [],
                            "params": {"n": 1, "m": 1},
                        }
                    )
                )
                reply, _ = unpack(c.channels[0].recv())
                assert reply["t"] == "error"  # the peers never joined: it fails after the timeout
            # generous deadline (40 timeouts): expiry needs only one timeout plus one sweep
            assert _wait_until(lambda: all(not s._queues for s in servers), 40 * TIMEOUT), [
                len(s._queues) for s in servers
            ]
            # the peers got server 0's first messages (that created their queues), and dropped them
            assert servers[1].expired_queues >= 1 and servers[2].expired_queues >= 1
            # the cluster still runs on all three servers afterwards
            out, pub = c.run("bench", [], {"n": 1, "m": 1})
            assert "mul_ns" in pub
    finally:
        for s in servers:
            s.stop()
