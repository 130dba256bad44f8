"""MPC servers with probe programs that expose what role 0 opens: the session and truncation tests' helpers."""

from __future__ import annotations

import threading

import numpy as np

from accord.mpc.channel import public_bytes
from accord.mpc.engine import NONCE_WORDS, Party, SharedArray, session_key, trunc_pieces
from accord.mpc.prf import Prf
from accord.mpc.server import MpcServer, ServerInfo

F = 16


def _opened_by_role0(p: Party, x: SharedArray, y: SharedArray) -> tuple[int, np.ndarray | None]:
    """Truncate x*y and rebuild what the server in role 0 opens from its own view: its local
    product term, the two words it receives in the first round, minus the zero-sharing mask
    it knows (the protocol's round one; see ``Party.trunc``).

    Truncation goes in pieces (``trunc_pieces``): role 0 receives role 1's then role 2's
    words of each piece in turn, so its views alternate between the two senders."""
    t = x.a * (y.a + y.b) + x.b * y.a
    t0 = t.copy().ravel()
    op = p._op + 1
    seen = len(p.stats.views)
    p.stats.keep_views = True
    p.trunc(t, F)
    if p.role(op) != 0:
        return p.i, None
    views = p.stats.views[seen:]
    if len(views) != 2 * len(trunc_pieces(t0.size)):
        raise AssertionError(f"role 0 received {len(views)} messages")
    u1, u2 = np.concatenate(views[0::2]), np.concatenate(views[1::2])
    return p.i, t0 + u1 + u2 - p.next.words(op, 0, t0.size)


class FixedNonces(Party):
    """A party whose session nonces are fixed, so two runs with the same static keys draw the
    same masks (to compare two ways of running one protocol word for word)."""

    def start(self) -> None:
        if self._own is not None:
            return
        self.nonces = [bytes([j]) * (8 * NONCE_WORDS) for j in range(3)]
        self._own = Prf(session_key(self._static[0], self.session, self.nonces))
        self._next = Prf(session_key(self._static[1], self.session, self.nonces))


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
