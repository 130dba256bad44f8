"""Crash safety: a writer is SIGKILLed mid-stream many times; every reopen finds a whole block.

After each kill: the head block, its header, receipts and certificate agree; every block the
writer reported as committed is there (sync=True); and the head's state root equals the root
recomputed from scratch (reference implementation) over the stored state.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from accord.base import merkle
from accord.storage import Store

from .support.merkle_ref import ref_root

WRITER = Path(__file__).parent / "support" / "crash_writer.py"
KILLS = 22


def check_store(path: Path, reported: int) -> int:
    store = Store(path, sync=False)
    try:
        head = store.head()
        if head is None:
            assert reported < 0
            return -1
        height, block_hash = head
        assert height >= reported, f"block {reported} was reported committed but head is {height}"
        block = store.get_block(height)
        assert block is not None and block.hash == block_hash
        assert store.get_block_by_hash(block_hash) == block
        assert store.get_header(height) == block.header
        assert store.get_block(height + 1) is None
        receipts = store.get_receipts(height)
        assert [r.tx_hash for r in receipts] == [t.hash for t in block.txs]
        leaves = [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(block.txs, receipts, strict=True)]
        assert merkle.merkle_root(leaves) == block.header.tx_root
        for i, t in enumerate(block.txs):
            assert store.get_tx_location(t.hash) == (height, i)
        cert = store.get_certificate(height)
        assert cert is not None and cert.block_hash == block_hash and cert.height == height
        if height > 0:
            parent = store.get_header(height - 1)
            assert parent is not None and block.header.parent_hash == parent.hash
        state = dict(store.iter_state())
        assert store.state_root() == block.header.state_root == ref_root(state)
        return height
    finally:
        store.close()


def test_sigkill_during_commits(tmp_path: Path) -> None:
    rng = random.Random(1234)
    path = tmp_path / "store"
    reported = -1
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    for i in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(i)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # the writer is up and has committed a block
            assert first.strip(), "writer failed to start"
            reported = max(reported, int(first))
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
        for line in out.split():
            reported = max(reported, int(line))
        height = check_store(path, reported)
        reported = height
    assert reported > KILLS  # blocks were committed between the kills
