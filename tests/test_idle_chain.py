"""No empty blocks while idle (``skip_empty_blocks``, #17): the simulator drives the real core.

Without the option an idle 4-validator chain commits a block almost every round; with it,
none, until a transaction arrives, which then commits within a few rounds: leaders propose
only with transactions pending, while every validator still advances rounds and votes."""

from __future__ import annotations

import pytest

from accord.sim.engine import SimConfig, Simulator

ROUND_MS = 1000


def _run(skip: bool, txs: list[tuple[int, int]], rounds: int = 30, **kw: object) -> Simulator:
    cfg = SimConfig(
        nodes=4,
        rounds=rounds,
        round_ms=ROUND_MS,
        stage2_ms=500,
        latency_ms=10,
        ticket_wait_ms=30,
        skip_empty=skip,
        txs=txs,
        seed=5,
        **kw,
    )  # type: ignore[arg-type]
    sim = Simulator(cfg)
    result = sim.run()
    assert result.safety_violations == 0, result.violations
    sim.result = result  # type: ignore[attr-defined]
    return sim


def test_idle_chain_makes_blocks_every_round_without_the_option() -> None:
    r = _run(False, []).result  # type: ignore[attr-defined]
    assert r.committed_heights >= 25


@pytest.mark.parametrize("target", [-1, 2])  # every mempool, or one validator's only
def test_idle_chain_makes_no_block_then_commits_a_transaction_promptly(target: int) -> None:
    arrive_ms = 20 * ROUND_MS + 130  # mid stage I of round 20
    sim = _run(True, [(arrive_ms, target)])
    r = sim.result  # type: ignore[attr-defined]
    chain = next(iter(r.honest_chains.values()))
    blocks = [b for nd in sim.nodes for b, _ in nd.chain]
    assert all(b.header.round >= 20 for b in blocks)  # nothing in the 20 idle rounds
    assert 1 <= r.committed_heights <= 2 and len(chain) <= 2
    committed = r.tx_commit_ms[0]
    assert committed - arrive_ms <= 3 * ROUND_MS, committed - arrive_ms
    # Rounds kept moving while idle (validators advance and are ready), none proposed.
    assert all(nd.core.status().round >= 29 for nd in sim.nodes)


def test_idle_option_keeps_liveness_with_a_crashed_validator_and_a_steady_load() -> None:
    txs = [(t * 700, -1) for t in range(1, 40)]
    r = _run(True, txs, crashes=[(1, 5_000, 12_000)]).result  # type: ignore[attr-defined]
    assert len(r.tx_commit_ms) >= len(txs) - 3
    late = [r.tx_commit_ms[i] - txs[i][0] for i in r.tx_commit_ms]
    assert max(late) <= 6 * ROUND_MS, max(late)
