"""Anti-stacking loans, end to end on a local network (the talk's example).

Four validators (Gosig, in this process, on loopback) run the ``mpc_oracle`` and ``mpc_loans``
contracts; three MPC servers (one per consortium member, TCP on loopback) each follow the
chain through a validator's HTTP API and answer oracle requests with transactions signed by
their own accounts.

Three lenders, registered at genesis, each share what borrower B owes them (s_i) with the
servers; only shares leave their machines. B applies to lender L for an amount; the contract
asks the oracle whether every s_i is in range and sum(s_i) + amount < max_exposure (the
contract's policy). The answer bit is sealed to B's key and L's registered key: no one else
learns it, and no one learns any s_i or the sum.

    python examples/mpc_anti_stacking.py
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import ConsensusParams, ContractEntry, Genesis, ValidatorInfo
from accord.base.types import Tx
from accord.client import Client
from accord.contracts.mpc_loans import MpcLoans
from accord.contracts.mpc_oracle import MpcOracle
from accord.contracts.runtime import code_hash
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.cluster import free_port
from accord.mpc.oracle import OracleWorker, open_result
from accord.mpc.programs import code_hash as program_hash
from accord.mpc.server import MpcServer, ServerInfo
from accord.node.config import NodeConfig
from accord.node.node import Node

CONTRACTS: dict[str, Any] = {"mpc_oracle": MpcOracle, "mpc_loans": MpcLoans}


class LocalLedger:
    """``n`` validators on one background event loop (a local network on loopback)."""

    def __init__(self, genesis: Genesis, secrets: list[bytes], home: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nodes = [
            Node(
                NodeConfig(name=v.name, genesis="genesis.json", port=v.port, sync=False),
                genesis,
                secrets[i],
                home / v.name,
                contracts=CONTRACTS,
            )
            for i, v in enumerate(genesis.validators)
        ]
        for node in self.nodes:
            self._call(node.start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def url(self, i: int) -> str:
        return self.nodes[i].api.url  # type: ignore[union-attr]

    def close(self) -> None:
        for node in self.nodes:
            self._call(node.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def make_genesis(
    accounts: list[AccountKey],
    lenders: list[dict[str, str]],
    max_exposure: int,
    n_validators: int = 4,
) -> tuple[Genesis, list[bytes]]:
    secrets = [bls.demo_secret(f"mpc-demo-v{i}") for i in range(n_validators)]
    validators = [
        ValidatorInfo(
            name=f"v{i}",
            bls_public_key=bls.public_key(s).hex(),
            pop=bls.pop_prove(s).hex(),
            port=free_port(),
        )
        for i, s in enumerate(secrets)
    ]
    genesis = Genesis(
        chain_id="accord-mpc-demo",
        genesis_time_ms=int(time.time() * 1000),
        validators=validators,
        consensus=ConsensusParams(round_ms=300, stage2_ms=150),
        contracts=[
            ContractEntry(name=n, code_hash=code_hash(c).hex()) for n, c in CONTRACTS.items()
        ],
        mpc={
            "servers": [{"address": a.address.hex()} for a in accounts],
            "programs": {"anti_stacking": program_hash("anti_stacking")},
            "timeout_blocks": 30,
            # one application per borrower per block: a demo; a real epoch is a day of blocks
            "loans": {
                "lenders": lenders,
                "max_exposure": max_exposure,
                # amounts are multiples of 1 % of the limit: 100 answer levels, and at
                # most probe_budget (default 4) answers per debt state
                "amount_step": max(1, max_exposure // 100),
                "epoch_blocks": 1,
                "applications_per_epoch": 1,
            },
        },
    )
    return genesis, secrets


def run(
    home: Path, balances: list[int], amounts: list[int], max_exposure: int, n_validators: int = 4
) -> list[tuple[str, int, int]]:
    """Run the scenario; returns (status, bit read by B, bit read by L) per application."""
    accounts = [AccountKey.from_name(f"mpc-server-{i}") for i in range(3)]
    channel_keys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in channel_keys]
    lenders = [AccountKey.from_name(f"lender-{i}") for i in range(len(balances))]
    mpc_keys = [X25519PrivateKey.generate() for _ in lenders]  # each lender's MPC client key
    receiver_keys = [X25519PrivateKey.generate() for _ in lenders]  # opens answers for it
    registry = [
        {
            "address": a.address.hex(),
            "mpc_key": public_bytes(m).hex(),
            "receiver_key": public_bytes(r).hex(),
        }
        for a, m, r in zip(lenders, mpc_keys, receiver_keys, strict=True)
    ]
    genesis, secrets = make_genesis(accounts, registry, max_exposure, n_validators)
    ledger = LocalLedger(genesis, secrets, home)
    servers = [MpcServer(i, infos, channel_keys[i]) for i in range(3)]
    try:
        starts = [threading.Thread(target=s.start) for s in servers]
        for t in starts:
            t.start()
        for t in starts:
            t.join()
        for i in range(3):  # member i's MPC server follows member i's validator
            worker = OracleWorker(servers[i], accounts[i], genesis)
            threading.Thread(
                target=worker.watch, args=(Client(ledger.url(i)),), daemon=True
            ).start()

        client = Client(ledger.url(3 % n_validators))
        borrower = AccountKey.from_name("borrower")
        for lender, mkey, s in zip(lenders, mpc_keys, balances, strict=True):
            with Cluster(infos, key=mkey) as c:  # on the lender's own machine: only shares leave it
                c.share(f"loan/{borrower.address.hex()}", np.array(s), 0)
            tx = Tx.create(
                lender,
                chain_id=genesis.chain_id,
                contract="mpc_loans",
                method="record",
                args={"borrower": borrower.address},
                nonce=0,
            )
            receipt = client.wait(client.submit(tx), timeout=60)
            assert receipt.ok, receipt.error
        b_key, l_key = X25519PrivateKey.generate(), receiver_keys[0]
        results = []
        for nonce, amount in enumerate(amounts):
            tx = Tx.create(
                borrower,
                chain_id=genesis.chain_id,
                contract="mpc_loans",
                method="apply",
                args={
                    "lender": lenders[0].address,
                    "amount": amount,
                    "borrower_key": public_bytes(b_key),
                },
                nonce=nonce,
            )
            receipt = client.wait(client.submit(tx), timeout=60)
            assert receipt.ok, receipt.error
            request_id = receipt.result
            deadline = time.monotonic() + 60
            while True:
                app = client.query("mpc_loans", "application", request_id=request_id)
                if app["status"] != "pending" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if app["status"] != "answered":
                results.append((app["status"], -1, -1))
                continue
            bit_b = int(open_result(b_key, request_id, app["outputs"])["ok"])
            bit_l = int(open_result(l_key, request_id, app["outputs"])["ok"])
            results.append((app["status"], bit_b, bit_l))
        return results
    finally:
        logging.getLogger("accord.mpc").setLevel(logging.ERROR)  # peers leaving is expected now
        for s in servers:
            s.stop()
        ledger.close()


def main() -> None:
    balances = [40_000_00, 25_000_00, 10_000_00]  # cents, each known only to its lender and B
    max_exposure = 100_000_00  # the contract's policy
    amounts = [20_000_00, 30_000_00]
    with tempfile.TemporaryDirectory(prefix="accord-mpc-demo-") as home:
        results = run(Path(home), balances, amounts, max_exposure)
        for amount, (status, bit_b, bit_l) in zip(amounts, results, strict=True):
            print(
                f"apply for {amount / 100:,.0f}: {status}; borrower reads {bit_b}, lender reads "
                f"{bit_l} (1 = debt + amount below {max_exposure / 100:,.0f}); the chain holds "
                "only sealed shares"
            )


if __name__ == "__main__":
    main()
