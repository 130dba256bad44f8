"""Denial of service: no memory for frames that do not arrive, nothing large before the
handshake is confirmed, a bounded number of client connections."""

from __future__ import annotations

import socket
import struct
import threading
import tracemalloc

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import AccordError, MpcError, PeerGone
from accord.mpc.channel import Channel, public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.server import MpcServer, ServerInfo

ANNOUNCED = 256 << 20


def _pair():
    a, b = socket.socketpair()
    ka, kb = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    out: list = [None]

    def srv():
        out[0] = Channel.handshake(b, kb, None, initiator=False)

    t = threading.Thread(target=srv)
    t.start()
    client, _ = Channel.handshake(a, ka, public_bytes(kb), initiator=True)
    t.join()
    return client, out[0][0]


def _peak_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_an_announced_frame_costs_only_the_bytes_that_arrive():
    client, server = _pair()
    client.sock.sendall(struct.pack(">I", ANNOUNCED) + b"\x00" * 100_000)
    client.sock.shutdown(socket.SHUT_WR)

    def read():
        with pytest.raises(PeerGone):
            server.recv()

    peak = _peak_while(read)
    assert peak < 8 << 20, f"{peak} bytes held for a frame that never came"
    client.close()
    server.close()


def test_large_frames_still_arrive_whole():
    client, server = _pair()
    data = np.arange(3_000_000, dtype=np.uint64).tobytes()  # 24 MB: several doublings
    t = threading.Thread(target=client.send, args=(data,))
    t.start()
    assert server.recv() == data
    t.join()


def test_nothing_large_is_read_before_the_key_confirmation():
    """A peer that completes the key exchange but, instead of confirming, announces a huge
    frame is refused at once (before the fix the server allocated the announced size)."""
    a, b = socket.socketpair()
    kb = X25519PrivateKey.generate()
    a.sendall(public_bytes(X25519PrivateKey.generate()) + public_bytes(X25519PrivateKey.generate()))
    a.sendall(struct.pack(">I", ANNOUNCED))
    a.shutdown(socket.SHUT_WR)

    def shake():
        with pytest.raises(AccordError):
            Channel.handshake(b, kb, None, initiator=False)

    peak = _peak_while(shake)
    assert peak < 8 << 20
    a.close()


@pytest.fixture
def small_server():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    servers = [
        MpcServer(i, infos, keys[i], timeout=3, max_clients=2, max_client_bytes=1 << 20)
        for i in range(3)
    ]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    yield infos, servers
    for s in servers:
        s.stop()


def test_client_connections_and_client_frames_are_bounded(small_server):
    infos, servers = small_server
    c1, c2 = Cluster(infos), Cluster(infos)
    with pytest.raises((MpcError, OSError)):
        Cluster(infos)  # a third client at once is refused
    assert servers[0].refused_clients >= 1
    c2.close()
    # a frame above the client limit (its quota plus 1 MiB) ends that client's connection
    with pytest.raises(AccordError):
        c1.share("big", np.zeros(200_000), 16)  # 3.2 MB of share pairs
    c1.close()
    with Cluster(infos) as c:  # connections were given back; the servers still work
        c.share("x", np.array([3]), 0)
        c.share("y", np.array([4]), 0)
        assert c.run("mul", ["x", "y"])[0]["z"].tolist() == [12]


def test_bench_sizes_are_bounded(small_server):
    infos, servers = small_server
    with Cluster(infos) as c, pytest.raises(MpcError, match="bench needs"):
        c.run("bench", [], {"n": 10**9})
    with Cluster(infos) as c, pytest.raises(MpcError, match="bench needs"):
        c.run("bench", [], {"n": 10, "m": 10**6})
