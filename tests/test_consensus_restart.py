"""The store may lag the persisted safety state: a crash that loses block commits in flight
(``sync: false``, or a commit still running on the chain thread), or the node rebuilding its
core from the store. A validator that comes back below a height it voted at must not lock
or vote there (rule 6): the old core let a delayed quorum of the lower height replace its
lock of the higher one, and four honest validators forked. Found by a hostile review."""

from __future__ import annotations

from accord.consensus import PHASE_C, PHASE_P, Aggregate, BlockFetched, Params, decode_message

from .support.consensus import GENESIS_HASH, Net, is_prop


def test_a_validator_restarted_below_its_own_votes_cannot_fork_four_honest_ones() -> None:
    """Height 2: C-quorum {0, 1, 3} for B, validator 1 commits it. Validators 0 and 3 lose
    power with their stores back at genesis and their safety states intact, and a delayed
    height-1 P-quorum reaches them after the restart."""
    N = 4
    params = Params(chain_id="c", n=N, round_ms=100, stage2_ms=50, expected_leaders=4.0)
    net = Net(params, N, honest=[0, 1, 2, 3])

    def everyone(f, t, m):
        return True

    net.tick(1)
    net.deliver(is_prop())
    net.tick(60)
    # height-1 P-quorum broadcasts: deliver all, but keep copies of the messages to 0 and 3 "in flight"
    net.deliver(everyone)
    K1 = net.commits[0][0]
    assert all(net.commits[i] and net.commits[i][0].hash == K1.hash for i in range(4))
    p1_quorum = next(
        p
        for _, p in net.seen
        if isinstance(m := decode_message(p, N, 1 << 22), Aggregate)
        and m.height == 1
        and m.phase == PHASE_P
        and m.signers >= 3
    )
    c1_quorum = next(
        p
        for _, p in net.seen
        if isinstance(m := decode_message(p, N, 1 << 22), Aggregate)
        and m.height == 1
        and m.phase == PHASE_C
        and m.signers >= 3
    )
    net.pending.clear()

    net.tick(101)
    net.deliver(is_prop())
    net.tick(160)
    B = net.cores[1].status().p_hash
    assert all(net.cores[i].status().p_hash == B for i in range(4))
    net.deliver(lambda f, t, m: isinstance(m, Aggregate) and m.phase == PHASE_P and t in (0, 1, 3))
    net.deliver(lambda f, t, m: isinstance(m, Aggregate) and m.phase == PHASE_C and t == 1)
    assert [b.hash for b in net.commits[1] if b.height == 2] == [B]
    net.pending.clear()
    for v in (
        0,
        3,
    ):  # power loss: the store lost K1's (non-durable) commit, the safety state survived
        net.restart(v, head=(0, GENESIS_HASH))
        net.tick(201, who=[v])
        net.inject(1, v, p1_quorum)  # the delayed honest broadcast of height 1's P-quorum
        net.inject(1, v, c1_quorum)
        for i, fb in list(net.fetches):
            if i == v and fb.block_hash == K1.hash:
                net.run(v, BlockFetched(K1, None))
    net.tick(201, who=[2])

    def keep(f, t, m):
        return f in (0, 2, 3) and t in (0, 2, 3)

    net.deliver(keep)
    net.tick(260, who=[0, 2, 3])
    net.deliver(keep)
    net.tick(290, who=[0, 2, 3])
    net.deliver(keep)
    committed = {b.hash for i in range(4) for b in net.commits[i] if b.height == 2}
    assert len(committed) <= 1, "two blocks committed at height 2"
    assert net.honest_equivocations() == {}
