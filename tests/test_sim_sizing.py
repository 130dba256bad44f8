"""The simulator cuts blocks with the node's own cost model (accord.ledger.sizing.GasModel).

Fixed 2,000-transaction blocks that take 2 s to execute in 1 s rounds never commit (the
livelock the model exists to prevent, seen on real validators above ~1,500 tx/s); with the
cost per transaction modelled instead, each leader measures it, cuts its blocks to a quarter of
a round, and the chain commits. The same model's arithmetic is held to its bounds in
tests/test_node_worker.py."""

from __future__ import annotations

from accord.ledger.sizing import GasModel
from accord.sim import SimConfig, Simulator

BASE = {"nodes": 4, "rounds": 25, "seed": 1, "round_ms": 1000, "stage2_ms": 500, "block_txs": 2000}


def test_blocks_too_slow_for_their_round_never_commit() -> None:
    sim = Simulator(SimConfig(**BASE, exec_ms=2000.0))  # type: ignore[arg-type]
    assert sim.run().committed_heights == 0


def test_blocks_cut_by_measured_cost_fit_the_round_and_commit() -> None:
    sim = Simulator(SimConfig(**BASE, exec_us_per_tx=1000.0))  # type: ignore[arg-type]
    r = sim.run()
    assert r.safety_violations == 0
    assert r.committed_heights >= 15, r.summary()
    sizes = [len(b.txs) for b, _ in sim.nodes[0].chain]
    # Within a few blocks every leader cuts at the budget: 0.25 s of 1 ms transactions.
    assert all(240 <= n <= 260 for n in sizes[5:]), sizes
    # ...and it is the node's model that decided it, not a constant.
    model = sim.nodes[0].gas
    assert isinstance(model, GasModel) and abs(model.cost * 5_000 - 1e-3) < 1e-4


def test_without_a_cost_model_the_simulator_is_unchanged() -> None:
    sim = Simulator(SimConfig(**{**BASE, "rounds": 6}, exec_ms=100.0))  # type: ignore[arg-type]
    sim.run()
    assert all(nd.gas is None for nd in sim.nodes)
    assert all(len(b.txs) == 2000 for b, _ in sim.nodes[0].chain)
