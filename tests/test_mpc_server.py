"""Three MPC server processes on loopback: programs, dead servers, channel authentication."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import ChannelAuthError, MpcError, PeerGone
from accord.mpc.channel import Channel, public_bytes
from accord.mpc.client import share
from accord.mpc.cluster import LocalCluster
from accord.mpc.local import run_local
from accord.mpc.ml import load_breast_cancer


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(timeout=5, clients=("default", "other")) as cl:
        c = cl.connect()
        yield cl, c
        c.close()


def test_programs_over_tcp(cluster):
    _, c = cluster
    x, y = np.array([1.5, -2.0, 3.0]), np.array([2.0, -3.0, 3.0])
    c.share("x", x)
    c.share("y", y)
    name = share(x, c)  # the data owner's one-liner: a fresh name for the input
    assert name.startswith("input/")
    out, _ = c.run("mul", ["x", "y"])
    assert np.abs(out["z"] - x * y).max() < 1e-4
    out, _ = c.run("compare", ["x", "y"])
    assert out["lt"].tolist() == [1, 0, 0]


def test_anti_stacking_answers_only_the_bit(cluster):
    _, c = cluster
    for i, s in enumerate([120_00, 300_00, 55_00]):
        c.share(f"bal{i}", np.array(s), 0)
    out, public = c.run("anti_stacking", ["bal0", "bal1", "bal2"], {"limit": 500_00})
    assert out == {"ok": 1} or out["ok"].tolist() == 1
    assert public == {}
    out, _ = c.run("anti_stacking", ["bal0", "bal1", "bal2"], {"limit": 475_00})
    assert int(out["ok"]) == 0


def test_bad_requests_get_clear_errors(cluster):
    _, c = cluster
    with pytest.raises(MpcError, match="unknown program"):
        c.run("no_such_program", [])
    with pytest.raises(MpcError, match="no input named"):
        c.run("mul", ["x", "missing"])
    # the cluster still works afterwards
    out, _ = c.run("mul", ["x", "y"])
    assert out["z"].shape == (3,)


def test_wrong_server_key_is_refused(cluster):
    cl, _ = cluster
    info = cl.infos[0]
    sock = socket.create_connection((info.host, info.port))
    sock.sendall(b"C")
    impostor = public_bytes(X25519PrivateKey.generate())
    with pytest.raises(ChannelAuthError):
        Channel.handshake(sock, X25519PrivateKey.generate(), impostor, True, prologue=b"C")
    sock.close()


def test_tampered_frame_is_rejected():
    a, b = socket.socketpair()
    ka, kb = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    res = {}
    t = threading.Thread(
        target=lambda: res.update(b=Channel.handshake(b, kb, public_bytes(ka), False)[0])
    )
    t.start()
    ca, _ = Channel.handshake(a, ka, public_bytes(kb), True)
    t.join()
    cb = res["b"]
    ca.send(b"share words")
    assert cb.recv() == b"share words"
    # flip one ciphertext bit on the wire
    ct = ca._tx.encrypt(b"\x00" * 4 + (1).to_bytes(8, "big"), b"more", None)
    ca._tx_n += 1
    bad = bytearray(ct)
    bad[0] ^= 1
    a.sendall(len(bad).to_bytes(4, "big") + bytes(bad))
    with pytest.raises(ChannelAuthError):
        cb.recv()
    ca.close()
    cb.close()


def test_server_dying_mid_computation_fails_cleanly():
    with LocalCluster(timeout=5) as cl:
        c = cl.connect()
        x, y = load_breast_cancer()
        c.share("X0", x)
        c.share("y0", y.astype(float))
        err: dict[str, BaseException] = {}
        result: dict[str, object] = {}

        def run() -> None:
            try:  # thousands of epochs: still running when server 2 is killed
                result["r"] = c.run("lr_train", ["X0", "y0"], {"epochs": 5000})
            except BaseException as e:  # noqa: BLE001
                err["e"] = e

        th = threading.Thread(target=run)
        th.start()
        time.sleep(1.0)
        cl.kill(2)
        th.join(60)
        assert not th.is_alive()
        assert "r" not in result  # no partial result
        assert isinstance(err.get("e"), PeerGone | MpcError)
        assert (
            "server 2" in str(err["e"]) or "gone" in str(err["e"]) or "disconnect" in str(err["e"])
        )
        c.close()


def test_in_process_crash_fails_the_other_servers():
    def prog(p, x):
        return (x * x < x).reveal()

    with pytest.raises(PeerGone):
        run_local(prog, {"x": (np.arange(10.0), 16)}, fail={1: 2}, timeout=5)


def test_clients_cannot_read_or_overwrite_each_others_inputs(cluster):
    cl, owner = cluster
    owner.share("private_balance", np.array(1234), 0)
    with cl.connect("other") as other:
        # names are namespaced by the storing key: the other client reaches only its own
        with pytest.raises(MpcError, match="no input named"):
            other.run("anti_stacking", ["private_balance"], {"limit": 2000})
        other.share("private_balance", np.array(5000), 0)  # its own input: no squatting
        out, _ = other.run("anti_stacking", ["private_balance"], {"limit": 2000})
        assert int(out["ok"]) == 0
        with pytest.raises(MpcError, match="no input named"):
            other.run("anti_stacking", [owner.qualified("private_balance")], {"limit": 2000})
    out, _ = owner.run("anti_stacking", ["private_balance"], {"limit": 2000})
    assert int(out["ok"]) == 1


def test_malformed_requests_are_refused_and_change_nothing(cluster):
    cl, c = cluster
    from accord.mpc.server import pack, unpack

    bad = [
        pack({"t": "store", "name": "z", "shape": [3], "frac": 0}, b"\x00" * 8),  # short payload
        pack({"t": "store", "name": "z", "shape": [1], "frac": 99}, b"\x00" * 16),  # bad frac
        pack({"t": "run", "s": "abc", "program": "mul", "inputs": ["z"], "params": []}),
        pack({"t": "nonsense"}),
    ]
    for frame in bad:
        c.channels[0].send(frame)
        header, _ = unpack(c.channels[0].recv())
        assert header["t"] == "error" and header["code"] == "mpc_error"
    with pytest.raises(MpcError, match="no input named"):
        c.run("mul", ["z", "z"])


def test_stored_shares_are_bounded_per_client_and_freed_by_delete():
    """A client cannot fill a server's memory: past its quota a store is refused (and changes
    nothing); replacing an input reuses its bytes; delete gives them back."""
    with (
        LocalCluster(timeout=5, max_client_mb=1, clients=("default", "other")) as cl,
        cl.connect() as c,
    ):
        half = np.ones(30_000, dtype=np.int64)  # 30,000 elements x 2 shares x 8 B = 480 KB
        c.share("x", half, 0)
        c.share("x", half, 0)  # replacing: the old bytes are freed first
        c.share("y", half, 0)
        with pytest.raises(MpcError, match="store full"):
            c.share("z", half, 0)
        with pytest.raises(MpcError, match="no input named"):
            c.delete("z")  # the refused store left nothing behind
        with cl.connect("other") as other:  # the quota is per identity
            other.share("w", np.array([2.0]), 16)
            with pytest.raises(MpcError, match="no input named"):
                other.delete("x")
        c.delete("y")
        c.share("z", half, 0)
        with pytest.raises(MpcError, match="no input named"):
            c.run("mul", ["x", "y"])
        c.delete("z")
        c.share("y", 3 * half, 0)
        out, _ = c.run("mul", ["x", "y"])
        assert out["z"].shape == (30_000,) and int(out["z"][0]) == 3
