"""Certified chains of state-writing blocks built straight into a Store (snapshot, pruning and backup tests)."""

from __future__ import annotations

import random

from accord.base import merkle
from accord.base.crypto import bls
from accord.base.types import ZERO_HASH, Block, Header
from accord.benches.light import bench_genesis, certify
from accord.storage import Store

SECRETS = [bls.demo_secret(f"snap-test-{i}") for i in range(4)]


GENESIS = bench_genesis(SECRETS)


KEYS = GENESIS.validator_keys()


def make_chain(
    store: Store, heights: int, entries: int, rng: random.Random, *, churn: int = 20
) -> None:
    """Genesis with ``entries`` state entries, then ``heights`` certified blocks that each
    rewrite, add and delete a few entries."""
    keys = [b"k/%d" % i for i in range(entries)]
    parent = ZERO_HASH
    live = set(keys)
    for h in range(heights + 1):
        if h == 0:
            writes: dict[bytes, bytes | None] = {k: b"v0/" + k for k in keys}
        else:
            writes = {rng.choice(keys): b"v%d/%d" % (h, rng.randrange(10**6)) for _ in range(churn)}
            gone = rng.choice(sorted(live))
            writes[gone] = None
            writes[b"new/%d" % h] = b"n"
        for k, v in writes.items():
            (live.discard if v is None else live.add)(k)
        update = store.compute_state_update(writes)
        header = Header(
            GENESIS.chain_id, h, 0, parent, merkle.EMPTY_TX_ROOT, update.root, 0, 0, 1000 * h
        )
        cert = certify(header, SECRETS, [0, 1, 2]) if h else None
        store.commit_block(Block(header, ()), cert, [], writes, update)
        parent = header.hash
