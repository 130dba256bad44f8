"""Three MPC servers in threads, a chain with the MPC loans contracts, and the oracle workers between them: the anti-stacking oracle tests' fixture and helpers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import ContractEntry
from accord.base.types import Tx
from accord.contracts.base import Contract
from accord.contracts.memory import MemoryState
from accord.contracts.mpc_loans import MpcLoans
from accord.contracts.mpc_oracle import MpcOracle
from accord.contracts.runtime import Runtime, code_hash
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.oracle import OracleHook, OracleWorker
from accord.mpc.programs import code_hash as program_hash
from accord.mpc.server import MpcServer, ServerInfo

from .genesis import make_genesis

CONTRACTS: dict[str, type[Contract]] = {"mpc_oracle": MpcOracle, "mpc_loans": MpcLoans}
MemState = MemoryState

# Registered lenders: account, MPC client key (the servers' namespace), receiver key.
LENDERS = [
    (AccountKey.from_name(f"lender-{i}"), X25519PrivateKey.generate(), X25519PrivateKey.generate())
    for i in range(4)
]


MAX_EXPOSURE = 1_000_000
AMOUNT_STEP = 5_000  # amounts are multiples: 200 answer levels
PROBE_BUDGET = 4  # answers per borrower per debt state


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
def setup(request):
    """The chain and servers; ``indirect`` parametrisation overrides ``mpc.loans`` policy."""
    server_accounts = [AccountKey.from_name(f"mpc-server-{i}") for i in range(3)]
    keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
    mpc_cfg = {
        "servers": [
            {
                "address": a.address.hex(),
                "channel_key": public_bytes(k).hex(),
                "host": s.host,
                "port": s.port,
            }
            for a, k, s in zip(server_accounts, keys, infos, strict=True)
        ],
        "programs": {"anti_stacking": program_hash("anti_stacking")},
        "timeout_blocks": 3,
        "loans": {
            "lenders": [
                {
                    "address": acct.address.hex(),
                    "mpc_key": public_bytes(mk).hex(),
                    "receiver_key": public_bytes(rk).hex(),
                }
                for acct, mk, rk in LENDERS
            ],
            "max_exposure": 1_000_000,
            "amount_step": AMOUNT_STEP,
            "probe_budget": PROBE_BUDGET,
            "epoch_blocks": 10,
            "applications_per_epoch": 1,
            "admin": AccountKey.from_name("consortium-admin").address.hex(),
            **getattr(request, "param", {}),
        },
    }
    g = make_genesis(4)
    g = g.model_copy(
        update={
            "contracts": [
                ContractEntry(name=n, code_hash=code_hash(c).hex()) for n, c in CONTRACTS.items()
            ],
            "mpc": mpc_cfg,
        }
    )
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
    return Tx.create(
        key, chain_id="accord-test", contract=contract, method=method, args=args, nonce=nonce
    )


def _apply(chain, borrower, lender, amount, bkey, nonce=0):
    receipts = chain.commit(
        [
            _tx(
                borrower,
                nonce,
                "mpc_loans",
                "apply",
                lender=lender.address,
                amount=amount,
                borrower_key=public_bytes(bkey),
            )
        ]
    )
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
    receipts = chain.commit(
        [_tx(a, nonce, "mpc_loans", "record", borrower=borrower.address) for a in lenders]
    )
    assert all(r.ok for r in receipts), [r.error for r in receipts]
    return lenders


def _next_epoch(chain):
    while chain.height % 10 != 9:
        chain.commit([])
