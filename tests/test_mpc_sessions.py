"""Session keys no party can steer or repeat: a replayed session id (after 4,096 filler
sessions, after a restart of all servers) never gives a server two messages under one pad.

The attack of the finding: in truncation, the server in role 0 opens ``c = z + offset + r``
where ``r`` comes from the PRF of the two other servers. If a session's streams repeat, two
runs give role 0 ``c1 - c2 = z1 - z2``: the difference of two secret products, in the clear.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import MpcError
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.local import run_local
from accord.mpc.prf import fresh_key
from accord.mpc.server import qualify

from .support.mpc_sessions import F, _on_all, _opened_by_role0, _start, _z

X1, Y1 = np.array([3.0, -1.5, 1000.0, 7.25]), np.array([2.0, 4.0, -999.0, 0.5])
X2, Y2 = np.array([-8.0, 2.5, 12.0, 100.0]), np.array([1.0, 1.0, 11.0, -64.0])


def test_replayed_local_session_with_the_same_static_keys_uses_new_streams():
    keys = [fresh_key() for _ in range(3)]

    def prog(p, x, y):
        return _opened_by_role0(p, x, y)

    runs = []
    for x, y in ((X1, Y1), (X2, Y2)):  # two "restarts": new parties, same keys, same session
        out = run_local(prog, {"x": (x, F), "y": (y, F)}, keys=keys, session="replayed")
        (c,) = [c for _, c in out if c is not None]
        runs.append(c)
    leak = runs[0] - runs[1]
    assert not np.array_equal(leak, _z(X1, Y1) - _z(X2, Y2)), "role 0 learned z1 - z2"
    # the difference looks uniform, not like a small difference of products
    assert np.all((leak >> np.uint64(40)) != 0)


def _probe_run(servers, owner, names, session="the-same-id"):
    qualified = [(n, qualify(owner, m)) for n, m in names]
    outs = _on_all(servers, lambda s: s.run(session, "probe", qualified, {}))
    for o in outs:
        if isinstance(o, BaseException):
            raise o
    (c,) = [np.array(o[1]["c"], dtype=np.uint64) for o in outs if o[1]["c"]]
    return c


def test_replay_after_4096_fillers_and_after_a_restart_gives_new_streams():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    owner = X25519PrivateKey.generate()
    infos, servers = _start(keys, [free_port() for _ in range(3)])
    try:
        with Cluster(infos, key=owner) as c:
            for tag, (x, y) in (("1", (X1, Y1)), ("2", (X2, Y2))):
                c.share("x" + tag, x)
                c.share("y" + tag, y)
        me = public_bytes(owner)
        c1 = _probe_run(servers, me, [("x", "x1"), ("y", "y1")])
        # an immediate replay of the id is refused
        outs = _on_all(servers, lambda s: s.run("the-same-id", "filler", [], {}))
        assert all(isinstance(o, MpcError) and "was used" in str(o) for o in outs)

        def fill(s):
            for k in range(4096):
                s.run(f"filler-{k}", "filler", [], {})

        assert not any(isinstance(o, BaseException) for o in _on_all(servers, fill))
        c2 = _probe_run(servers, me, [("x", "x2"), ("y", "y2")])
        want = _z(X1, Y1) - _z(X2, Y2)
        assert not np.array_equal(c1 - c2, want), "role 0 learned z1 - z2 after 4096 fillers"
    finally:
        for s in servers:
            s.stop()
    # restart all three servers with the same static keys; the stored shares are gone, so the
    # owner stores again, and the requester replays the first session id
    infos, servers = _start(keys, [free_port() for _ in range(3)])
    try:
        with Cluster(infos, key=owner) as c:
            c.share("x2", X2)
            c.share("y2", Y2)
        c3 = _probe_run(servers, me, [("x", "x2"), ("y", "y2")])
        assert not np.array_equal(c1 - c3, _z(X1, Y1) - _z(X2, Y2)), "role 0 learned z1 - z2"
        assert np.all(((c1 - c3) >> np.uint64(40)) != 0)
    finally:
        for s in servers:
            s.stop()


def test_nonces_differ_per_session_and_bind_all_three_servers():
    def prog(p):
        return p.nonces

    a = run_local(prog, keys=[bytes(16)] * 3, session="s")
    b = run_local(prog, keys=[bytes(16)] * 3, session="s")
    assert a[0] == a[1] == a[2] and len(a[0]) == 3  # every server holds the same three nonces
    assert len({n for n in a[0] + b[0]}) == 6  # and none repeats
