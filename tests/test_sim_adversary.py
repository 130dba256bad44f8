"""The delivery-order adversary (accord.sim.adversary): it finds the fork of a core that signs
C for a lock below its last P vote (the rule before the fix of rule 6, kept here as a test-only
subclass), and finds nothing in the real core across thousands of schedules: the exhaustive
n = 4 space, the exhaustive n = 4 + twin space, and every seeded strategy."""

from __future__ import annotations

import json
import random

import pytest

from accord.consensus import Core
from accord.consensus.aggregate import PHASE_C, Aggregate
from accord.sim import SimConfig, Simulator
from accord.sim.adversary import (
    NEVER,
    STRATEGIES,
    Hold,
    Plan,
    Scheduler,
    Setup,
    Space,
    draw_plan,
    exhaustive,
    run_plan,
    search,
)


class OldRuleCore(Core):
    """The core with ``_on_p_quorum`` as it was before the fix (copied from state.py at commit
    b5fd8a7): it signs C for (B, r) whenever r is above its last C round and it is locked on
    (B, r), even if it already signed P in a round above r."""

    def _on_p_quorum(self, agg: Aggregate) -> None:
        if agg.height != self._height:
            return
        lock = self._lock
        changed = False
        if lock is None or agg.round > lock.round:
            if lock is not None and lock.block_hash != agg.block_hash:
                self._stats.extra["unlock"] = self._stats.extra.get("unlock", 0) + 1
            self._safety.lock = agg.copy()
            self._safety.lock_block = self._blocks.get(agg.block_hash)
            changed = True
        lock = self._safety.lock
        assert lock is not None
        if agg.round > self._safety.c_round and lock.key == agg.key:
            self._safety.c_round = agg.round
            self._safety.c_height = agg.height
            self._safety.c_hash = agg.block_hash
            self._persist()
            self._add_own_vote(PHASE_C, agg.block_hash)
        elif changed:
            self._persist()


# The schedule of the issue: every P vote of round 0 arrives after the validators voted in
# round 1 ("next"); round 0's C votes reach one validator only; round 1's P votes reach the
# other three at the end of round 1, after round 0's quorum locked them.
FORK = (
    (("next", "now"), ("next", "later"), ("next", "later"), ("next", "later")),
    (("now", "now"), ("end", "now"), ("end", "now"), ("end", "now")),
)


# --- the checker finds the fork of the old rule --------------------------------------------


def test_the_fork_schedule_is_in_the_ci_space_and_forks_the_old_rule_only() -> None:
    space = Space()
    rep = space.canonical(FORK)
    assert rep in space.schedules()
    plan = space.plan(rep)
    old = run_plan(space.setup(OldRuleCore), plan)
    assert old.safety_violations > 0 and "two blocks committed at height 1" in old.violations
    new = run_plan(space.setup(), plan)
    assert new.safety_violations == 0, new.violations


def test_exhaustive_mode_finds_the_fork_of_the_old_rule() -> None:
    """A sub-space of the CI space (every P vote of rounds 0 and 1 late, to some validators
    at one point and to the others at another) suffices; the full CI space holds 7 forking
    schedules of 1062 for the old rule."""
    space = Space(p_releases=("end", "next"))
    report = exhaustive(space, core_class=OldRuleCore, stop_at_fork=True)
    assert report.forks == 1 and report.first_fork is not None
    # The simulator's rule-5 check flags the old rule before it forks (its C vote after a
    # later P vote), so violations come first and more often than forks.
    assert report.first is not None and report.violations >= report.forks
    # The reproducer replays: the same index gives the same violations.
    again = exhaustive(space, start=report.first_fork["index"], limit=1, core_class=OldRuleCore)
    assert (
        again.first_fork is not None
        and again.first_fork["violations"] == report.first_fork["violations"]
    )


@pytest.mark.parametrize("strategy", ["late_prepare", "split_order"])
def test_seeded_search_finds_the_fork_of_the_old_rule(strategy: str) -> None:
    report = search(strategy, seeds=range(200), core_class=OldRuleCore, stop_at_fork=True)
    assert report.forks == 1 and report.first_fork is not None, report.to_obj()
    seed = report.first_fork["seed"]
    again = search(strategy, seeds=[seed], core_class=OldRuleCore)
    assert (
        again.first_fork is not None
        and again.first_fork["violations"] == report.first_fork["violations"]
    )
    assert search(strategy, seeds=[seed]).violations == 0  # the real core, same schedule


def test_the_cost_model_crypto_changes_no_verdict() -> None:
    """The searches use the cost-model crypto (7x faster here); with real BLS the fork
    schedule forks the old rule alike, at the same heights, and not the real core."""
    space = Space()
    plan = space.plan(space.canonical(FORK))
    for core in (OldRuleCore, Core):
        model = run_plan(space.setup(core, "model"), plan)
        bls = run_plan(space.setup(core, "bls"), plan)
        assert model.violations == bls.violations
        assert (model.committed_heights, model.committed_heights_max) == (
            bls.committed_heights,
            bls.committed_heights_max,
        )
    assert model.safety_violations == 0


def test_relabelling_validators_changes_no_outcome() -> None:
    """The symmetry the exhaustive mode relies on to run one schedule per orbit: images of a
    schedule under permutations of the validators fork (or not) and commit alike."""
    space, labelled = Space(), Space(symmetric=False)
    images = {tuple(tuple(a[p[i]] for i in range(4)) for a in FORK) for p in space._perms()[::5]}
    rng = random.Random(3)
    images |= set(rng.sample(labelled.schedules(), 4))
    for s in sorted(images):
        a = run_plan(space.setup(OldRuleCore), space.plan(s))
        b = run_plan(space.setup(OldRuleCore), space.plan(space.canonical(s)))
        assert (a.safety_violations > 0, a.committed_heights, a.committed_heights_max) == (
            b.safety_violations > 0,
            b.committed_heights,
            b.committed_heights_max,
        ), s


def test_the_twin_space_forks_the_old_rule_too() -> None:
    """With a twin standing in for the fourth validator (both halves on the same side), the
    three honest validators and the twin fork the old rule as four honest ones did."""
    space = Space(twins=True, split_twins=False)
    sched = tuple((*r, r[3]) for r in FORK)  # the twin's second half does what the first does
    rep = space.canonical(sched)
    old = run_plan(space.setup(OldRuleCore), space.plan(rep))
    assert any("two blocks committed" in v for v in old.violations)


# --- the real core: nothing found ----------------------------------------------------------

N4 = Space()
# With the twin: its two halves on different sides in both rounds; P votes at any point and C
# votes on time, or C votes late and P votes on time or in the next round.
TWINS_P = Space(twins=True, c_releases=("now",))
TWINS_C = Space(twins=True, p_releases=("now", "next"))
BATCHES = 4


def _batch(space: Space, b: int) -> tuple[int, int]:
    size = len(space.schedules())
    per = -(-size // BATCHES)
    return b * per, per


@pytest.mark.parametrize("b", range(BATCHES))
def test_exhaustive_n4_finds_nothing_in_the_real_core(b: int) -> None:
    start, per = _batch(N4, b)
    report = exhaustive(N4, start=start, limit=per)
    assert report.schedules > 0
    assert report.violations == 0, report.first
    assert report.commits >= report.schedules  # and blocks commit: the schedules are not vacuous


@pytest.mark.parametrize("space", [TWINS_P, TWINS_C], ids=["p", "c"])
def test_exhaustive_twins_finds_nothing_in_the_real_core(space: Space) -> None:
    report = exhaustive(space)
    assert report.schedules > 0
    assert report.violations == 0, report.first
    assert report.commits >= report.schedules


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("twins", [False, True])
def test_seeded_strategies_find_nothing_in_the_real_core(strategy: str, twins: bool) -> None:
    report = search(strategy, seeds=range(1000, 1030), twins=twins)
    assert report.schedules == 30
    assert report.violations == 0, report.first


def test_ci_space_sizes() -> None:
    """The bound the CI tests run (a change to the space should be deliberate)."""
    assert len(N4.schedules()) == 1062
    assert len(TWINS_P.schedules()) == 360 and len(TWINS_C.schedules()) == 240
    assert len(Space(twins=True).schedules()) == 1800  # the command's default twins space
    assert len(Space(symmetric=False).schedules()) == 9720


# --- the scheduler and the checker ---------------------------------------------------------


def test_held_votes_are_delivered_at_their_release_and_dropped_ones_never() -> None:
    every = frozenset(range(4))
    held_sim = Simulator(Setup(rounds=3).config(Plan((Hold("P", 0, every, 1.625),))))
    held = held_sim.run()
    assert isinstance(held_sim.network, Scheduler) and held_sim.network.held > 0
    dropped_sim = Simulator(
        Setup(rounds=3).config(Plan((Hold("P", 0, every, NEVER), Hold("P", 1, every, NEVER))))
    )
    dropped = dropped_sim.run()
    assert held.safety_violations == dropped.safety_violations == 0
    net = dropped_sim.network
    assert isinstance(net, Scheduler) and net.dropped > 0 and net.held == 0
    # Without any P-quorum in rounds 0 and 1 nothing commits before round 2.
    for chain in dropped_sim.nodes:
        assert all(cert.round >= 2 for _, cert in chain.chain)
    assert dropped.committed_heights >= 1


def test_the_wire_checker_sees_an_honest_validator_vote_twice() -> None:
    sim = Simulator(Setup().config(Plan()))
    net = sim.network
    assert isinstance(net, Scheduler)
    sig = b"\x00" * 96
    net.classify(Aggregate.single(4, 1, 3, 1, b"\x01" * 32, 2, sig).encode())
    net.classify(Aggregate.single(4, 1, 3, 1, b"\x01" * 32, 2, sig).encode())
    assert sim.violations == []
    net.classify(Aggregate.single(4, 1, 3, 1, b"\x02" * 32, 2, sig).encode())
    assert sim.violations and "validator 2 voted for two blocks" in sim.violations[0]


def test_twins_are_not_counted_as_honest_by_the_wire_checker() -> None:
    sim = Simulator(Space(twins=True).setup().config(Plan()))
    net = sim.network
    assert isinstance(net, Scheduler)
    twin = next(nd.index for nd in sim.nodes if not nd.honest)
    assert twin not in net.honest and len(net.honest) == 3
    assert all(nd.link is None for nd in sim.nodes)  # the plan decides who hears what


def test_bad_spaces_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="exceed the bound"):
        Space(rounds=4).schedules()
    with pytest.raises(ValueError, match="unknown adversary"):
        draw_plan("nope", 0, 4, 4)


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_plan_and_same_run(strategy: str) -> None:
    a, b = draw_plan(strategy, 7, 4, 4), draw_plan(strategy, 7, 4, 4)
    assert a == b
    assert any(draw_plan(strategy, s, 4, 4) != a for s in range(8, 12))
    ra, rb = run_plan(Setup(), a), run_plan(Setup(), b)
    assert ra.summary() == rb.summary() and ra.honest_chains == rb.honest_chains


def test_same_schedule_index_same_run() -> None:
    assert Space().schedules() == Space().schedules()
    a = exhaustive(N4, start=500, limit=3)
    b = exhaustive(N4, start=500, limit=3)
    assert a.to_obj() == b.to_obj()
    sa = run_plan(N4.setup(), N4.plan(N4.schedules()[501]))
    sb = run_plan(N4.setup(), N4.plan(N4.schedules()[501]))
    assert sa.chain_digest == sb.chain_digest


def test_the_old_and_new_hooks_leave_the_default_simulator_alone() -> None:
    a = Simulator(SimConfig(nodes=4, rounds=4, seed=3)).run()
    b = Simulator(SimConfig(nodes=4, rounds=4, seed=3, core_class=Core)).run()
    assert a.chain_digest == b.chain_digest and a.safety_violations == 0


# --- the command ---------------------------------------------------------------------------


def test_cli_adversary_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    from accord.cli.main import main

    assert main(["sim", "--adversary", "late_prepare", "--schedules", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    data = json.loads(out[0])
    assert data["schedules"] == 3 and data["violations"] == 0 and data["first_violation"] is None
    assert (
        main(["sim", "--adversary", "exhaustive", "--schedules", "2", "--start", "10", "--twins"])
        == 0
    )
    data = json.loads(capsys.readouterr().out.strip())
    assert data["schedules"] == 2 and data["space_size"] == 1800 and data["twins"] is True
    assert main(["sim", "--adversary", "exhaustive", "--p-releases", "now,soon"]) == 2
    assert "unknown release point" in capsys.readouterr().err
