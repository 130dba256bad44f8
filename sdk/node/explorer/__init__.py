"""The web explorer and operator dashboard every node serves at ``/explorer/``.

Two halves:

* **Static assets** (``static/``: one HTML page, one bundled script, one style sheet) built
  from ``explorer/src`` by ``scripts/dev explorer-build`` and shipped in the package, so a node
  serves them offline with nothing fetched from elsewhere. The page talks only to this node's
  API and checks what it shows: a transaction's inclusion proof and its block's certificate are
  verified *in the browser* against the genesis validators' BLS keys.
* **Explorer endpoints** of the client API (their :class:`accord.base.wire.Route` entries are
  :data:`ROUTES`, which :mod:`accord.node.api` adds to its table): a paginated block list,
  search, recent transactions of an account or a contract, the validators' recent activity,
  the oracle's requests and the shielded pool's public facts.

Bounds: every list is one page of at most :data:`accord.base.wire.EXPLORER_MAX_LIMIT` items and a
page reads at most that many headers; the per-account/contract/oracle index is in memory,
covers the blocks committed since the node started plus at most ``backfill_blocks`` before,
and holds a bounded number of subjects and entries (least recently touched forgotten first).
It is a view for people: nothing in consensus reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from accord.base import wire as s
from accord.base.errors import InvalidRequest, NotFound
from accord.base.types import Block, Receipt

if TYPE_CHECKING:
    from accord.node.api import ClientApi

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
"""The built page (index.html, app.js, style.css), part of the package data."""

_LIMIT = {"type": "integer", "minimum": 1, "maximum": s.EXPLORER_MAX_LIMIT}
_ADDRESS = {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"}


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False) -> s.Param:
    return s.Param(name=name, where=where, schema_=schema, required=required)  # type: ignore[arg-type]


ROUTES: list[s.Route] = [
    s.Route(
        method="get",
        path="/v1/blocks",
        summary="Block summaries, newest first, one page below a height",
        operation_id="listBlocks",
        response="BlockListResponse",
        errors=[422],
        params=[
            _param("before", "query", {"type": "integer", "minimum": 1, "maximum": 2**64 - 1}),
            _param("limit", "query", _LIMIT),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/search",
        summary="What a height, hash, address or contract name names",
        operation_id="search",
        response="SearchResponse",
        errors=[422],
        params=[_param("q", "query", {"type": "string", "minLength": 1, "maxLength": 128}, True)],
    ),
    s.Route(
        method="get",
        path="/v1/accounts/{address}/txs",
        summary="Recent transactions of an account (explorer index)",
        operation_id="accountTxs",
        response="TxListResponse",
        errors=[400, 422],
        params=[_param("address", "path", _ADDRESS, True), _param("limit", "query", _LIMIT)],
    ),
    s.Route(
        method="get",
        path="/v1/contracts/{contract}/txs",
        summary="Recent transactions calling a contract (explorer index)",
        operation_id="contractTxs",
        response="TxListResponse",
        errors=[404, 422],
        params=[
            _param("contract", "path", {"type": "string", "maxLength": 64}, True),
            _param("limit", "query", _LIMIT),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/explorer/chain",
        summary="Recent blocks (for rate charts) and each validator's recent votes",
        operation_id="explorerChain",
        response="ChainSummaryResponse",
        errors=[422],
        params=[_param("limit", "query", _LIMIT)],
    ),
    s.Route(
        method="get",
        path="/v1/explorer/oracle",
        summary="Recent MPC oracle requests and their status (explorer index)",
        operation_id="explorerOracle",
        response="OracleListResponse",
        errors=[422],
        params=[_param("limit", "query", _LIMIT)],
    ),
    s.Route(
        method="get",
        path="/v1/explorer/shielded",
        summary="The shielded pool's public facts: note count, root, spent nullifiers",
        operation_id="explorerShielded",
        response="ShieldedResponse",
        errors=[422],
        params=[_param("limit", "query", _LIMIT)],
    ),
    s.Route(
        method="get",
        path="/explorer/",
        summary="The web explorer (HTML)",
        operation_id="explorerPage",
        response=None,
        content_type="text/html",
    ),
    s.Route(
        method="get",
        path="/explorer/{file}",
        summary="The web explorer's static assets",
        operation_id="explorerAsset",
        response=None,
        content_type="application/octet-stream",
        errors=[404],
        params=[_param("file", "path", {"type": "string"}, True)],
    ),
]


# --- the index --------------------------------------------------------------------------------


@dataclass
class IndexLimits:
    backfill_blocks: int = 2000
    """Blocks below the head indexed when the node starts (older history is not indexed)."""
    max_subjects: int = 50_000
    """Accounts and contracts tracked (least recently touched forgotten first)."""
    per_subject: int = 100
    """Transactions kept per account or contract (the newest)."""
    oracle_requests: int = 1000
    shielded_recent: int = 200
    per_pass: int = 500
    """Blocks indexed per pass, so a long catch-up yields between passes."""


class ExplorerIndex:
    """Bounded, in-memory indexes fed from committed blocks in height order (gap-free: each
    pass reads the store from the next unindexed height, so a dropped notification costs
    nothing). Thread-safe: passes run in a worker thread, readers on the event loop."""

    def __init__(self, store: Any, limits: IndexLimits | None = None) -> None:
        self.store = store
        self.limits = limits or IndexLimits()
        self._lock = threading.Lock()
        self._subjects: OrderedDict[str, deque[s.TxRef]] = OrderedDict()
        self._oracle: OrderedDict[bytes, s.OracleRequestModel] = OrderedDict()
        self._shielded: deque[dict[str, Any]] = deque(maxlen=self.limits.shielded_recent)
        self.nullifiers_seen = 0
        self.first: int | None = None
        self.next: int | None = None

    @property
    def indexed_from(self) -> int:
        return self.first if self.first is not None else 0

    @property
    def indexed_to(self) -> int:
        return self.next - 1 if self.next is not None else -1

    def catch_up(self) -> int:
        """Index committed blocks not yet indexed (at most ``per_pass``); how many."""
        head = self.store.head()
        if head is None:
            return 0
        if self.next is None:
            start = max(1, head[0] - self.limits.backfill_blocks + 1, self.store.base())
            self.first, self.next = start, start
        done = 0
        while self.next <= head[0] and done < self.limits.per_pass:
            block = self.store.get_block(self.next)
            if block is None:  # pruned under us: skip to what is still stored
                self.next = max(self.next + 1, self.store.base())
                continue
            self.add(block, self.store.get_receipts(self.next))
            self.next += 1
            done += 1
        return done

    def add(self, block: Block, receipts: list[Receipt]) -> None:
        with self._lock:
            for i, (tx, r) in enumerate(zip(block.txs, receipts, strict=False)):
                ref = s.TxRef(
                    tx_hash=tx.hash.hex(),
                    height=block.height,
                    index=i,
                    contract=tx.contract,
                    method=tx.method,
                    sender=tx.sender.hex(),
                    ok=r.ok,
                    gas_used=r.gas_used,
                )
                parties = {"a:" + tx.sender.hex(), "c:" + tx.contract}
                for e in r.events:
                    parties.add("c:" + e.contract)
                    for v in e.data.values():
                        if type(v) is bytes and len(v) == 20:
                            parties.add("a:" + v.hex())
                    self._event(block.height, tx.hash, e.contract, e.name, e.data)
                for p in parties:
                    self._touch(p, ref)

    def _touch(self, subject: str, ref: s.TxRef) -> None:
        q = self._subjects.pop(subject, None)
        if q is None:
            q = deque(maxlen=self.limits.per_subject)
        q.append(ref)
        self._subjects[subject] = q
        while len(self._subjects) > self.limits.max_subjects:
            self._subjects.popitem(last=False)

    def _event(
        self, height: int, tx_hash: bytes, contract: str, name: str, data: dict[str, Any]
    ) -> None:
        if contract == "mpc_oracle" and name == "OracleRequest" and type(data.get("id")) is bytes:
            rid = data["id"]
            self._oracle[rid] = s.OracleRequestModel(
                id=rid.hex(),
                program=str(data.get("program", "")),
                contract=str(data.get("contract", "")),
                height=height,
                deadline=int(data.get("deadline", 0)) if type(data.get("deadline")) is int else 0,
                status="pending",
            )
            while len(self._oracle) > self.limits.oracle_requests:
                self._oracle.popitem(last=False)
        elif contract == "mpc_oracle" and name == "OracleAnswered":
            req = self._oracle.get(data.get("id", b""))
            if req is not None:
                req.status = "answered" if data.get("ok") is True else "failed"
                req.answered_at = height
                req.error = str(data.get("error", ""))[:200]
        elif contract == "shielded_pool" and name == "Transfer":
            nfs = [x.hex() for x in data.get("nullifiers", []) if type(x) is bytes]
            self.nullifiers_seen += len(nfs)
            self._shielded.append(
                {
                    "height": height,
                    "tx_hash": tx_hash.hex(),
                    "nullifiers": nfs,
                    "commitments": [
                        x.hex() for x in data.get("commitments", []) if type(x) is bytes
                    ],
                    "root": data["root"].hex() if type(data.get("root")) is bytes else "",
                    "deposit": data.get("deposit", 0) if type(data.get("deposit")) is int else 0,
                    "withdrawal": data.get("withdrawal", 0)
                    if type(data.get("withdrawal")) is int
                    else 0,
                }
            )

    def txs(self, subject: str, limit: int) -> list[s.TxRef]:
        with self._lock:
            q = self._subjects.get(subject)
            return list(reversed(q))[:limit] if q is not None else []

    def oracle(self, limit: int) -> list[s.OracleRequestModel]:
        with self._lock:
            return [r.model_copy() for r in reversed(self._oracle.values())][:limit]

    def shielded(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(reversed(self._shielded))[:limit]


# --- handlers ---------------------------------------------------------------------------------


class Explorer:
    """The explorer's handlers on one :class:`~accord.node.api.ClientApi`."""

    def __init__(self, api: ClientApi, limits: IndexLimits | None = None) -> None:
        self.api = api
        self.node = api.node
        self.index = ExplorerIndex(api.node.store, limits)
        self._task: asyncio.Task[None] | None = None
        self._static = (
            {p.name: p for p in STATIC.iterdir() if p.is_file()} if STATIC.is_dir() else {}
        )

    def handlers(self) -> dict[str, Any]:
        return {
            "listBlocks": self.list_blocks,
            "search": self.search,
            "accountTxs": self.account_txs,
            "contractTxs": self.contract_txs,
            "explorerChain": self.chain,
            "explorerOracle": self.oracle,
            "explorerShielded": self.shielded,
            "explorerPage": self.page,
            "explorerAsset": self.asset,
        }

    def install(self, app: web.Application) -> None:
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    # --- the indexer task ----------------------------------------------------------------

    async def _start(self, app: web.Application) -> None:
        self._task = asyncio.create_task(self._run())

    async def _stop(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                done = await asyncio.to_thread(self.index.catch_up)
            except asyncio.CancelledError:
                raise
            except Exception:  # a store being closed or damaged: the API reports that itself
                log.warning("explorer index pass failed", exc_info=True)
                done = 0
            await asyncio.sleep(0 if done >= self.index.limits.per_pass else 0.25)

    # --- helpers -------------------------------------------------------------------------

    def _query(self, request: web.Request, model: type[s.WireModel]) -> Any:
        from accord.node.api import _model, _query_dict

        return _model(model, _query_dict(request))

    def _head(self) -> int:
        head = self.node.store.head()
        return head[0] if head is not None else -1

    def _summary(self, height: int) -> s.BlockSummary | None:
        store = self.node.store
        header = store.get_header(height)
        if header is None:
            return None
        cert = store.get_certificate(height)
        return s.BlockSummary(
            height=header.height,
            hash=header.hash.hex(),
            round=header.round,
            time_ms=header.time_ms,
            tx_count=header.tx_count,
            proposer=header.proposer,
            signers=cert.signer_indices(self.node.genesis.n) if cert is not None else [],
        )

    # --- endpoints -----------------------------------------------------------------------

    async def list_blocks(self, request: web.Request) -> web.Response:
        from accord.node.api import _json

        q: s.BlockListQuery = self._query(request, s.BlockListQuery)
        head = self._head()
        top = head if q.before is None else min(q.before - 1, head)
        base = self.node.store.base()

        def build() -> s.BlockListResponse:
            out: list[s.BlockSummary] = []
            h = top
            while h >= base and len(out) < q.limit:
                summary = self._summary(h)
                if summary is None:
                    break
                out.append(summary)
                h -= 1
            return s.BlockListResponse(
                blocks=out, head_height=head, next_before=h + 1 if h >= base and out else None
            )

        return _json(await asyncio.to_thread(build))

    async def search(self, request: web.Request) -> web.Response:
        from accord.node.api import _json, _resolve

        q: s.SearchQuery = self._query(request, s.SearchQuery)
        text = q.q.strip()
        low = text.lower().removeprefix("0x")
        store = self.node.store

        def answer(kind: str, target: str) -> web.Response:
            return _json(s.SearchResponse(query=text, kind=kind, target=target))  # type: ignore[arg-type]

        if text.isascii() and text.isdigit() and len(text) <= 20:
            h = int(text)
            if store.base() <= h <= self._head():
                return answer("block", str(h))
        elif len(low) == 64 and all(c in "0123456789abcdef" for c in low):
            raw = bytes.fromhex(low)
            if store.get_tx_location(raw) is not None:
                return answer("tx", low)
            h = store.get_height_by_hash(raw)
            if h is not None:
                return answer("block", str(h))
            if await _resolve(self.node.has_pending(raw)):
                return answer("pending_tx", low)
        elif len(low) == 40 and all(c in "0123456789abcdef" for c in low):
            return answer("account", low)
        if text in {c.name for c in self.node.genesis.contracts}:
            return answer("contract", text)
        return answer("none", "")

    async def account_txs(self, request: web.Request) -> web.Response:
        from accord.node.api import _json

        text = request.match_info["address"].lower()
        if len(text) != 40 or not all(c in "0123456789abcdef" for c in text):
            raise InvalidRequest("an address is 20 bytes of hex (40 digits)")
        q: s.PageQuery = self._query(request, s.PageQuery)
        return _json(self._txs(text, "a:" + text, q.limit))

    async def contract_txs(self, request: web.Request) -> web.Response:
        from accord.node.api import _json

        name = request.match_info["contract"]
        q: s.PageQuery = self._query(request, s.PageQuery)
        self.api._require_contract(name)
        return _json(self._txs(name, "c:" + name, q.limit))

    def _txs(self, subject: str, key: str, limit: int) -> s.TxListResponse:
        return s.TxListResponse(
            subject=subject,
            txs=self.index.txs(key, limit),
            indexed_from=self.index.indexed_from,
            indexed_to=self.index.indexed_to,
        )

    async def chain(self, request: web.Request) -> web.Response:
        from accord.node.api import _json

        q: s.PageQuery = self._query(request, s.PageQuery)
        g = self.node.genesis
        head = self._head()
        base = self.node.store.base()

        def build() -> s.ChainSummaryResponse:
            summaries: list[s.BlockSummary] = []
            h = head
            while h >= max(base, 0) and len(summaries) < q.limit + 1:
                b = self._summary(h)
                if b is None:
                    break
                summaries.append(b)
                h -= 1
            summaries.reverse()
            window = [
                s.ChainPoint(
                    height=b.height,
                    time_ms=b.time_ms,
                    tx_count=b.tx_count,
                    interval_ms=max(0, b.time_ms - prev.time_ms),
                )
                for prev, b in zip(summaries, summaries[1:], strict=False)
            ]
            acts = []
            for i, v in enumerate(g.validators):
                signed = [b.height for b in summaries[1:] if i in b.signers]
                proposed = [b.height for b in summaries[1:] if b.proposer == i]
                acts.append(
                    s.ValidatorActivity(
                        index=i,
                        name=v.name,
                        last_signed=signed[-1] if signed else None,
                        last_proposed=proposed[-1] if proposed else None,
                        signed=len(signed),
                    )
                )
            return s.ChainSummaryResponse(
                head_height=head, window=window, validators=acts, n=g.n, quorum=g.quorum
            )

        return _json(await asyncio.to_thread(build))

    async def oracle(self, request: web.Request) -> web.Response:
        from accord.node.api import _json

        q: s.PageQuery = self._query(request, s.PageQuery)
        return _json(
            s.OracleListResponse(
                requests=self.index.oracle(q.limit),
                indexed_from=self.index.indexed_from,
                indexed_to=self.index.indexed_to,
            )
        )

    async def shielded(self, request: web.Request) -> web.Response:
        from accord.node.api import _json, _resolve

        q: s.PageQuery = self._query(request, s.PageQuery)
        if "shielded_pool" not in {c.name for c in self.node.genesis.contracts}:
            return _json(s.ShieldedResponse(present=False))
        size = await _resolve(self.node.query("shielded_pool", "size", {}))
        root = await _resolve(self.node.query("shielded_pool", "root", {}))
        return _json(
            s.ShieldedResponse(
                present=True,
                note_count=int(size),
                root=bytes(root).hex(),
                nullifiers_seen=self.index.nullifiers_seen,
                recent=self.index.shielded(q.limit),
                indexed_from=self.index.indexed_from,
                indexed_to=self.index.indexed_to,
            )
        )

    # --- static --------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["file"])

    def _file(self, name: str) -> web.StreamResponse:
        # Only the files shipped in static/ by exact name: no path is ever joined from input.
        path = self._static.get(name)
        if path is None:
            raise NotFound(f"no explorer file {name[:64]!r}")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name.endswith(".js"):
            ctype = "text/javascript"
        return web.Response(
            body=path.read_bytes(),
            content_type=ctype,
            charset="utf-8" if ctype.startswith("text/") else None,
            headers={
                "Cache-Control": "no-cache",
                # The page runs only its own script and talks only to this node.
                "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
                "img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'",
                "X-Content-Type-Options": "nosniff",
            },
        )
