"""The oracle end to end against the contract runtime: request in a committed block ->
servers compute -> answer transactions signed by the servers -> the contract's callback.

Anti-stacking loans: three lenders share a borrower's balances; only the borrower and the
lender can open the answer bit; a dead server ends the request without any result.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord import encoding
from accord.contracts.base import Contract, OracleUnavailable
from accord.contracts.memory import MemoryState
from accord.contracts.mpc_loans import MpcLoans
from accord.contracts.mpc_oracle import MpcOracle
from accord.contracts.runtime import Runtime, code_hash
from accord.crypto.ed25519 import AccountKey
from accord.errors import MpcError, ProofError
from accord.genesis import ContractEntry
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.oracle import OracleHook, OracleWorker, open_result, requests_in, seal, unseal
from accord.mpc.programs import code_hash as program_hash
from accord.mpc.server import MpcServer, ServerInfo
from accord.types import Tx

from .support.genesis import make_genesis

CONTRACTS: dict[str, type[Contract]] = {"mpc_oracle": MpcOracle, "mpc_loans": MpcLoans}


MemState = MemoryState

# Registered lenders: account, MPC client key (the servers' namespace), receiver key.
LENDERS = [(AccountKey.from_name(f"lender-{i}"), X25519PrivateKey.generate(), X25519PrivateKey.generate())
           for i in range(4)]
MAX_EXPOSURE = 1_000_000


class Chain:
    """Just enough of a chain: execute blocks on in-memory state, hand receipts to watchers."""

    def __init__(self, genesis, runtime) -> None:
        self.rt = runtime
        self.state = MemState()
        self.state.apply(runtime.genesis_writes())
        self.height = 0
        self.genesis = genesis

    def commit(self, txs):
        self.height += 1
        res = self.rt.execute_block(self.state, txs, height=self.height, time_ms=self.height * 1000)
        self.state.apply(res.writes)
        return res.receipts


@pytest.fixture
def setup():
    server_accounts = [AccountKey.from_name(f"mpc-server-{i}") for i in range(3)]
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    mpc_cfg = {
        "servers": [{"address": a.address.hex(), "channel_key": public_bytes(k).hex(),
                     "host": s.host, "port": s.port}
                    for a, k, s in zip(server_accounts, keys, infos, strict=True)],
        "programs": {"anti_stacking": program_hash("anti_stacking")},
        "timeout_blocks": 3,
        "loans": {
            "lenders": [{"address": acct.address.hex(), "mpc_key": public_bytes(mk).hex(),
                         "receiver_key": public_bytes(rk).hex()} for acct, mk, rk in LENDERS],
            "max_exposure": 1_000_000, "epoch_blocks": 10, "applications_per_epoch": 1,
            "admin": AccountKey.from_name("consortium-admin").address.hex(),
        },
    }
    g = make_genesis(4)
    g = g.model_copy(update={
        "contracts": [ContractEntry(name=n, code_hash=code_hash(c).hex()) for n, c in CONTRACTS.items()],
        "mpc": mpc_cfg,
    })
    servers = [MpcServer(i, infos, keys[i], timeout=3) for i in range(3)]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    workers = [OracleWorker(servers[i], server_accounts[i], g) for i in range(3)]
    chain = Chain(g, Runtime(g, CONTRACTS, oracle=OracleHook()))
    yield g, chain, servers, workers, infos
    for s in servers:
        s.stop()


def run_workers(workers, receipts, alive=(0, 1, 2)):
    out: list = [None, None, None]

    def go(i):
        out[i] = workers[i].on_block(receipts)

    ts = [threading.Thread(target=go, args=(i,)) for i in alive]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return [tx for i in alive for tx in out[i]]


def _tx(key, nonce, contract, method, **args):
    return Tx.create(key, chain_id="accord-test", contract=contract, method=method, args=args, nonce=nonce)


def _apply(chain, borrower, lender, amount, bkey, nonce=0):
    receipts = chain.commit([_tx(borrower, nonce, "mpc_loans", "apply", lender=lender.address,
                                 amount=amount, borrower_key=public_bytes(bkey))])
    assert receipts[0].ok, receipts[0].error
    return receipts, receipts[0].result


def _share_as(lender_key, infos, borrower, value):
    """On a lender's machine: split its balance of ``borrower`` and store the shares."""
    with Cluster(infos, key=lender_key) as c:
        c.share(f"loan/{borrower.address.hex()}", np.array(value), 0)


def _record_balances(chain, infos, borrower, balances, nonce=0):
    lenders = []
    for (acct, mkey, _), s in zip(LENDERS, balances, strict=False):
        _share_as(mkey, infos, borrower, s)  # only shares leave the lender
        lenders.append(acct)
    receipts = chain.commit([_tx(a, nonce, "mpc_loans", "record", borrower=borrower.address)
                             for a in lenders])
    assert all(r.ok for r in receipts), [r.error for r in receipts]
    return lenders


def _next_epoch(chain):
    while chain.height % 10 != 9:
        chain.commit([])


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
        assert len(answers) == 3 and {tx.sender for tx in answers} == {w.account.address for w in workers}
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
    receipts, rid = _apply(chain, borrower, lenders[1], 10, X25519PrivateKey.generate())
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
    receipts, rid = _apply(chain, borrower, lenders[0], 10, X25519PrivateKey.generate())
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
    receipts, rid = _apply(chain, borrower, lenders[0], 10, X25519PrivateKey.generate())
    stranger = AccountKey.from_name("stranger")
    r = chain.commit([_tx(stranger, 0, "mpc_oracle", "answer", request_id=rid, ok=True, outputs={}, error="")])
    assert not r[0].ok and "only the MPC servers" in r[0].error
    # a server answering without a share for every receiver is refused
    srv = workers[0].account
    r = chain.commit([_tx(srv, 0, "mpc_oracle", "answer", request_id=rid, ok=True, outputs={}, error="")])
    assert not r[0].ok and "every receiver" in r[0].error
    # an account cannot file oracle requests directly
    r = chain.commit([_tx(stranger, 1, "mpc_oracle", "file", program="anti_stacking", shares=[], params={},
                          reveal_to=[bytes(32)], callback="x")])
    assert not r[0].ok and "filed by contracts" in r[0].error
    # an account that is not a registered lender cannot record
    r = chain.commit([_tx(stranger, 2, "mpc_loans", "record", borrower=borrower.address)])
    assert not r[0].ok and "registered lenders" in r[0].error


def test_runtime_without_oracle_refuses_requests(setup):
    g, chain, *_ = setup
    rt = Runtime(g, CONTRACTS)  # no oracle hook
    chain2 = Chain(g, rt)
    borrower = AccountKey.from_name("borrower")
    r = chain2.commit([_tx(borrower, 0, "mpc_loans", "apply", lender=LENDERS[0][0].address, amount=5,
                           borrower_key=bytes(32))])
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
