"""Validator-set changes in the Gosig core, driven by the simulator (issue: a consortium that
lives past genesis, deliverable 3). Each height is decided by the set committed state fixed for
it (h + 2); a core never acts for a height beyond what its driver knows, so a set that handed
over cannot certify a later block; a removed validator follows by certificates; an added one
catches up by certificates and then votes."""

from __future__ import annotations

import pytest

from accord.base.types import Block, Certificate, Header, vote_message
from accord.consensus import PHASE_C, BlockFetched, Core, SetKnown, certificate_signers
from accord.consensus.crypto import ReindexedSigner, SubsetCrypto
from accord.sim import SimConfig, Simulator


def _sim(**kw: object) -> Simulator:
    cfg = SimConfig(**{"rounds": 24, "seed": 1, "latency_ms": 20, **kw})  # type: ignore[arg-type]
    return Simulator(cfg)


def _signers_by_height(sim: Simulator) -> dict[int, set[int]]:
    """Pool indices of each committed height's certificate signers (an honest node's chain)."""
    nd = max((n for n in sim.nodes if n.honest), key=lambda n: len(n.chain))
    out = {}
    for block, cert in nd.chain:
        ep = sim.epoch_at(block.height)
        out[block.height] = {ep.members[i] for i in certificate_signers(cert, len(ep.members))}
    return out


def test_adding_a_validator_lets_it_vote_from_the_change_on() -> None:
    sim = _sim(nodes=5, members=[0, 1, 2, 3], set_changes=[(6, [0, 1, 2, 3, 4])])
    r = sim.run()
    assert r.safety_violations == 0, r.violations
    assert r.committed_heights >= 16, r.summary()  # every node, the newcomer too
    signers = _signers_by_height(sim)
    assert all(4 not in s for h, s in signers.items() if h < 6)
    assert any(4 in s for h, s in signers.items() if h >= 6)
    assert all(len(s) >= 3 for h, s in signers.items() if h < 6)  # quorum of 4
    assert all(len(s) >= 4 for h, s in signers.items() if h >= 6)  # quorum of 5
    heads = {tuple(c[:16]) for c in r.honest_chains.values()}
    assert len(heads) == 1


def test_removing_a_byzantine_validator_under_its_attack_is_safe() -> None:
    """An equivocating validator of five is voted out at height 6; it goes on sending, and
    its messages count for nothing after the change (it is no peer of the new set)."""
    for seed in range(3):
        sim = _sim(nodes=5, byzantine=1, strategy="equivocate", seed=seed)
        bad = next(nd.index for nd in sim.nodes if not nd.honest)
        keep = [i for i in range(5) if i != bad]
        sim = _sim(nodes=5, byzantine=1, strategy="equivocate", seed=seed, set_changes=[(6, keep)])
        r = sim.run()
        assert r.safety_violations == 0, r.violations
        assert r.committed_heights >= 12, r.summary()
        assert all(bad not in s for h, s in _signers_by_height(sim).items() if h >= 6)


@pytest.mark.parametrize("partition", ["split", "isolate", "adaptive"])
def test_adding_a_validator_while_a_partition_is_on_is_safe(partition: str) -> None:
    sim = _sim(
        nodes=5,
        members=[0, 1, 2, 3],
        set_changes=[(3, [0, 1, 2, 3, 4])],
        partition=partition,
        loss=0.05,
        drift_ms=10,
    )
    r = sim.run()
    assert r.safety_violations == 0, r.violations
    assert r.heights_after_heal >= 2, r.summary()


def test_replacing_and_shrinking_over_three_sets_with_crashes() -> None:
    """4 -> 7 -> 5 validators (a key rotated away is a member replaced), a crash across a
    handoff, lossy links: one chain, every certificate from the set of its height."""
    sim = _sim(
        nodes=7,
        members=[0, 1, 2, 3],
        set_changes=[(4, [0, 1, 2, 3, 4, 5, 6]), (9, [2, 3, 4, 5, 6])],
        loss=0.05,
        drift_ms=10,
        crashes=[(2, 150, 700)],
        rounds=30,
    )
    r = sim.run()
    assert r.safety_violations == 0, r.violations
    assert r.committed_heights >= 14, r.summary()
    signers = _signers_by_height(sim)
    assert all(s <= {0, 1, 2, 3} for h, s in signers.items() if h < 4)
    assert all(s <= {2, 3, 4, 5, 6} for h, s in signers.items() if h >= 9)


def test_a_set_that_handed_over_cannot_certify_a_later_block() -> None:
    """The old set {0,1,2,3} hands over after height 5 to {0,1,2,4}. Validators 3 (removed)
    and two of the others' old-set keys sign a commit for another height-6 block: a core of
    the old set refuses it (rule 8), however valid the old set's signatures are. Without the
    rule a validator lagging in the old set committed it and forked from the new set."""
    sim = _sim(nodes=5, members=[0, 1, 2, 3], set_changes=[(6, [0, 1, 2, 4])])
    sim.run()
    honest = sim.nodes[1]
    chain = honest.chain
    old = sim.epoch_at(5)
    assert old.last == 5 and len(chain) >= 6
    lagging = Core(
        old.params,
        ReindexedSigner(1, sim.signers[1]),
        SubsetCrypto(sim.crypto, old.members),
        head=(4, chain[3][0].hash),
        head_cert=chain[3][1],
        head_sortition=chain[3][0].header.sortition,
        through=5,
    )
    lagging.handle(SetKnown(5, final=True))
    b5, c5 = chain[4]
    h = b5.header
    fake = Block(
        Header(
            "accord-sim",
            6,
            h.round + 1,
            b5.hash,
            bytes(32),
            bytes(32),
            0,
            3,
            h.time_ms + 1,
            h.sortition,
        ),
        (),
    )
    msg = vote_message("accord-sim", 6, h.round + 1, PHASE_C, fake.hash)
    who = [0, 1, 3]
    sig = sim.crypto.aggregate([sim.signers[i].sign(msg) for i in who])
    bitmap = bytes([sum(1 << i for i in who)])
    forged = Certificate(6, h.round + 1, PHASE_C, fake.hash, bitmap, sig)
    # the forged certificate does verify against the old set: only rule 8 stands in the way
    from accord.consensus import verify_certificate

    verify_certificate(SubsetCrypto(sim.crypto, old.members), "accord-sim", forged, 3)
    commits = []
    for ev in (BlockFetched(fake, forged), BlockFetched(b5, c5), BlockFetched(fake, forged)):
        commits += [a for a in lagging.handle(ev) if type(a).__name__ == "Commit"]
    assert [a.block.height for a in commits] == [5]
    st = lagging.status()
    assert st.done and st.height == 6
    assert st.stats["beyond_set"] >= 1


def test_a_core_waits_at_a_height_whose_set_is_not_known_yet() -> None:
    """Execution lags a commit: the core at head + 1 beyond ``through`` neither leads nor
    votes; once told, it goes on."""
    sim = _sim(nodes=4, rounds=4)
    ep = sim.epochs[0]
    core = Core(ep.params, sim.signers[0], sim.crypto, head=(0, sim.genesis_hash), through=0)
    assert core.handle(SetKnown(0)) == []
    for t in range(0, 3 * ep.params.round_ms, 7):
        from accord.consensus import Tick

        assert core.handle(Tick(t)) == []  # no ticket, no build, no vote
    out = core.handle(SetKnown(2))
    tick = core.handle(Tick(3 * ep.params.round_ms + 1))
    assert out or tick  # it leads or speaks again
    assert not core.status().done


def test_bad_set_configurations_are_refused() -> None:
    from accord.base.errors import AccordError

    with pytest.raises(AccordError, match="once"):
        _sim(nodes=4, set_changes=[(3, [0, 0, 1])])
    with pytest.raises(AccordError, match="pool"):
        _sim(nodes=4, set_changes=[(3, [0, 1, 9])])
    with pytest.raises(AccordError, match="f < n/3"):
        sim = _sim(nodes=4, byzantine=1, strategy="equivocate", seed=0)
        bad = next(nd.index for nd in sim.nodes if not nd.honest)
        trio = [bad, (bad + 1) % 4, (bad + 2) % 4]
        _sim(nodes=4, byzantine=1, strategy="equivocate", seed=0, set_changes=[(3, trio)])


def test_the_sim_command_runs_set_changes(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from accord.cli.main import main

    argv = ["sim", "--nodes", "5", "--members", "0,1,2,3", "--set-change", "5:0,1,2,3,4"]
    assert main([*argv, "--set-change", "9:1,2,3,4", "--rounds", "14", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["safety_violations"] == 0 and data["committed_heights"] >= 10
    assert main(["sim", "--nodes", "4", "--set-change", "3:0,0,1", "--json"]) != 0
    assert "once" in capsys.readouterr().err
