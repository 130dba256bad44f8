"""Robust MPC servers: registered identities and their quotas, links that heal, shares that
survive a restart (persisted in LMDB)."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import MpcError, PeerGone
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import LocalCluster, free_port
from accord.mpc.registry import Identity, parse_clients
from accord.mpc.server import MpcServer, ServerInfo, pack, qualify, unpack
from accord.mpc.sharestore import ShareStore


def _start(keys, infos, **kw):
    servers = [MpcServer(i, infos, keys[i], timeout=5, **kw) for i in range(3)]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return servers


@pytest.fixture
def mesh():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    servers = _start(keys, infos)
    yield infos, servers
    for s in servers:
        s.stop()


def _healed(servers, failures_before, wait=20.0):
    """Until some link has failed since ``failures_before`` and every link is up again."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        failed = sum(s.link_failures for s in servers) > failures_before
        if failed and all(not s.dead and len(s.peers) == 2 for s in servers):
            return
        time.sleep(0.05)
    raise AssertionError("the mesh did not heal")


def _mul_ok(c):
    out, _ = c.run("mul", ["x", "y"])
    assert out["z"].tolist() == [12, -10, 0]


def test_bad_inter_server_frames_close_the_link_and_it_comes_back(mesh):
    """Fails on the old code: one bad frame ended the link for good (every later run failed)."""
    infos, servers = mesh
    owner = X25519PrivateKey.generate()
    with Cluster(infos, key=owner) as c:
        c.share("x", np.array([3, 5, 0]), 0)
        c.share("y", np.array([4, -2, 7]), 0)
        _mul_ok(c)
    attacks = [
        (2, 0, struct.pack(">I", 0xFFFFFFFF)),  # announces 4 GiB: far above the frame limit
        (1, 0, struct.pack(">I", 64) + os.urandom(64)),  # a frame that does not authenticate
        (2, 1, None),  # authenticated, but not a message a server sends
    ]
    for frm, to, raw in attacks:
        before = sum(s.link_failures for s in servers)
        ch = servers[frm].peers[to]
        if raw is None:
            ch.send(b"not a frame of the MPC protocol")
        else:
            with ch._lock:  # written between frames, as a corrupting network would
                ch.sock.sendall(raw)
        _healed(servers, before)
        with Cluster(infos, key=owner) as c:
            _mul_ok(c)
    assert servers[2].reconnects >= 2 and servers[1].reconnects >= 1


def test_in_process_server_restart_rejoins_with_its_shares(tmp_path):
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    servers = [
        MpcServer(i, infos, keys[i], timeout=5, data_dir=tmp_path / f"d{i}") for i in range(3)
    ]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    owner = X25519PrivateKey.generate()
    try:
        with Cluster(infos, key=owner) as c:
            c.share("x", np.array([3, 5, 0]), 0)
            c.share("y", np.array([4, -2, 7]), 0)
        before = sum(s.link_failures for s in servers)
        servers[0].stop()  # the lowest index: the two others must dial it again
        servers[0] = MpcServer(0, infos, keys[0], timeout=5, data_dir=tmp_path / "d0")
        assert servers[0].client_bytes == {public_bytes(owner): 2 * 16 * 3}  # quotas recounted
        servers[0].start()
        _healed(servers, before)
        with Cluster(infos, key=owner) as c:
            _mul_ok(c)
    finally:
        for s in servers:
            s.stop()


def test_a_restarted_server_process_keeps_its_shares():
    """Fails on the old code: shares lived in memory, the restarted server had none."""
    with LocalCluster(timeout=5) as cl:
        with cl.connect() as c:
            c.share("x", np.array([3, 5, 0]), 0)
            c.share("y", np.array([4, -2, 7]), 0)
        # the serve command serves the cluster file's registered clients only
        with pytest.raises(MpcError, match="not registered"):
            Cluster(cl.infos, key=X25519PrivateKey.generate())
        cl.restart(1)  # killed between the store and the run: no clean shutdown
        with cl.connect() as c:
            _mul_ok(c)
            cl.restart(0)
            cl.connect().close()  # the mesh is whole again
            # the long-lived client reconnects to the restarted server by itself: a request
            # may fail once on the old connection (it learns the server went), then works
            with contextlib.suppress(PeerGone):
                _mul_ok(c)
            _mul_ok(c)


def _registry(**quota_mb):
    keys = {n: X25519PrivateKey.generate() for n in quota_mb}
    entries = [
        {"name": n, "public_key": public_bytes(keys[n]).hex(), "quota_mb": q, "connections": 1}
        for n, q in quota_mb.items()
    ]
    return keys, parse_clients(entries, quota_bytes=512 << 20, max_connections=4)


def test_unregistered_keys_are_refused_and_registered_ones_have_their_own_quotas():
    keys, registry = _registry(alice=1, bob=1)
    skeys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in skeys]
    servers = _start(skeys, infos, clients=registry)
    try:
        # a key nobody registered: refused on connect, with the reason (old code: served)
        with pytest.raises(MpcError, match="not registered"):
            Cluster(infos, key=X25519PrivateKey.generate())
        assert servers[0].refused_identities == 1  # the client gives up at the first refusal
        assert all(not s.store for s in servers)
        with Cluster(infos, key=keys["alice"]) as alice, Cluster(infos, key=keys["bob"]) as bob:
            assert alice.identity == "alice"
            # one connection per identity here: a second one for alice is refused ...
            with pytest.raises(MpcError, match="connections open already"):
                Cluster(infos, key=keys["alice"])
            half = np.ones(30_000, dtype=np.int64)  # 480 KB of share pairs per server
            alice.share("x", half, 0)
            alice.share("y", half, 0)
            with pytest.raises(MpcError, match="identity's quota"):
                alice.share("z", half, 0)  # over alice's 1 MB
            # ... while bob stores and runs within his own quota
            bob.share("x", 2 * half, 0)
            bob.share("y", 3 * half, 0)
            out, _ = bob.run("mul", ["x", "y"])
            assert out["z"].shape == (30_000,) and int(out["z"][0]) == 6
            out, _ = alice.run("mul", ["x", "y"])  # alice still computes on what she holds
            assert int(out["z"].sum()) == 30_000
            name = qualify(public_bytes(keys["alice"]), "z")
            assert all(name not in s.store for s in servers)  # the refused store left nothing
    finally:
        for s in servers:
            s.stop()


def test_registry_entries_are_checked():
    good = {"name": "a", "public_key": "11" * 32}
    for bad in (
        [],
        [{"name": "a"}],
        [{**good, "public_key": "zz"}],
        [good, {**good, "name": "b"}],
        [good, {"name": "a", "public_key": "22" * 32}],
        [{**good, "quota_mb": -1}],
        [{**good, "extra": 1}],
    ):
        with pytest.raises(MpcError):
            parse_clients(bad, quota_bytes=1, max_connections=1)
    (ident,) = parse_clients([good], quota_bytes=5, max_connections=2).values()
    assert ident == Identity("a", bytes.fromhex("11" * 32), 5, 2)


def test_the_serve_command_needs_a_registry(tmp_path):
    from accord.cli.mpc import load_clients

    p = tmp_path / "cluster.json"
    p.write_text('{"servers": []}')
    with pytest.raises(MpcError, match="registers no clients"):
        load_clients(p, quota_bytes=1, max_connections=1)


def test_a_damaged_record_is_skipped_not_fatal(tmp_path):
    from accord.base import encoding
    from accord.mpc.sharestore import LEGACY_ID, Grant, StoredInput

    st = ShareStore(tmp_path, max_bytes=1 << 20)
    a = np.arange(4, dtype=np.uint64)
    sid = b"\x07" * 16
    st.put_input(StoredInput("o/x", b"\x01" * 32, 16, a, a + np.uint64(1), sid))
    st.put_input(StoredInput("o/y", b"\x01" * 32, 16, a, a))
    grant = Grant(
        "mul",
        b"\x04" * 32,
        b"\x02" * 32,
        b"\x03" * 32,
        (("x", "o/x", sid), ("y", "o/y", LEGACY_ID)),
    )
    st.put_grants("o/x", {grant})
    with st._env.begin(write=True) as txn:
        txn.put(b"o/y", b"\x00\x00\x00\x02garbage", db=st._inputs)
        # a grant of the old, unbound (program, receiver) form: dropped at load, counted
        txn.put(b"o/z", encoding.encode([["mul", b"\x02" * 32]]), db=st._grants)
        # and one that bound params and inputs but not the program's code: dropped too
        unbound_code = ["mul", b"\x02" * 32, b"\x03" * 32, [["x", "o/x", sid]]]
        txn.put(b"o/w", encoding.encode([unbound_code]), db=st._grants)
    st.close()
    st = ShareStore(tmp_path, max_bytes=1 << 20)
    inputs, grants = st.load()
    assert [i.name for i in inputs] == ["o/x"] and st.damaged == 1
    assert inputs[0].b.tolist() == [1, 2, 3, 4] and inputs[0].frac == 16
    assert inputs[0].store_id == sid
    assert grants == {"o/x": {grant}} and st.obsolete_grants == 2
    st.close()


def test_a_malformed_grant_or_reference_is_refused_and_changes_nothing(mesh):
    infos, servers = mesh
    with Cluster(infos) as c:
        c.share("x", np.array([1]), 0)
        key = c.public_key
        me = [{"owner": key, "name": "x"}]
        for frame in (
            pack({"t": "grant", "name": "x", "program": "mul", "receiver": b"short", "inputs": me}),
            pack({"t": "grant", "name": "x", "program": "no_such", "receiver": key, "inputs": me}),
            pack(
                {"t": "grant", "name": "missing", "program": "mul", "receiver": key, "inputs": me}
            ),
            pack({"t": "grant", "name": "x", "program": "mul", "receiver": key, "inputs": ["x"]}),
            pack({"t": "grant", "name": "x", "program": "mul", "receiver": key, "inputs": me * 2}),
            pack(
                {
                    "t": "grant",
                    "name": "x",
                    "program": "mul",
                    "receiver": key,
                    "inputs": [*me, {"owner": key, "name": "not-stored"}],
                }
            ),
            pack(
                {"t": "run", "s": "s1", "program": "mul", "inputs": [{"owner": b"x", "name": "x"}]}
            ),
            pack({"t": "run", "s": "s2", "program": "mul", "inputs": [7]}),
        ):
            c.channels[0].send(frame)
            header, _ = unpack(c.channels[0].recv())
            assert header["t"] == "error"
        assert all(not s.grants for s in servers)
