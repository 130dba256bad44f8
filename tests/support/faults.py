"""Helpers for the node, devnet and example tests: real validator processes on loopback.

``FaultNet`` wraps :class:`accord.devnet.Devnet` with the waits the fault tests need (heights,
convergence, "every committed transaction is on every validator"). Everything it starts is
stopped by :meth:`FaultNet.close` (the tests call it in ``finally``). Rounds are short
(``round_ms`` 500) so that a whole fault scenario fits in well under a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from accord.base.errors import AccordError
from accord.base.keys import load_validator_key
from accord.base.metrics import parse_text
from accord.client import AsyncClient
from accord.devnet import Devnet, Load, ensure_network
from accord.node.config import NodeConfig

ROUND_MS = 500
STAGE2_MS = 250


async def until(
    cond: Callable[[], Awaitable[bool]], timeout: float, what: str, poll: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(poll)


class FaultNet:
    """A 4-validator devnet in ``root`` with helpers for fault scenarios."""

    def __init__(self, root: Path, *, validators: int = 4, accounts: int = 40) -> None:
        self.genesis = ensure_network(
            root, validators=validators, round_ms=ROUND_MS, stage2_ms=STAGE2_MS, accounts=accounts
        )
        self.net = Devnet(root, self.genesis)
        self.accounts = accounts
        self.load: Load | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def urls(self) -> list[str]:
        return [v.api_url for v in self.net.validators]

    async def start(self, which: list[int] | None = None) -> None:
        for i in which if which is not None else range(len(self.net.validators)):
            self.net.start(i)
        await self.net.wait_ready(60.0, which)

    async def heights(self) -> list[int | None]:
        return [None if s is None else int(s["height"]) for s in await self.net.statuses()]

    async def wait_height(self, which: list[int], height: int, timeout: float = 40.0) -> None:
        async def ok() -> bool:
            hs_ = await self.heights()
            return all((hs_[i] or 0) >= height for i in which)

        await until(ok, timeout, f"validators {which} at height {height}")

    async def start_load(self, rate: float, watch: int = 0) -> Load:
        self.load = Load(self.genesis, self.urls, rate=rate, accounts=self.accounts)
        await self.load.init_nonces()
        self._tasks = [
            asyncio.create_task(self.load.run()),
            asyncio.create_task(self.load.watch(self.urls[watch])),
        ]
        await asyncio.sleep(0.5)  # the watcher's stream is open before transactions commit
        return self.load

    async def stop_load(self) -> None:
        if self.load is not None:
            self.load.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):  # stopping; failures are checked by the tests
                await t
        self._tasks = []

    async def converged(self, which: list[int], timeout: float = 40.0) -> tuple[int, str]:
        """Wait until ``which`` report one head (height and hash); return it."""
        result: dict[str, tuple[int, str]] = {}

        async def same() -> bool:
            sts = await self.net.statuses()
            if any(sts[i] is None for i in which):
                return False
            heads = {(int(sts[i]["height"]), sts[i]["head_hash"]) for i in which}  # type: ignore[index]
            if len(heads) == 1:
                result["head"] = heads.pop()
                return True
            return False

        await until(same, timeout, f"validators {which} to converge")
        return result["head"]

    async def block_hashes(self, i: int, heights: range) -> list[str]:
        async with AsyncClient(self.urls[i]) as c:
            return [(await c.block(h)).hash.hex() for h in heights]

    async def all_committed_everywhere(self, tx_hashes: set[bytes], which: list[int]) -> None:
        """Every hash is committed on every validator in ``which`` (checked one by one)."""
        for i in which:
            async with AsyncClient(self.urls[i]) as c:
                for h in tx_hashes:
                    st = await c.tx(h, proof=False)
                    assert st.committed, f"tx {h.hex()[:12]} not committed on validator {i}"

    async def metrics(self, i: int) -> dict[str, float]:
        async with AsyncClient(self.urls[i]) as c:
            return parse_text(await c.metrics())

    def p2p_url(self, i: int) -> str:
        cfg = NodeConfig.load(self.net.validators[i].dir)
        scheme = "https" if cfg.p2p_tls is not None else "http"
        return f"{scheme}://127.0.0.1:{cfg.port}/accord/p2p"

    def secret(self, i: int) -> bytes:
        v = self.net.validators[i]
        return load_validator_key(v.dir / NodeConfig.load(v.dir).validator_key)

    async def close(self) -> None:
        await self.stop_load()
        self.net.stop()


def client_error(e: BaseException) -> bool:
    return isinstance(e, (AccordError, OSError, asyncio.TimeoutError))
