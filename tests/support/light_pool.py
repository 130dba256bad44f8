"""A single validator with the shielded pool serving the client API on a real store: the
light client's shielded-proof tests' ledger (one block per call, so heights are exact)."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import Genesis
from accord.base.types import Receipt, Tx
from accord.contracts import BUILTINS, Runtime, contract_address
from accord.contracts.base import ProofVerifier
from accord.contracts.shielded_pool import ShieldedPool
from accord.ledger.chain import Chain
from accord.ledger.mempool import Mempool
from accord.node.api import ApiServer
from accord.zk import artifacts, groth16
from accord.zk import notes as zk
from accord.zk.verifier import verifier_from_genesis

from .api import LocalNode
from .gov import next_tx


class PoolNode(LocalNode):
    """The API tests' single validator, with the shielded pool and a proof verifier (as a
    ``Node`` wires it: ``verifier_from_genesis``, the snarkjs worker when Node.js is present,
    unless one is given)."""

    def __init__(self, path: Path, genesis: Genesis, verifier: ProofVerifier | None) -> None:
        super().__init__(path, genesis)
        self.runtime = Runtime(
            genesis,
            {**BUILTINS, "shielded_pool": ShieldedPool},
            proof_verifier=verifier or verifier_from_genesis(genesis),
        )
        self.chain = Chain(genesis, self.store, self.runtime)
        self.mempool = Mempool(genesis.chain_id, self.chain.nonce_of)


class PoolLedger:
    """A PoolNode on its own event loop, its API served; ``signer`` sends the pool's calls."""

    def __init__(
        self,
        keys: artifacts.CircuitKeys,
        path: Path,
        genesis: Genesis,
        signer: AccountKey,
        verifier: ProofVerifier | None = None,
    ) -> None:
        self.keys = keys
        self.genesis = genesis
        self.signer = signer
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.node = self._call(lambda: PoolNode(path, self.genesis, verifier))
        self.server = ApiServer(self.node)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        self.url = self.server.url
        self.tree = zk.MerkleTree(artifacts.TEST_DEPTH)
        self.rng = random.Random(3)
        self.nonces: dict[bytes, int] = {}

    def _call(self, fn: Any) -> Any:
        async def wrap() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(120)

    def call(
        self, key: AccountKey, contract: str, method: str, args: dict[str, Any]
    ) -> tuple[Tx, Receipt]:
        """Sign, submit and commit one transaction in a block of its own."""
        tx = next_tx(self.nonces, key, self.genesis.chain_id, contract, method, args)
        self._call(lambda: self.node.submit(tx))
        block = self._call(self.node.commit_pending)
        hashes = [t.hash for t in block.txs]
        assert tx.hash in hashes
        receipt = self.node.store.get_receipts(block.height)[hashes.index(tx.hash)]
        if receipt.ok:
            for ev in receipt.events:
                if ev.contract == "shielded_pool" and ev.name == "Transfer":
                    for c in ev.data["commitments"]:
                        self.tree.append(int.from_bytes(c, "big"))
        return tx, receipt

    @property
    def height(self) -> int:
        return int(self.node.chain.head()[0])

    def send(self, args: dict[str, Any]) -> Tx:
        tx, self.last_receipt = self.call(self.signer, "shielded_pool", "transact", args)
        return tx

    def approve(self, amount: int) -> None:
        pool = contract_address("shielded_pool")
        _, receipt = self.call(self.signer, "token", "approve", {"spender": pool, "amount": amount})
        assert receipt.ok, receipt.error

    def args(self, plan: zk.TransferPlan, recipient: bytes = b"") -> dict[str, Any]:
        proof, public = self.keys.prove(plan.circuit_input)
        return {
            "proof": groth16.compress_proof(proof),
            "inputs": [x.to_bytes(32, "big") for x in public],
            "notes": plan.note_ciphertexts,
            "recipient": recipient,
        }

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self._call(self.node.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
