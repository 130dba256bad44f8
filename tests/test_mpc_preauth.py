"""Connections that never authenticate cannot lock registered clients out (found in review:
64 silent connections that sent only b"C" took every client slot for the handshake
timeout, and renewing them kept every registered client refused).

The attacker connects from another loopback address (127.0.0.2) than the registered client
(127.0.0.1): the cap is per source address, so it is what a second host would see.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.server import MpcServer, ServerInfo, pack


@pytest.fixture
def cluster():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    servers = [MpcServer(i, infos, keys[i], timeout=5) for i in range(3)]  # default caps
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    yield infos, servers
    for s in servers:
        s.stop()


def _attacker_socket(info: ServerInfo) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.2", 0))
    s.connect((info.host, info.port))
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed (or reset) this connection."""
    try:
        while select.select([s], [], [], 0)[0]:
            if not s.recv(4096):
                return True
    except OSError:
        return True
    return False


def test_one_host_cannot_take_every_client_slot(cluster):
    infos, servers = cluster
    socks = []
    try:
        for _ in range(64):
            s = _attacker_socket(infos[0])
            with contextlib.suppress(OSError):  # a refused connection may be reset already
                s.sendall(b"C")
            socks.append(s)
        # the server has accepted all 64 (8 held, the rest refused) before the client comes
        want = 64 - servers[0].max_preauth_per_ip
        end = time.monotonic() + 20
        while (
            servers[0].refused_preauth + servers[0].expired_preauth < want
            and time.monotonic() < end
        ):
            time.sleep(0.05)
        with Cluster(infos, key=X25519PrivateKey.generate()) as c:  # a client from another host
            replies = c._all([pack({"t": "ping"})] * 3)
            assert all(h["t"] == "pong" for h, _ in replies)
        # the cap refused most of them (a held one whose 3 s deadline passed frees its slot for
        # another attacker connection, so under load some are held and expire instead)
        assert servers[0].refused_preauth >= 1
        assert servers[0].refused_preauth + servers[0].expired_preauth >= want
    finally:
        for s in socks:
            s.close()


def test_a_trickled_handshake_is_cut_at_the_preauth_deadline(cluster):
    infos, servers = cluster
    s = _attacker_socket(infos[0])
    try:
        s.sendall(b"C")
        closed = False
        # one byte every 0.5 s would stretch a per-read timeout for 32 s (64 bytes)
        for _ in range(60):
            try:
                s.sendall(os.urandom(1))
            except OSError:
                closed = True
                break
            if _closed_by_server(s):
                closed = True
                break
            time.sleep(0.5)
        assert closed, "a connection that never authenticates is still open after 30 s"
        assert servers[0].expired_preauth >= 1
    finally:
        s.close()
