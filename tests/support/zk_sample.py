"""A valid shielded-transfer proof for tests: a self-deposit of the test suite's small circuit."""

from __future__ import annotations

import random
from typing import Any

from accord.zk import artifacts
from accord.zk import notes as zk


def deposit_proof(
    keys: artifacts.CircuitKeys, seed: bytes, amount: int, rng_seed: int
) -> tuple[dict[str, Any], list[int]]:
    """Prove a deposit of ``amount`` to the spending key of ``seed`` (deterministic plan)."""
    key = zk.SpendingKey.from_seed(seed)
    plan = zk.plan_transfer(
        key,
        [],
        [(key.address, amount)],
        zk.MerkleTree(artifacts.TEST_DEPTH),
        zk.RegulatorKey.from_seed(b"r").public,
        deposit=amount,
        rng=random.Random(rng_seed),
        chain_id="test",
    )
    return keys.prove(plan.circuit_input)
