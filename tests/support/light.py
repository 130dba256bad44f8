"""An honest one-validator ledger behind a proxy that tampers with the API's JSON answers: the light client's lying-node tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .api import ALICE, BOB, ServedNode, transfer

Doc = dict[str, Any]
Mutator = Callable[[str, Doc], Doc]


class Ledger:
    def __init__(self, served: ServedNode) -> None:
        self.served = served
        self.genesis = served.node.genesis
        # Block 1: three transfers (so inclusion proofs have siblings); blocks 2-4: one each.
        self.txs = [transfer(ALICE, i, BOB.address, 10 + i) for i in range(3)]
        for tx in self.txs:
            served.submit_direct(tx)
        served.commit()
        for i in range(3, 6):
            tx = transfer(ALICE, i, BOB.address, 10 + i)
            self.txs.append(tx)
            served.submit_direct(tx)
            served.commit()
        self.target = self.txs[1]  # in block 1, index 1
        self.nonce = len(self.txs)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    served = ServedNode(tmp_path_factory.mktemp("light-honest"))
    try:
        yield Ledger(served)
    finally:
        served.close()


class Proxy:
    """Forwards GETs to the honest node and passes JSON answers through ``mutate``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.mutate: Mutator = lambda path, doc: doc
        self.garbage_on: str | None = None
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        assert self.runner is not None and self.session is not None
        await self.session.close()
        await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        assert self.session is not None
        upstream = self.ledger.served.url + request.rel_url.raw_path_qs  # %2F stays encoded
        async with self.session.get(upstream) as resp:
            body = await resp.read()
            status = resp.status
            ctype = resp.headers.get("Content-Type", "")
        path = request.rel_url.path
        if self.garbage_on is not None and path.startswith(self.garbage_on):
            return web.Response(
                body=b'{"headers": [{"header": {"raw": "zz"}}], "head_height": 1}',
                content_type="application/json",
            )
        if status == 200 and ctype.startswith("application/json"):
            doc = self.mutate(path, json.loads(body))
            return web.json_response(doc)
        return web.Response(body=body, status=status, content_type=ctype.split(";")[0] or None)


@pytest.fixture(scope="module")
def proxy(ledger: Ledger) -> Iterator[Proxy]:
    p = Proxy(ledger)
    ledger.served.run(p.start())
    try:
        yield p
    finally:
        ledger.served.run(p.stop())
