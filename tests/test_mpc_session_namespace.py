"""Session ids are namespaced: no served client can burn, squat or replay into a session id
that another client or the oracle will use.

The attack (found in review): an oracle run's session id was the request id's hex, which
anyone who sees the ``apply`` transaction in the mempool can compute; a client ``run`` with
that id and an unknown program marked it as used on every server, so the borrower's
application failed. Client runs now live in a namespace derived from the authenticated key.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.server import client_session, oracle_session, pack, unpack

from .support import oracle
from .support.oracle import _next_epoch, _record_balances, _tx, run_workers

setup = oracle.setup

BORROWER = AccountKey.from_name("borrower")


def _burn(c: Cluster, session: str) -> list[dict]:
    """A run that fails on every server (unknown program) under a chosen session id."""
    frame = pack(
        {"t": "run", "s": session, "program": "no-such-program", "inputs": [], "params": {}}
    )
    replies = []
    for ch in c.channels:
        ch.send(frame)
        replies.append(unpack(ch.recv())[0])
    return replies


def test_a_client_cannot_squat_an_oracle_requests_session(setup):
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000])
    _next_epoch(chain)
    bkey = X25519PrivateKey.generate()
    tx = _tx(
        BORROWER,
        0,
        "mpc_loans",
        "apply",
        lender=lenders[0].address,
        amount=5_000,
        borrower_key=public_bytes(bkey),
    )
    # the attacker sees tx in the mempool and predicts the request id (tx hash, oracle count)
    cands = [encoding.sha256(encoding.encode(["accord/mpc/request", tx.hash, k])) for k in range(8)]
    attacker = X25519PrivateKey.generate()  # any served identity
    with Cluster(infos, key=attacker) as c:
        for rid in cands:
            # the old id, the oracle's new one, and the attacker's own derived form of it
            for s in (
                rid.hex(),
                oracle_session(rid),
                client_session(public_bytes(attacker), rid.hex()),
            ):
                assert all(r["t"] == "error" for r in _burn(c, s))
    receipts = chain.commit([tx])
    assert receipts[0].ok, receipts[0].error
    rid = receipts[0].result
    assert rid in cands
    answers = run_workers(workers, receipts)
    assert all(r.ok for r in chain.commit(answers))
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    assert app["status"] == "answered", app["error"]


def test_a_client_cannot_burn_another_clients_session(setup):
    _, _, _, _, infos = setup
    mallory, alice = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    with Cluster(infos, key=mallory) as m:
        assert all(r["t"] == "error" for r in _burn(m, "alice-run-1"))
    with Cluster(infos, key=alice) as a:
        frame = pack(
            {
                "t": "run",
                "s": "alice-run-1",
                "program": "bench",
                "inputs": [],
                "params": {"n": 1, "m": 1},
            }
        )
        replies = a._all([frame] * 3)
        assert all(h["t"] == "result" for h, _ in replies), replies
        # the id is now used in alice's own namespace: her replay is refused
        replies = [None, None, None]
        for i, ch in enumerate(a.channels):
            ch.send(frame)
            replies[i] = unpack(ch.recv())[0]
        assert all(r["t"] == "error" and "was used" in r["message"] for r in replies), replies
