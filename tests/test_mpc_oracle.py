"""The oracle end to end against the contract runtime: request in a committed block ->
servers compute -> answer transactions signed by the servers -> the contract's callback.

Anti-stacking loans: three lenders share a borrower's balances; only the borrower and the
lender can open the answer bit; a dead server ends the request without any result.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import MpcError, ProofError
from accord.contracts.base import OracleUnavailable
from accord.contracts.runtime import Runtime
from accord.mpc.channel import public_bytes
from accord.mpc.oracle import open_result, requests_in, seal, unseal

from .support import oracle
from .support.oracle import (
    CONTRACTS,
    LENDERS,
    MAX_EXPOSURE,
    Chain,
    _apply,
    _next_epoch,
    _record_balances,
    _tx,
    run_workers,
)

setup = oracle.setup  # the fixture: three MPC servers, a chain, the oracle workers


def test_anti_stacking_end_to_end(setup):
    g, chain, servers, workers, infos = setup
    borrower = AccountKey.from_name("borrower")
    lenders = _record_balances(chain, infos, borrower, [40_000, 25_000, 10_000])
    bkey, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    lkey = LENDERS[0][2]  # the lender's registered receiver key
    # 75,000 + amount < 1,000,000 for the first amount, not for the second
    for nonce, (amount, expect) in enumerate(((900_000, 1), (925_000, 0))):
        _next_epoch(chain)  # one application per epoch
        receipts, rid = _apply(chain, borrower, lenders[0], amount, bkey, nonce)
        # the committed block holds the request, and no secret: only share names and keys
        (req,) = requests_in(receipts)
        assert req.shares and all(s.split("/")[1] == "loan" for s in req.shares)
        assert req.params == {"limit": MAX_EXPOSURE - amount}
        answers = run_workers(workers, receipts)
        assert len(answers) == 3 and {tx.sender for tx in answers} == {
            w.account.address for w in workers
        }
        r2 = chain.commit(answers)
        assert all(r.ok for r in r2), [r.error for r in r2]
        app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
        assert app["status"] == "answered"
        # borrower and lender open the bit; a third key cannot
        for k in (bkey, lkey):
            assert int(open_result(k, rid, app["outputs"])["ok"]) == expect
        with pytest.raises(MpcError):
            open_result(other, rid, app["outputs"])
        # nothing on the chain state decodes to the balances or their sum
        blob = b"".join(chain.state.data.values())
        for secret in (40_000, 25_000, 10_000, 75_000):
            assert encoding.encode(secret) not in blob or secret < 128


def test_dead_server_times_out_cleanly_and_delivers_nothing(setup):
    g, chain, servers, workers, infos = setup
    borrower = AccountKey.from_name("borrower")
    lenders = _record_balances(chain, infos, borrower, [1, 2])
    receipts, rid = _apply(chain, borrower, lenders[1], 5_000, X25519PrivateKey.generate())
    servers[2].stop()  # server 2 dies before computing
    answers = run_workers(workers, receipts, alive=(0, 1))
    assert len(answers) == 2 and all(tx.args["ok"] is False for tx in answers)
    assert all("mpc_peer_gone" in tx.args["error"] for tx in answers)
    r2 = chain.commit(answers[:1])  # the first failure ends the request
    assert r2[0].ok
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    assert app["status"] == "failed" and app["outputs"] is None
    # a late answer for the ended request is refused
    r3 = chain.commit(answers[1:])
    assert not r3[0].ok and "no pending" in r3[0].error


def test_silent_request_expires_after_deadline(setup):
    g, chain, servers, workers, infos = setup
    borrower = AccountKey.from_name("borrower")
    lenders = _record_balances(chain, infos, borrower, [5])
    receipts, rid = _apply(chain, borrower, lenders[0], 5_000, X25519PrivateKey.generate())
    anyone = AccountKey.from_name("anyone")
    early = chain.commit([_tx(anyone, 0, "mpc_oracle", "expire", request_id=rid)])
    assert not early[0].ok and "not timed out" in early[0].error
    for _ in range(3):
        chain.commit([])
    late = chain.commit([_tx(anyone, 1, "mpc_oracle", "expire", request_id=rid)])
    assert late[0].ok
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    assert app["status"] == "failed" and app["error"] == "timed out" and app["outputs"] is None


def test_answers_from_strangers_and_bad_requests_are_refused(setup):
    g, chain, servers, workers, infos = setup
    borrower = AccountKey.from_name("borrower")
    lenders = _record_balances(chain, infos, borrower, [5])
    receipts, rid = _apply(chain, borrower, lenders[0], 5_000, X25519PrivateKey.generate())
    stranger = AccountKey.from_name("stranger")
    r = chain.commit(
        [_tx(stranger, 0, "mpc_oracle", "answer", request_id=rid, ok=True, outputs={}, error="")]
    )
    assert not r[0].ok and "only the MPC servers" in r[0].error
    # a server answering without a share for every receiver is refused
    srv = workers[0].account
    r = chain.commit(
        [_tx(srv, 0, "mpc_oracle", "answer", request_id=rid, ok=True, outputs={}, error="")]
    )
    assert not r[0].ok and "every receiver" in r[0].error
    # an account cannot file oracle requests directly
    r = chain.commit(
        [
            _tx(
                stranger,
                1,
                "mpc_oracle",
                "file",
                program="anti_stacking",
                shares=[],
                params={},
                reveal_to=[bytes(32)],
                callback="x",
            )
        ]
    )
    assert not r[0].ok and "filed by contracts" in r[0].error
    # an account that is not a registered lender cannot record
    r = chain.commit([_tx(stranger, 2, "mpc_loans", "record", borrower=borrower.address)])
    assert not r[0].ok and "registered lenders" in r[0].error


def test_runtime_without_oracle_refuses_requests(setup):
    g, chain, *_ = setup
    rt = Runtime(g, CONTRACTS)  # no oracle hook
    chain2 = Chain(g, rt)
    borrower = AccountKey.from_name("borrower")
    r = chain2.commit(
        [
            _tx(
                borrower,
                0,
                "mpc_loans",
                "apply",
                lender=LENDERS[0][0].address,
                amount=5_000,
                borrower_key=bytes(32),
            )
        ]
    )
    assert not r[0].ok  # no recorded balances first
    assert OracleUnavailable.code == "no_oracle"


def test_sealed_shares_are_bound_to_key_and_request():
    k = X25519PrivateKey.generate()
    blob = seal(public_bytes(k), b"share words", b"aad-1")
    assert unseal(k, blob, b"aad-1") == b"share words"
    with pytest.raises(ProofError):
        unseal(k, blob, b"aad-2")
    with pytest.raises(ProofError):
        unseal(X25519PrivateKey.generate(), blob, b"aad-1")
    bad = bytearray(blob)
    bad[-1] ^= 1
    with pytest.raises(ProofError):
        unseal(k, bytes(bad), b"aad-1")
