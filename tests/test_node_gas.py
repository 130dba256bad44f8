"""Blocks are cut by gas, so transactions that cost far more than a transfer still commit.

Four in-process validators run a contract whose calls each take ~40 ms of CPU for 100,000 gas
(twenty times a transfer's cost per unit of gas). Cut by count, as blocks once were (never
below 50 transactions), a block of such calls took seconds to execute and never fit a round:
the chain stalled for good. Cut by the measured cost of gas, blocks shrink to what a round can
execute and every call commits.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from accord.base.genesis import ContractEntry, Genesis
from accord.base.types import Tx
from accord.contracts import BUILTINS, Context, Contract, code_hash, method
from accord.ledger.sizing import TRANSFER_GAS
from accord.node.config import demo_account

from .support.inproc import ThreadedNetwork

pytestmark = pytest.mark.timeout(240)

SENDER = demo_account(0)
CALLS = 24
BURN_GAS = 100_000


class Burner(Contract):
    """Spends CPU out of proportion to the gas it is charged (like a costly proof check)."""

    name = "burner"

    @method
    def burn(self, ctx: Context, rounds: int) -> str:
        ctx.charge(BURN_GAS)
        # The work runs in C, like a proof check: a loop written in the contract would be
        # charged per iteration by the gas meter (accord.contracts.meter).
        return hashlib.pbkdf2_hmac("sha256", b"burn", b"salt", rounds).hex()[:8]


def _with_burner(g: Genesis) -> Genesis:
    entry = ContractEntry(name="burner", code_hash=code_hash(Burner).hex())
    return g.model_copy(update={"contracts": [*g.contracts, entry]})


def _rounds_for(seconds: float) -> int:
    """How many hash rounds take ``seconds`` here (machines differ by 2-4x)."""
    t, n = time.perf_counter(), 20_000
    hashlib.pbkdf2_hmac("sha256", b"burn", b"salt", n)
    return max(1000, int(n * seconds / (time.perf_counter() - t)))


def test_costly_transactions_commit_in_blocks_cut_by_gas(tmp_path: Path) -> None:
    net = ThreadedNetwork(
        tmp_path / "net",
        round_ms=1000,
        stage2_ms=500,
        customize=_with_burner,
        node_kw={"contracts": {**BUILTINS, "burner": Burner}},
        name="gas-net",
    )
    try:
        rounds = _rounds_for(0.04)
        txs = [
            Tx.create(
                SENDER,
                chain_id=net.genesis.chain_id,
                contract="burner",
                method="burn",
                args={"rounds": rounds},
                nonce=i,
                gas_limit=2 * BURN_GAS,
            )
            for i in range(CALLS)
        ]

        async def submit() -> None:
            for t in txs:
                net.nodes[0].submit(t)

        net.run(submit())
        deadline = time.monotonic() + 120
        nodes = net.nodes
        while time.monotonic() < deadline:
            if all(
                n.chain is not None and n.chain.nonce_of(SENDER.address) == CALLS for n in nodes
            ):
                break
            time.sleep(0.2)
        done = [n.chain.nonce_of(SENDER.address) for n in nodes if n.chain is not None]
        assert done == [CALLS] * len(nodes), f"committed calls per validator: {done}"
        # Every call ran and succeeded, and what their gas costs was measured (by the nodes
        # that built or validated a block heavy enough to time: lazily validating nodes and
        # blocks below COST_SAMPLE_GAS give no sample).
        assert any(n.worker.gas.cost > 100e-6 / TRANSFER_GAS for n in nodes)
        chain = nodes[0].chain
        assert chain is not None
        height, _ = chain.head()
        sizes = []
        for h in range(1, height + 1):
            block = chain.store.get_block(h)
            assert block is not None
            assert all(r.ok for r in chain.store.get_receipts(h))
            if block.txs:
                sizes.append(len(block.txs))
        assert sum(sizes) == CALLS
        common = min(n.chain.head()[0] for n in nodes if n.chain is not None)
        hashes = {n.chain.store.get_block(common).hash for n in nodes if n.chain is not None}
        assert len(hashes) == 1
    finally:
        net.close()
