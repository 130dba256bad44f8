"""Consensus parameters changed at a height, driven by the simulator (issue 19): every core
switches timing at the same height, the round schedule moves with round_ms (rounds keep
counting up), and no safety property breaks, with and without an equivocating validator."""

from __future__ import annotations

import pytest

from accord.contracts.runtime import ROUND_GAP
from accord.sim import SimConfig, Simulator


def _run(**kw: object) -> Simulator:
    cfg = SimConfig(**{"rounds": 40, "seed": 1, "latency_ms": 20, **kw})  # type: ignore[arg-type]
    sim = Simulator(cfg)
    r = sim.run()
    assert r.safety_violations == 0, r.violations
    return sim


@pytest.mark.parametrize("factor", [2, 1 / 2])
def test_rounds_change_length_at_a_height_and_keep_counting_up(factor: float) -> None:
    base = Simulator(SimConfig(rounds=1, seed=1, latency_ms=20)).c.round_ms
    new = int(base * factor)
    at = 14
    sim = _run(param_changes=[(at, {"round_ms": new, "stage2_ms": new // 2})])
    chain = max((n.chain for n in sim.nodes if n.honest), key=len)
    assert len(chain) >= at + 5, len(chain)
    rounds = [b.header.round for b, _ in chain]
    assert rounds == sorted(set(rounds))  # strictly up, across the change
    before = chain[at - 2][0].header  # the last block of the old timing
    anchor = sim.params_at(at, chain).genesis_time_ms
    r = before.round + ROUND_GAP
    # The moved schedule meets the old one at r (counted from genesis time instead, rounds
    # twice as long would be numbered about half as high as those just voted in).
    assert anchor + r * new == r * base
    for block, _ in chain[at - 1 :]:
        h = block.header
        start = anchor + h.round * new
        assert start - 3 * new <= h.time_ms <= start + new + 3 * new, (h.height, h.round)
    for nd in sim.nodes:
        if nd.honest and len(nd.chain) >= at:
            assert nd.core.p.round_ms == new and nd.core.p.genesis_time_ms == anchor


def test_a_timing_change_under_an_equivocating_validator_is_safe() -> None:
    base = Simulator(SimConfig(rounds=1, seed=1, latency_ms=20)).c.round_ms
    for seed in range(3):
        sim = _run(
            nodes=4,
            byzantine=1,
            strategy="equivocate",
            seed=seed,
            param_changes=[
                (5, {"round_ms": 2 * base, "stage2_ms": base, "ticket_wait_ms": 10}),
                (9, {"round_ms": base, "stage2_ms": base // 2}),
            ],
        )
        assert min(len(n.chain) for n in sim.nodes if n.honest) >= 10


def test_the_sim_command_runs_parameter_changes(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from accord.cli.main import main

    argv = ["sim", "--round-ms", "300", "--stage2-ms", "150", "--rounds", "30", "--json"]
    assert main([*argv, "--param-change", "5:round_ms=600,stage2_ms=300"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["safety_violations"] == 0 and data["committed_heights"] >= 8
    with pytest.raises(SystemExit):  # a block limit is the ledger's, not the core's
        main(["sim", "--param-change", "5:max_block_txs=2"])
    assert "NAME one of" in capsys.readouterr().err
    assert main(["sim", "--param-change", "5:round_ms=100,stage2_ms=200", "--json"]) != 0
    assert "stage2_ms must be below round_ms" in capsys.readouterr().err
