"""The Gosig core's vote bookkeeping, checked on real simulator runs (``accord.sim``,
model crypto):

* **Behaviour did not change.** Every action every core emitted, in order and batched as
  emitted, is hashed (``action_digest``) together with the committed chains
  (``chain_digest``), the message count and the summed counters. The expected figures were
  recorded from the core *before* the bookkeeping moved from parallel dicts into slot
  records; any change in what is sent, voted, persisted, fetched or committed, or in which
  order, changes them. The runs cover broadcast and gossip mode (rate-limited forwarding
  and pulls: the per-block timers), Byzantine equivocation and junk, loss, duplication,
  partitions, crashes with restarts and tickets first.
* **Nothing leaks.** A slot is created in one place and forgotten whole in one place, so
  after every event every live slot is at the height being decided and holds at least one
  block, and their number stays bounded by the rounds the core keeps, over as many heights
  and rounds as a run lasts, junk votes included (white-box: reads the core's private
  ``_slots``).
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from typing import Any

import pytest

from accord.base.types import Block, Certificate, vote_message
from accord.consensus import (
    PHASE_C,
    PHASE_P,
    Aggregate,
    Core,
    CostModelCrypto,
    MessageReceived,
    Params,
    Tick,
)
from accord.consensus.state import KEEP_ROUNDS, Action, Event
from accord.sim import SimConfig, Simulator

CONFIGS: dict[str, dict[str, Any]] = {
    "broadcast": dict(nodes=4, seed=1, rounds=20),
    "gossip": dict(nodes=10, broadcast_max=4, seed=2, rounds=20),
    "gossip_double_vote": dict(
        nodes=10, broadcast_max=4, byzantine=3, strategy="double_vote", seed=3, rounds=20
    ),
    "mixed_byzantine": dict(nodes=10, byzantine=3, strategy="mixed", seed=3, rounds=20),
    "twins": dict(nodes=10, byzantine=3, strategy="twins", seed=3, rounds=20),
    "withhold": dict(nodes=10, byzantine=3, strategy="withhold", seed=3, rounds=20),
    "lossy_equivocate": dict(
        nodes=7, byzantine=2, strategy="equivocate", seed=4, rounds=20, loss=0.1, duplicate=0.1
    ),
    "partition_gossip": dict(
        nodes=10, broadcast_max=4, partition="split", seed=5, rounds=20, loss=0.05
    ),
    "crash_restart": dict(nodes=4, seed=6, rounds=20, crashes=[(1, 2000, 4500)]),
    "tickets_slow_blocks": dict(nodes=7, seed=7, rounds=20, ticket_wait_ms=30, exec_ms=150.0),
}

# Recorded from the core before the slot records (commit 62297ab), one run per config.
EXPECTED: dict[str, dict[str, Any]] = {
    "broadcast": {
        "action_digest": "c9865b61766c904de6dfb699ad7231fe0b0dd99cc9ec9e39ca57e5da6f8d806c",
        "chain_digest": "dcb3525b35e0d874c55fe0a198a57a97b0760b482864703b8d232452c0950b54",
        "committed_heights": 20,
        "messages": 2632,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 59,
            "crashes": 0,
            "garbage": 0,
            "stale": 1735,
        },
    },
    "crash_restart": {
        "action_digest": "646000f85e98f35bf5706fd300d26b542d1d3a16bbf2726ec74eb6c8b31e15f2",
        "chain_digest": "75cacc0dcab126c613a50f64fd0be30be3959a89c1dbbf15f8bd7be92ade2382",
        "committed_heights": 20,
        "messages": 2464,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 58,
            "crashes": 1,
            "garbage": 0,
            "stale": 1371,
        },
    },
    "gossip": {
        "action_digest": "65bde6758b3c8437df340d0657bc4c6aa0bca6a56de1125dd716929e087fac43",
        "chain_digest": "9cb25e245e7030c7b94dfe4cdd1b75cb42598a19f09ebce9ab880837f32b20e9",
        "committed_heights": 20,
        "messages": 7238,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 69,
            "crashes": 0,
            "garbage": 0,
            "stale": 1969,
        },
    },
    "gossip_double_vote": {
        "action_digest": "4ae4aa81b329299b8269652ddba07beb35ab0e25de55875b41864b40a79924d0",
        "chain_digest": "25eb5b6a8f5acef2b0fa37d8d2b321ccf689df6843db527125d84e9c03a05438",
        "committed_heights": 19,
        "messages": 9209,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 70,
            "crashes": 0,
            "dropped_votes": 14,
            "garbage": 0,
            "stale": 2979,
        },
    },
    "lossy_equivocate": {
        "action_digest": "5498b941cb747b4f50f55e7fc52aad9063dfcfc910ae63edc2dca1ecf5954950",
        "chain_digest": "e3381de40c9eec9108d835a4bd2b1d3d46f621fed0aadfd23ddbe1d2689511f3",
        "committed_heights": 14,
        "messages": 7509,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 68,
            "crashes": 0,
            "garbage": 0,
            "stale": 3407,
        },
    },
    "mixed_byzantine": {
        "action_digest": "a4b7cc230cd83b2655adb1b27e741b7ebc6d91775fab39c36e67990226a76740",
        "chain_digest": "9793845ecf7c4e735938e19cb1f8ab0431b290b50c1c3f32d1036933d361ea87",
        "committed_heights": 20,
        "messages": 20590,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 718,
            "builds": 76,
            "crashes": 0,
            "dropped_votes": 22,
            "garbage": 0,
            "stale": 10057,
        },
    },
    "partition_gossip": {
        "action_digest": "d699de7caf3afd0169748b39f207d9e0121882148372c1119def2553ddb49c84",
        "chain_digest": "f26dc482d9b77da96375c32622b177defb96796461bd580fe4d49b3de4c1980c",
        "committed_heights": 14,
        "messages": 7563,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 58,
            "crashes": 0,
            "garbage": 0,
            "late_prepare": 1,
            "stale": 1158,
        },
    },
    # Recorded again on the old bookkeeping once the simulator ran the node's chain-job
    # policy (accord.consensus.jobs): the slot records reproduce it exactly.
    "tickets_slow_blocks": {
        "action_digest": "4ad704d54058c53b52c74d7cec086171259c5ec6a2ef5b7d41a687a80875171c",
        "chain_digest": "488a23b5768d86185803ec6c76c8c7af9f1c981980d60b7c31d6222af62ab5b9",
        "committed_heights": 10,
        "messages": 7108,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 67,
            "crashes": 0,
            "garbage": 0,
            "stale": 1794,
        },
    },
    "twins": {
        "action_digest": "d24db1575d7ed275f804d1be5e7d32040f63d1461f233d59211251f297a66735",
        "chain_digest": "0c6c67a07b3d5158d0ca5b9a85c805f591a2a952c435aa78b8b9538ae6405627",
        "committed_heights": 19,
        "messages": 25531,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 88,
            "crashes": 0,
            "dropped_votes": 72,
            "garbage": 0,
            "stale": 7549,
        },
    },
    "withhold": {
        "action_digest": "41c9f28d4b2c32e6c4920167349ea375f93c7d5ec9137e62ff0b9154fcfb4d7b",
        "chain_digest": "57fa1689f8268c555fb66b39e4116aa408605a8a58a90f2ecafbd5813f28eb89",
        "committed_heights": 16,
        "messages": 9068,
        "stats": {
            "bad_proposal": 0,
            "bad_signature": 0,
            "builds": 68,
            "crashes": 0,
            "garbage": 0,
            "repropose": 1,
            "stale": 3691,
        },
    },
}


def _field_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, bool | int):
        return str(int(v)).encode()
    if isinstance(v, Block):
        return v.encode()
    if isinstance(v, Certificate):
        return v.encode()
    raise TypeError(f"unexpected action field {type(v).__name__}")


def _digesting_core(h: Any) -> type[Core]:
    """A core that feeds every batch of actions it returns into ``h`` (its index first)."""

    class DigestingCore(Core):
        def handle(self, event: Event) -> list[Action]:
            out = super().handle(event)
            h.update(b"|%d|" % self.index)
            for a in out:
                h.update(type(a).__name__.encode())
                for f in fields(a):
                    b = _field_bytes(getattr(a, f.name))
                    h.update(b"%d:" % len(b) + b)
            return out

    return DigestingCore


def run_recorded(cfg: dict[str, Any]) -> dict[str, Any]:
    h = hashlib.sha256()
    res = Simulator(SimConfig(**cfg, core_class=_digesting_core(h))).run()
    assert res.safety_violations == 0, res.violations
    return {
        "action_digest": h.hexdigest(),
        "chain_digest": res.chain_digest,
        "committed_heights": res.committed_heights,
        "messages": res.messages,
        "stats": dict(sorted(res.stats.items())),
    }


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_actions_as_before_the_slot_records(name: str) -> None:
    assert run_recorded(CONFIGS[name]) == EXPECTED[name]


# Live slots at one height: phases P and C of the rounds kept (KEEP_ROUNDS behind the
# current one, the current one, two ahead), plus the few older blocks a round may leave
# before its successor prunes (pruning starts above 4 blocks, and a P-quorum of any older
# round that unlocks or justifies is admitted).
SLOT_BOUND = 2 * (KEEP_ROUNDS + 3) + 4


class _Watch:
    """The largest numbers of live slots and blocks any core held after any event."""

    def __init__(self) -> None:
        self.slots = 0
        self.tallies = 0
        self.events = 0


def _checking_core(w: _Watch) -> type[Core]:
    class CheckingCore(Core):
        def handle(self, event: Event) -> list[Action]:
            out = super().handle(event)
            check_slots(self)
            w.events += 1
            w.slots = max(w.slots, len(self._slots))
            w.tallies = max(w.tallies, sum(len(s.tallies) for s in self._slots.values()))
            return out

    return CheckingCore


def check_slots(core: Core) -> None:
    height = core.status().height
    for sk, slot in core._slots.items():
        assert sk.height == height, f"slot {sk} outlived its height (deciding {height})"
        assert slot.tallies, f"slot {sk} without a block"
        assert len(slot.tallies) <= core.n
        for bh, t in slot.tallies.items():
            assert (t.agg.height, t.agg.round, t.agg.phase, t.agg.block_hash) == (*sk, bh)
    assert len(core._slots) <= SLOT_BOUND


@pytest.mark.parametrize(
    "cfg",
    [
        dict(nodes=7, byzantine=2, strategy="double_vote", seed=11, rounds=90),
        dict(nodes=10, broadcast_max=4, byzantine=3, strategy="mixed", seed=12, rounds=60),
        # Rounds without commits pile up at one height until the partition heals.
        dict(nodes=7, partition="split", seed=13, rounds=60, heal_ms=0, loss=0.05),
    ],
    ids=["double_vote", "gossip_mixed", "partition"],
)
def test_live_slots_stay_bounded_over_many_heights(cfg: dict[str, Any]) -> None:
    w = _Watch()
    res = Simulator(SimConfig(**cfg, core_class=_checking_core(w))).run()
    assert res.safety_violations == 0, res.violations
    assert res.committed_heights >= 15  # many heights went by, each forgetting its slots
    assert w.events > 10_000
    assert 0 < w.slots <= SLOT_BOUND


def test_junk_votes_for_rounds_ahead_are_forgotten_as_rounds_pass() -> None:
    """A Byzantine validator votes for a fresh junk block in every slot it may (the current
    round and two ahead, both phases) through 300 rounds in which nothing commits: the slots
    of every round more than KEEP_ROUNDS behind go, and with them every junk block."""
    n = 4
    crypto = CostModelCrypto(n)
    params = Params(chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=0.01)
    core = Core(params, crypto.signer(0), crypto, head=(0, b"g" * 32))
    most = 0
    for rnd in range(300):
        core.handle(Tick(rnd * 100 + 1))
        for ahead in (0, 1, 2):
            for phase in (PHASE_P, PHASE_C):
                bh = hashlib.sha256(b"junk %d %d %d" % (rnd, ahead, phase)).digest()
                msg = vote_message("c", 1, rnd + ahead, phase, bh)
                agg = Aggregate.single(n, 1, rnd + ahead, phase, bh, 1, crypto.signer(1).sign(msg))
                core.handle(MessageReceived(1, agg.encode()))
        check_slots(core)
        most = max(most, len(core._slots))
    assert core.status().height == 1  # nothing committed: one height, 300 rounds
    assert most <= 2 * (KEEP_ROUNDS + 3)
    assert min(sk.round for sk in core._slots) >= 299 - KEEP_ROUNDS
