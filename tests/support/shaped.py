"""In-process validators whose links cross shaping relays (accord.net.linkshaper), all on one
event loop in a thread of its own: the test drives them from its own thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from accord.base.genesis import ConsensusParams, Genesis
from accord.devnet import free_ports
from accord.net.linkshaper import LinkProfile, ShapedNetwork
from accord.node import Node
from accord.node.config import init_network

T = TypeVar("T")


class ShapedNodes:
    def __init__(self, root: Path, profile: LinkProfile, n: int = 4, seed: int = 1) -> None:
        ports = free_ports(2 * n)
        self.genesis: Genesis = init_network(
            root,
            validators=n,
            deterministic=True,
            demo_accounts=8,
            genesis_time_ms=int(time.time() * 1000),
            consensus=ConsensusParams(round_ms=500, stage2_ms=250),
            ports=ports[:n],
            api_ports=ports[n:],
        )
        self.shaper = ShapedNetwork(
            {i: ("127.0.0.1", ports[i]) for i in range(n)},
            profile,
            seed=seed,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="shaped", daemon=True)
        self.thread.start()
        self.nodes: list[Node] = []
        try:
            self.run(self.shaper.start())
            for i in range(n):
                node = Node.from_dir(root / f"validator-{i}", addresses=self.shaper.dial_map(i))
                self.nodes.append(node)
                self.run(node.start())
        except BaseException:
            self.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):  # stop the rest whatever one did
                self.run(node.stop(), 30)
        try:
            self.run(self.shaper.stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
