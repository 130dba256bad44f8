"""200 seeded random adversarial schedules per run: zero safety violations, and liveness
within a bounded number of rounds after the network heals.

Each schedule draws n in 4..31, up to f Byzantine validators with one strategy (or a mix),
a partition (static split, isolation of f+1 honest validators, or adaptive re-partitioning
from the validators' locks), loss, duplication, latency and clock drift, and whether leaders
announce their tickets before building. Partitions heal after
a third of the run; the remaining rounds must commit at least one new block at every honest
validator (with a few expected leaders per round, a run of 8 rounds without an honest
best-priority leader is very unlikely, and the seeds are fixed).
"""

from __future__ import annotations

import random

import pytest

from accord.sim import STRATEGIES, SimConfig, simulate

SCHEDULES = 200
BATCH = 10
ROUNDS = 12


def schedule(seed: int) -> SimConfig:
    rng = random.Random(1_000_003 * seed + 17)
    n = rng.randint(4, 31)
    f = (n - 1) // 3
    byz = rng.choice([f, f, rng.randint(0, f)])
    cfg = SimConfig(
        nodes=n,
        byzantine=byz,
        strategy=rng.choice((*STRATEGIES, "mixed")),
        seed=seed,
        rounds=ROUNDS,
        partition=rng.choice(["none", "split", "isolate", "adaptive"]),
        loss=rng.choice([0.0, 0.02, 0.1]),
        duplicate=rng.choice([0.0, 0.05]),
        drift_ms=rng.choice([0.0, 10.0, 25.0]),
        latency_ms=rng.choice([20.0, 50.0, 100.0]),
    )
    # Half the schedules have leaders announce tickets before building (ticket_wait_ms).
    cfg.ticket_wait_ms = int(cfg.latency_ms / 2) if rng.random() < 0.5 else 0
    return cfg


@pytest.mark.parametrize("batch", range(SCHEDULES // BATCH))
def test_random_adversarial_schedules(batch: int) -> None:
    for seed in range(batch * BATCH, (batch + 1) * BATCH):
        cfg = schedule(seed)
        r = simulate(cfg)
        where = f"seed {seed}: {r.summary()}"
        assert r.safety_violations == 0, f"{where} {r.violations}"
        # Liveness after healing (ROUNDS - ROUNDS // 3 rounds of a healed network).
        assert r.heights_after_heal >= 1, where
