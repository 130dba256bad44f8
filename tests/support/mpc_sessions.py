"""MPC servers with probe programs that expose what role 0 opens: the session and truncation tests' helpers."""

from __future__ import annotations

import threading

import numpy as np

from accord.mpc.channel import public_bytes
from accord.mpc.engine import Party, SharedArray
from accord.mpc.server import MpcServer, ServerInfo

F = 16


def _opened_by_role0(p: Party, x: SharedArray, y: SharedArray) -> tuple[int, np.ndarray | None]:
    """Truncate x*y and rebuild what the server in role 0 opens from its own view: its local
    product term, the two words it receives in the first round, minus the zero-sharing mask
    it knows (the protocol's round one; see ``Party.trunc``)."""
    t = x.a * (y.a + y.b) + x.b * y.a
    t0 = t.copy()
    op = p._op + 1
    seen = len(p.stats.views)
    p.stats.keep_views = True
    p.trunc(t, F)
    if p.role(op) != 0:
        return p.i, None
    u1, u2 = p.stats.views[seen], p.stats.views[seen + 1]
    return p.i, t0 + u1 + u2 - p.next.words(op, 0, t0.size)


def _probe(party, inputs):
    _, c = _opened_by_role0(party, inputs["x"], inputs["y"])
    return {"c": [] if c is None else [int(v) for v in c]}


def _filler(party, inputs):
    return {}


def _z(x, y):
    enc = lambda v: np.rint(np.asarray(v) * 2**F).astype(np.int64).view(np.uint64)  # noqa: E731
    return enc(x) * enc(y)


def _start(keys, ports):
    infos = [ServerInfo("127.0.0.1", ports[i], public_bytes(keys[i])) for i in range(3)]
    servers = [
        MpcServer(i, infos, keys[i], timeout=5, programs={"probe": _probe, "filler": _filler})
        for i in range(3)
    ]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return infos, servers


def _on_all(servers, fn):
    out: list = [None, None, None]

    def go(i):
        try:
            out[i] = fn(servers[i])
        except BaseException as e:  # noqa: BLE001 - checked by the caller
            out[i] = e

    ts = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out
