"""The chain thread's scheduling policy (accord.consensus.jobs), shared by node and simulator.

Each rule of the module is tried to break: a stale build must never run, a committed height's
validation must never run, the newest round's best ticket goes first, a worse ticket waits a
round behind a valid better one but is never refused, and the order is a function of the
inputs only (two queues fed the same jobs in different arrival orders agree).
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base.types import Block, Header
from accord.consensus import BuildBlock, sortition_value
from accord.consensus.jobs import ChainJobs


def _block(height: int, rnd: int, seed: int) -> Block:
    sortition = hashlib.sha256(b"ticket" + seed.to_bytes(4, "big")).digest() * 3
    h = Header(
        chain_id="t",
        height=height,
        round=rnd,
        parent_hash=bytes(32),
        tx_root=bytes(32),
        state_root=hashlib.sha256(seed.to_bytes(4, "big")).digest(),
        tx_count=0,
        proposer=seed % 4,
        time_ms=0,
        sortition=sortition,
        body_hash=bytes(32),
    )
    return Block(h, ())


def _build(height: int, rnd: int) -> BuildBlock:
    return BuildBlock(height, rnd, bytes(32), 0, b"s" * 96)


def test_builds_go_first_and_stale_ones_never_run() -> None:
    jobs = ChainJobs(1.0)
    jobs.validate(_block(5, 3, 1), 0.0)
    jobs.build(_build(5, 2))  # the core has moved to round 3: stale
    jobs.build(_build(5, 3))
    job, _ = jobs.next(committed=4, height=5, round=3, now=0.0)
    assert isinstance(job, BuildBlock) and job.round == 3
    assert jobs.stale_builds == 1
    job, _ = jobs.next(committed=4, height=5, round=3, now=0.0)
    assert isinstance(job, Block)
    assert jobs.next(committed=4, height=5, round=3, now=0.0) == (None, None)


def test_committed_heights_are_dropped() -> None:
    jobs = ChainJobs(1.0)
    jobs.validate(_block(5, 3, 1), 0.0)
    jobs.validate(_block(6, 4, 2), 0.0)
    job, _ = jobs.next(committed=5, height=6, round=4, now=0.0)
    assert isinstance(job, Block) and job.height == 6
    assert len(jobs) == 0


def test_a_worse_ticket_waits_one_round_behind_a_valid_better_one_then_runs() -> None:
    a, b = _block(5, 3, 1), _block(5, 3, 2)
    better, worse = sorted((a, b), key=lambda x: sortition_value(x.header.sortition))
    jobs = ChainJobs(1.0)
    jobs.found_valid(better)
    jobs.validate(worse, 10.0)
    job, wait = jobs.next(committed=4, height=5, round=3, now=10.2)
    assert job is None and wait is not None and abs(wait - 0.8) < 1e-9
    job, wait = jobs.next(committed=4, height=5, round=3, now=11.0)
    assert job is worse and wait is None  # deferred, never refused


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(5, 7), st.integers(0, 6), st.integers(0, 50)),
        min_size=1,
        max_size=12,
        unique=True,
    ),
    st.randoms(use_true_random=False),
)
def test_order_is_newest_round_best_ticket_whatever_the_arrival_order(
    specs: list[tuple[int, int, int]], rng: object
) -> None:
    blocks = [_block(h, r, s) for h, r, s in specs]
    shuffled = list(blocks)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    orders = []
    for feed in (blocks, shuffled):
        jobs = ChainJobs(1.0)
        for b in feed:
            jobs.validate(b, 0.0)
        out = []
        while True:
            job, wait = jobs.next(committed=5, height=6, round=6, now=0.0)
            assert wait is None  # nothing found valid: nothing deferred
            if job is None:
                break
            assert isinstance(job, Block)
            out.append(job.hash)
        orders.append(out)
    assert orders[0] == orders[1]
    live = [b for b in blocks if b.height > 5]
    want = sorted(
        live, key=lambda b: (-b.header.round, sortition_value(b.header.sortition), b.hash)
    )
    assert orders[0] == [b.hash for b in want]
