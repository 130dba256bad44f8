"""A validator that prunes: old blocks and state versions go, recent ones and snapshots stay,
pruned heights say so, the store still passes the full check and the node restarts on it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from accord.node import statesync
from accord.storage import snapshot as snap
from accord.storage.store import Pruned

from .support.inproc import ThreadedNetwork


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_pruning_validator_keeps_what_it_must(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statesync, "PRUNE_EVERY", 4)
    net = ThreadedNetwork(tmp_path / "net", round_ms=500, stage2_ms=250, name="prune-net")
    try:
        node = net.nodes[0]
        node.config.prune_keep = 6
        node.config.snapshot_interval = 5
        _wait(lambda: node.store.base() >= 10, 150, "pruning to pass height 10")
        base = node.store.base()
        head = node.chain.head()[0]
        assert head - base < 6 + statesync.PRUNE_EVERY
        assert node.store.get_block(base - 1) is None and node.store.get_block(base) is not None
        assert snap.available(node.ops.dir), "snapshots are still built and kept"
        # Pruned heights are a clear error, over HTTP and for an embedded application.
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{net.urls[0]}/v1/blocks/1", timeout=10)
        assert e.value.code == 404 and "pruned" in json.loads(e.value.read())["error"]["message"]

        async def first() -> Any:
            async for item in node.blocks(from_height=1):
                return item

        with pytest.raises(Pruned):
            net.run(first())
        assert net.run(_first_from(node, base))[0].height == base
        # The stopped, pruned folder passes the full check, and the node starts on it again.
        net.run(node.stop())
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "accord.cli.main",
                "node",
                str(net.root / "validator-0"),
                "--verify",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = json.loads(p.stdout.strip().splitlines()[-1])
        assert p.returncode == 0 and report["ok"] and report["base"] >= base, p.stdout + p.stderr
        net.run(node.start())
        _wait(
            lambda: node.chain.head()[0] > report["height"] + 2,
            60,
            "the pruned node to commit again",
        )
    finally:
        net.close()


async def _first_from(node: Any, height: int) -> Any:
    async for item in node.blocks(from_height=height):
        return item
    await asyncio.sleep(0)
