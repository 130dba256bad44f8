"""A lying MPC server against the anti-stacking oracle: the loans contract sees a failure, never
a wrong answer, the abort is counted, and the oracle goes on serving the next application."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import MpcError
from accord.mpc.malicious import MaliciousParty
from accord.mpc.oracle import open_result
from accord.mpc.server import _SessionTransport

from .support.mpc_liars import Liar, _party_class
from .support.oracle import _apply, _next_epoch, _record_balances, run_workers, setup  # noqa: F401


def _make_liar(server, place: str) -> None:
    cls = _party_class(server.i, Liar, place)

    def party_for(program: str, session: str) -> MaliciousParty:
        assert program in server.malicious
        return cls(
            server.i, server.pair_keys, _SessionTransport(server, session), server.fp, session
        )

    server.party_for = party_for


@pytest.mark.parametrize("place", ["reshare", "and", "output"])
def test_a_lying_server_makes_the_application_fail_and_the_oracle_serves_on(setup, place, caplog):  # noqa: F811
    g, chain, servers, workers, infos = setup
    assert all("anti_stacking" in s.malicious for s in servers)  # on by default
    borrower = AccountKey.from_name("borrower")
    lenders = _record_balances(chain, infos, borrower, [40_000, 25_000, 10_000])
    bkey = X25519PrivateKey.generate()
    honest_party_for = servers[1].party_for
    _make_liar(servers[1], place)
    _next_epoch(chain)
    with caplog.at_level(logging.WARNING, logger="accord.mpc"):
        receipts, rid = _apply(chain, borrower, lenders[0], 900_000, bkey, 0)
        answers = run_workers(workers, receipts)
    honest = [tx for tx in answers if tx.sender != workers[1].account.address]
    assert len(honest) == 2 and all(tx.args["ok"] is False for tx in honest)
    assert any("mpc_abort" in tx.args["error"] for tx in honest)
    assert servers[0].aborts + servers[2].aborts >= 1
    assert workers[0].aborts + workers[2].aborts >= 1
    assert "check failed" in caplog.text
    r2 = chain.commit(answers)
    assert r2[0].ok
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    assert app["status"] == "failed" and app["outputs"] is None
    # the same servers answer the next application (server 1 honest again)
    servers[1].party_for = honest_party_for
    _next_epoch(chain)
    receipts, rid = _apply(chain, borrower, lenders[0], 900_000, bkey, 1)
    r3 = chain.commit(run_workers(workers, receipts))
    assert all(r.ok for r in r3), [r.error for r in r3]
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    assert app["status"] == "answered"
    assert int(open_result(bkey, rid, app["outputs"])["ok"]) == 1


def test_a_wrong_output_share_is_caught_by_the_receiver(setup):  # noqa: F811
    """A server that computes honestly but seals a wrong share of the answer: its pair
    disagrees with the two honest servers' (every share word is held by two of them)."""
    g, chain, servers, workers, infos = setup
    borrower = AccountKey.from_name("borrower")
    lenders = _record_balances(chain, infos, borrower, [40_000, 25_000, 10_000])
    bkey = X25519PrivateKey.generate()
    honest_run = servers[2].run

    def lying_run(*a, **kw):
        outputs, public = honest_run(*a, **kw)
        ok = outputs["ok"]
        ok.a = ok.a + np.uint64(1)  # 1 - answer would need the other share too: any change shows
        return outputs, public

    servers[2].run = lying_run
    _next_epoch(chain)
    receipts, rid = _apply(chain, borrower, lenders[0], 900_000, bkey, 0)
    r2 = chain.commit(run_workers(workers, receipts))
    assert all(r.ok for r in r2)
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    with pytest.raises(MpcError, match="do not agree"):
        open_result(bkey, rid, app["outputs"])
