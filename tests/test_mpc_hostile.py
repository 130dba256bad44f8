"""Hostile inputs to the oracle and the servers: each fails one request with a clear error,
is counted, changes nothing, and the oracle keeps serving the next request."""

from __future__ import annotations

import socket
import threading

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.types import Event
from accord.mpc.client import Cluster
from accord.mpc.oracle import OracleRequest, requests_from
from accord.mpc.server import pack, unpack

from .support.oracle import setup  # noqa: F401 - the oracle fixture (three servers, a chain)


def _answer_all(workers, req):
    """Run one request on the three workers in step; any exception a worker raises is kept."""
    out: list = [None, None, None]

    def go(i):
        try:
            out[i] = workers[i].answer(req)
        except BaseException as e:  # noqa: BLE001 - the test reports it
            out[i] = e

    ts = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def _req(rid: int, shares, params, program="anti_stacking"):
    return OracleRequest(
        bytes([rid]) * 32,
        program,
        shares,
        params,
        [X25519PrivateKey.generate().public_key().public_bytes_raw()],
        100,
    )


def test_a_malformed_lender_share_fails_one_request_not_the_oracle(setup):  # noqa: F811
    g, chain, servers, workers, infos = setup
    lender = X25519PrivateKey.generate()
    good_name = bad_name = ""
    with Cluster(infos, key=lender) as c:
        c.share("good", np.array(5), 0)
        c.share("pair", np.array([1, 2]), 0)  # shape (2,): not one balance
        c.share("real", np.array(1.5), 16)  # fixed point, not an integer balance
        c.share("matrix", np.zeros((3, 4), dtype=np.int64), 0)
        good_name, bad_name = c.qualified("good"), c.qualified("pair")
    hostile = [
        _req(1, [bad_name], {"limit": 10}),
        _req(2, [c.qualified("real")], {"limit": 10}),
        _req(3, [c.qualified("matrix"), good_name], {"limit": 10}),
        _req(4, [good_name], {"limit": "ten"}),
        _req(5, [good_name], {"limit": 10, "surprise": 1}),
        _req(6, [good_name], {}),
        _req(7, [good_name, good_name], {"limit": 10}),
        _req(8, ["no/such/input"], {"limit": 10}),
    ]
    for req in hostile:
        txs = _answer_all(workers, req)
        for tx in txs:
            assert not isinstance(tx, BaseException), f"request {req.id[0]}: {tx!r}"
            assert tx.args["ok"] is False and tx.args["error"].startswith("mpc_error"), tx.args
    assert all(w.failures == len(hostile) for w in workers)
    # nothing changed: the servers still hold the shares and answer a good request
    txs = _answer_all(workers, _req(9, [good_name], {"limit": 10}))
    assert all(tx.args["ok"] is True for tx in txs)


def test_malformed_request_events_are_skipped_and_counted():
    good = {
        "id": b"\x01" * 32,
        "program": "anti_stacking",
        "shares": ["a"],
        "params": {},
        "reveal_to": [b"\x02" * 32],
        "deadline": 5,
    }
    bad_values = [
        {"id": "not bytes"},
        {"shares": "abc"},
        {"shares": [1, 2]},
        {"params": ["x"]},
        {"reveal_to": [b"short"]},
        {"deadline": "soon"},
        {"program": 7},
        {"id": b"\x01" * 5},
    ]
    events = [Event("mpc_oracle", "OracleRequest", {**good, **b}) for b in bad_values]
    events.append(Event("mpc_oracle", "OracleRequest", {"id": b"\x01" * 32}))  # fields missing
    events.append(Event("mpc_oracle", "OracleRequest", good))
    reqs = requests_from(events)
    assert [r.id for r in reqs] == [good["id"]]


def _raw(c: Cluster, frame) -> dict:
    c.channels[0].send(frame)
    header, _ = unpack(c.channels[0].recv())
    return header


def test_hostile_store_and_run_frames_get_errors_and_change_nothing(setup):  # noqa: F811
    g, chain, servers, workers, infos = setup
    with Cluster(infos) as c:
        c.share("x", np.array([1, 2, 3]), 0)
        c.share("y", np.array([1, 2, 3]), 0)
        before = dict(servers[0].store)
        bad = [
            pack({"t": "store", "name": "y", "shape": [2**40, 2**40], "frac": 0}, b""),  # overflow
            pack({"t": "store", "name": "y", "shape": ["a"], "frac": 0}, b""),
            pack({"t": "store", "name": "y", "shape": [True], "frac": 0}, b"\x00" * 16),
            pack({"t": "store", "name": "y", "shape": [-1], "frac": 0}, b""),
            pack({"t": "store", "name": "y", "shape": [1] * 40, "frac": 0}, b"\x00" * 16),
            pack({"t": "store", "name": "y", "shape": [3], "frac": 0}, b"\x00" * 47),
            pack({"t": "store", "name": "", "shape": [1], "frac": 0}, b"\x00" * 16),
            pack({"t": "store", "name": 5, "shape": [1], "frac": 0}, b"\x00" * 16),
            pack({"t": "run", "s": 12, "program": "mul", "inputs": ["x", "x"], "params": {}}),
            pack({"t": "run", "s": "q", "program": "mul", "inputs": "xx", "params": {}}),
            pack({"t": "run", "s": "q", "program": "mul", "inputs": [1, 2], "params": {}}),
            pack(
                {"t": "run", "s": "q", "program": "mul", "inputs": ["x", "x"], "params": {"a": 1}}
            ),
            pack({"t": "delete", "name": ["x"]}),
            b"\xff\xff\xff\xff garbage",
            b"\x00\x00\x00\x03abc",
            b"",
        ]
        for frame in bad:
            h = _raw(c, frame)
            assert h["t"] == "error" and h["code"] in (
                "mpc_error",
                "decode_error",
                "non_canonical",
                "trailing_bytes",
                "too_large",
            ), h
        assert servers[0].store.keys() == before.keys()
        assert servers[0].bad_requests >= len(bad)
        out, _ = c.run("mul", ["x", "y"])  # the connection and the cluster still work
        assert out["z"].tolist() == [1, 4, 9]


def test_garbage_connections_do_not_kill_the_server(setup):  # noqa: F811
    g, chain, servers, workers, infos = setup
    info = infos[1]
    for junk in (b"", b"Z", b"S\x07", b"S\x02" + bytes(64), b"C" + bytes(64), b"C" + b"\xff" * 200):
        with socket.create_connection((info.host, info.port), timeout=5) as s:
            try:  # the server may hang up at any point: that is the point
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
            except OSError:
                pass
    with Cluster(infos) as c:
        c.share("x", np.array([2]), 0)
        c.share("y", np.array([2]), 0)
        out, _ = c.run("mul", ["x", "y"])
        assert out["z"].tolist() == [4]
