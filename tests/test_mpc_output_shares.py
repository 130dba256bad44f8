"""Output shares are re-randomised before release: what receivers get is fresh."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.local import combine
from accord.mpc.server import qualify

from .support.mpc_sessions import _on_all, _start


def _echo(party, inputs):
    return {"out": inputs["x"]}


def test_released_shares_are_fresh_not_the_stored_ones():
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    owner = X25519PrivateKey.generate()
    infos, servers = _start(keys, [free_port() for _ in range(3)])
    for s in servers:
        s.programs["echo"] = _echo
    try:
        with Cluster(infos, key=owner) as c:
            c.share("x", np.arange(10), 0)
        name = qualify(public_bytes(owner), "x")
        stored = [s.store[name][:2] for s in servers]
        runs = []
        for k in range(2):
            outs = _on_all(servers, lambda s, k=k: s.run(f"echo-{k}", "echo", [("x", name)], {}))
            runs.append([(o[0]["out"].a, o[0]["out"].b) for o in outs])
        for pairs in runs:
            assert combine(pairs).tolist() == list(range(10))  # the value is the same
            for (a, _), (sa, _) in zip(pairs, stored, strict=True):
                assert not np.array_equal(a, sa)  # the words are not the stored ones
        assert not np.array_equal(runs[0][0][0], runs[1][0][0])  # nor the last run's
    finally:
        for s in servers:
            s.stop()
