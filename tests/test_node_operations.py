"""Operations an embedding application needs: resuming the block feed at a height, and a clean
stop on SIGTERM in background-thread mode (systemd, Docker and process managers send it)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from accord.base.types import Tx
from accord.devnet import free_ports
from accord.node import Node
from accord.node.config import demo_account, init_network

pytestmark = pytest.mark.timeout(180)


def _network(root: Path) -> Path:
    ports = free_ports(2)
    init_network(
        root,
        validators=1,
        genesis_time_ms=int(time.time() * 1000),
        deterministic=True,
        ports=ports[:1],
        api_ports=ports[1:],
        demo_accounts=2,
    )
    return root / "validator-0"


def test_blocks_from_height_replays_what_was_missed_then_follows(tmp_path: Path) -> None:
    home = _network(tmp_path / "net")
    alice, bob = demo_account(0), demo_account(1)

    async def main() -> None:
        node = Node.from_dir(home)
        await node.start()
        try:
            while node.store.head()[0] < 4:  # an application that was down for these
                await asyncio.sleep(0.05)
            seen: list[int] = []
            tx = Tx.create(
                alice,
                chain_id=node.genesis.chain_id,
                contract="token",
                method="transfer",
                args={"to": bob.address, "amount": 1},
                nonce=0,
            )
            got_tx = False
            async for block, receipts in node.blocks(from_height=2):
                seen.append(block.height)
                assert len(receipts) == len(block.txs)
                if block.height == 3:
                    node.submit(tx)  # committed later: it arrives through the live feed
                if any(t.hash == tx.hash for t in block.txs):
                    got_tx = True
                if got_tx and len(seen) >= 6:
                    break
            assert seen == list(range(2, 2 + len(seen)))  # in order, no gap, no repeat
            assert got_tx
        finally:
            await node.stop()

    asyncio.run(main())


def test_sigterm_stops_a_background_node_cleanly(tmp_path: Path) -> None:
    home = _network(tmp_path / "net")
    script = textwrap.dedent(f"""
        import logging, sys, time
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from accord.node import Node
        node = Node.from_dir({str(home)!r})
        node.start_background()
        print("ready", flush=True)
        time.sleep(120)  # a synchronous host (a Flask app) doing its own work
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(1.0)  # a few blocks commit
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode()
    assert "validator-0 stopped" in text, text[-2000:]  # before: the process died with no stop
    assert proc.returncode == -signal.SIGTERM  # and it still ends as SIGTERM ends a process
    assert (home / "data" / "node.lock").read_text() == ""  # released after LMDB closed


def test_the_explorer_indexes_committed_blocks_from_memory(tmp_path: Path) -> None:
    """The node hands each committed block to its explorer index (ExplorerIndex.offer): the
    index covers a new transaction without reading its block back from the store."""
    home = _network(tmp_path / "net")
    alice, bob = demo_account(0), demo_account(1)

    async def main() -> None:
        node = Node.from_dir(home)
        await node.start()
        try:
            store = node.store
            read: list[int] = []
            real = store.get_blocks

            def spy(start: int, count: int) -> list[Any]:
                out = real(start, count)
                read.extend(h for h, *_ in out)
                return out

            store.get_blocks = spy  # type: ignore[method-assign]
            tx = Tx.create(
                alice,
                chain_id=node.genesis.chain_id,
                contract="token",
                method="transfer",
                args={"to": bob.address, "amount": 1},
                nonce=0,
            )
            node.submit(tx)
            index = node.api.api.explorer.index  # type: ignore[union-attr]
            for _ in range(400):
                refs = index.txs("c:token", 10)
                if any(r.tx_hash == tx.hash.hex() for r in refs):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the transfer never reached the explorer index")
            height = next(r.height for r in refs if r.tx_hash == tx.hash.hex())
            assert height not in read  # it came from the offer, not from the store
        finally:
            await node.stop()

    asyncio.run(main())
