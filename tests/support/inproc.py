"""Four (or N) in-process validators on a private event-loop thread, for tests that drive them
with blocking clients: real Gosig, BLS certificates, LMDB and loopback sockets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from accord.base.genesis import ConsensusParams, Genesis
from accord.devnet import free_ports
from accord.node import Node
from accord.node.config import init_network

T = TypeVar("T")


class ThreadedNetwork:
    """``customize`` may rewrite the genesis before any node reads it (every node loads the
    same file, so they agree on its hash)."""

    def __init__(
        self,
        root: Path,
        *,
        validators: int = 4,
        round_ms: int = 400,
        stage2_ms: int = 200,
        customize: Callable[[Genesis], Genesis] | None = None,
        name: str = "test-net",
        node_kw: dict[str, Any] | None = None,
        prepare: Callable[[Path], None] | None = None,
    ) -> None:
        """``prepare(root)`` runs after the folders are written and before any node is
        built (to edit a validator's node.json, say)."""
        ports = free_ports(2 * validators)
        genesis = init_network(
            root,
            validators=validators,
            genesis_time_ms=int(time.time() * 1000),
            deterministic=True,
            ports=ports[:validators],
            api_ports=ports[validators:],
            consensus=ConsensusParams(round_ms=round_ms, stage2_ms=stage2_ms),
        )
        if customize is not None:
            genesis = customize(genesis)
            genesis.save(root / "genesis.json")
        self.genesis: Genesis = genesis
        self.root = root
        if prepare is not None:
            prepare(root)
        self.urls = [f"http://127.0.0.1:{p}" for p in ports[validators:]]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        self.nodes = [
            Node.from_dir(root / f"validator-{i}", **(node_kw or {})) for i in range(validators)
        ]
        for n in self.nodes:
            self.run(n.start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        for n in self.nodes:
            self.run(n.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def wait_until(pred: Callable[[], object], timeout: float) -> bool:
    """Poll ``pred`` (from a test's thread) until it is true or ``timeout`` seconds passed;
    whether it became true."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
