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
from accord.mpc.client import Cluster, store_frames
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


def _frames(name: str, triple, frac: int, sid: bytes) -> list:
    """Store requests both protocols accept: the random id the old servers took, and the
    salts and commitments from which the servers now derive the id themselves."""
    frames, _ = store_frames(name, triple, frac)
    out = []
    for f in frames:
        head, body = unpack(f)
        out.append(pack({**head, "id": sid}, bytes(body)))
    return out


def _send(c: Cluster, i: int, frame) -> dict:
    c.channels[i].send(frame)
    head = unpack(c.channels[i].recv())[0]
    assert head["t"] == "stored"
    return head


def _store_on(c: Cluster, reached: tuple[int, ...], name: str, values, frac: int = 0) -> None:
    """A client that loses one of its three store requests: only ``reached`` get theirs."""
    frames = _frames(name, split(np.asarray(values), frac), frac, os.urandom(32))
    for i in reached:
        _send(c, i, frames[i])


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


def test_a_retry_that_re_split_the_value_is_refused_not_computed_on(mesh):
    """A store request to server 2 timed out; the client retried it there alone, but built
    the retry from a fresh split of the same value, under the same random id. Every server
    then held a share pair of 7, yet the pairs do not fit together: the old servers, which
    compared only the client's id, computed 7 * 10 as 64-bit noise without any error. Now each
    server derives the id from its pair, so server 2's differs and the run is refused; a
    fresh store repairs it."""
    servers, c = mesh
    c.share("y", np.array([10]), 0)
    sid = os.urandom(32)
    first = _frames("x", split(np.array([7]), 0), 0, sid)
    retry = _frames("x", split(np.array([7]), 0), 0, sid)  # same value, same id, new split
    ids = [_send(c, 0, first[0])["id"], _send(c, 1, first[1])["id"], _send(c, 2, retry[2])["id"]]
    assert ids[0] == ids[1] != ids[2]  # the servers say so at once: the client can tell
    before = _stats(servers)
    with pytest.raises(MpcError, match="different versions of input 'x'"):
        c.run("mul", ["x", "y"])
    assert [a[1] - b[1] for b, a in zip(before, _stats(servers), strict=True)] == [1, 1, 1]
    c.share("x", np.array([7]), 0)
    assert c.run("mul", ["x", "y"])[0]["z"].tolist() == [70]


def test_a_pair_altered_on_one_server_is_caught_by_the_client_and_the_run(mesh, monkeypatch):
    """One server's pair does not fit the commitments the others got (altered on the way, or
    an owner's inconsistent shares): the client sees that server's id differ and says so,
    and the servers refuse the run rather than compute on it."""
    import accord.mpc.client as client

    servers, c = mesh
    c.share("y", np.array([3, 4]), 0)
    honest = client.store_frames

    def altered(name, triple, frac):
        frames, sid = honest(name, triple, frac)
        head, body = unpack(frames[1])
        bad = bytearray(body)
        bad[0] ^= 1  # one bit of x_1 on server 1; server 0 holds the true x_1
        frames[1] = pack(head, bytes(bad))
        return frames, sid

    monkeypatch.setattr(client, "store_frames", altered)
    with pytest.raises(MpcError, match="server 1 derived another store id for 'x'"):
        c.share("x", np.array([5, 6]), 0)
    with pytest.raises(MpcError, match="different versions of input 'x'"):
        c.run("mul", ["x", "y"])
    monkeypatch.setattr(client, "store_frames", honest)
    c.share("x", np.array([5, 6]), 0)  # stored again: repaired
    assert c.run("mul", ["x", "y"])[0]["z"].tolist() == [15, 24]


def test_a_share_damaged_on_disk_no_longer_gives_its_id_and_is_skipped(tmp_path):
    """The id is re-derived at load: a flipped bit in a stored pair is a damaged record
    (skipped, counted), not a silent wrong share the next run would compute on."""
    from accord.mpc.sharestore import ShareStore, StoredInput, derive_store_id

    triple = split(np.array([1, 2, 3]), 0)
    frames, sid = store_frames("x", triple, 0)
    head, _ = unpack(frames[1])
    salts, commit = head["salts"], head["commit"]
    a, b = triple[1]
    assert derive_store_id(1, 0, a, b, (salts[0], salts[1]), commit) == sid
    st = ShareStore(tmp_path, max_bytes=1 << 20)
    st.put_input(StoredInput("o/x", b"\x01" * 32, 0, a, b, sid, (salts[0], salts[1], commit), 1))
    st.put_input(StoredInput("o/y", b"\x01" * 32, 0, a, b, sid, (salts[0], salts[1], commit), 1))
    with st._env.begin(write=True) as txn:
        rec = bytearray(txn.get(b"o/y", db=st._inputs))
        rec[-1] ^= 0x80
        txn.put(b"o/y", bytes(rec), db=st._inputs)
    st.close()
    st = ShareStore(tmp_path, max_bytes=1 << 20)
    inputs, _ = st.load()
    assert [i.name for i in inputs] == ["o/x"] and st.damaged == 1
    assert inputs[0].store_id == sid and inputs[0].binding == (salts[0], salts[1], commit)
    st.close()
