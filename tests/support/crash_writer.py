"""Commits blocks with state writes forever (sync=True); the crash test SIGKILLs it.

Usage: python tests/crash_writer.py STORE_DIR SEED. After each commit returns it prints the
committed height on stdout, so the test knows which blocks must survive the kill.
"""

from __future__ import annotations

import random
import sys

from accord.base import merkle
from accord.base.crypto.ed25519 import AccountKey
from accord.base.types import ZERO_HASH, Block, Certificate, Header, Receipt, Tx, body_hash
from accord.storage import Store


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    key = AccountKey.from_name("crash-writer")
    store = Store(path, map_size=1 << 20, sync=True)  # small map: growth happens under kills too
    while True:
        head = store.head()
        height = 0 if head is None else head[0] + 1
        parent = ZERO_HASH if head is None else head[1]
        writes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randint(1, 40)):
            k = b"acct/%d" % rng.randint(0, 400)
            writes[k] = None if rng.random() < 0.15 else rng.randbytes(rng.randint(0, 64))
        txs = tuple(
            Tx.create(
                key,
                chain_id="crash",
                contract="c",
                method="m",
                args={"h": height},
                nonce=height * 4 + i,
            )
            for i in range(rng.randint(0, 3))
        )
        receipts = [Receipt(t.hash, True, i) for i, t in enumerate(txs)]
        update = store.compute_state_update(writes)
        header = Header(
            chain_id="crash",
            height=height,
            round=0,
            parent_hash=parent,
            tx_root=merkle.merkle_root(
                [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(txs, receipts, strict=True)]
            ),
            state_root=update.root,
            tx_count=len(txs),
            proposer=0,
            time_ms=height,
            body_hash=body_hash(txs),
        )
        block = Block(header, txs)
        cert = Certificate(height, 0, 2, block.hash, b"\x07", b"sig")
        store.commit_block(block, cert, receipts, writes, update)
        print(height, flush=True)


if __name__ == "__main__":
    main()
