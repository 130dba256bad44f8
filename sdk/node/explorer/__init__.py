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
  the oracle's requests, the shielded pool's public facts and governance's proposals
  (:mod:`accord.node.explorer.governance`).

Bounds: every list is one page of at most :data:`accord.base.wire.EXPLORER_MAX_LIMIT` items and a
page reads at most that many headers or index records; the per-account/contract/oracle index
(:mod:`accord.node.explorer.index`) is kept in the node's store, bounded per subject, resumed
after a restart and pruned with the blocks. It is a view for people: nothing in consensus
reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from accord.base import wire as s
from accord.base.errors import InvalidRequest, NotFound
from accord.base.types import Block, Receipt
from accord.node.explorer import governance as gov
from accord.node.explorer.index import ExplorerIndex, IndexLimits
from accord.node.feed import BlockFeed

__all__ = ["ROUTES", "Explorer", "ExplorerIndex", "IndexLimits"]

if TYPE_CHECKING:
    from accord.node.api import ClientApi

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
"""The built page (index.html, app.js, style.css), part of the package data."""

_LIMIT = {"type": "integer", "minimum": 1, "maximum": s.EXPLORER_MAX_LIMIT}
_ADDRESS = {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"}
_CURSOR = {"type": "string", "pattern": s.TX_CURSOR}
_PROPOSAL_ID = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"}


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
        params=[
            _param("address", "path", _ADDRESS, True),
            _param("limit", "query", _LIMIT),
            _param("before", "query", _CURSOR),
        ],
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
            _param("before", "query", _CURSOR),
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
        path="/v1/explorer/governance",
        summary="Governance proposals newest first, and what is in force at the head",
        operation_id="explorerGovernance",
        response="GovernanceListResponse",
        errors=[422],
        params=[
            _param("limit", "query", _LIMIT),
            _param("before", "query", {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/explorer/governance/{proposal}",
        summary="One governance proposal with each approval",
        operation_id="explorerProposal",
        response="ProposalResponse",
        errors=[400, 404],
        params=[_param("proposal", "path", _PROPOSAL_ID, True)],
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


# --- handlers ---------------------------------------------------------------------------------


class Explorer:
    """The explorer's handlers on one :class:`~accord.node.api.ClientApi`."""

    def __init__(self, api: ClientApi, limits: IndexLimits | None = None) -> None:
        self.api = api
        self.node = api.node
        self._limits = limits
        self._index: ExplorerIndex | None = None
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
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
            "explorerGovernance": self.governance,
            "explorerProposal": self.proposal,
            "explorerPage": self.page,
            "explorerAsset": self.asset,
        }

    @property
    def index(self) -> ExplorerIndex:
        """The index on the node's store, made when the store is first open: an embedding
        application may build the API before it starts its node (the store is None then)."""
        store = self.node.store
        if store is None:
            from accord.base.errors import Unavailable

            raise Unavailable("the node is starting: the explorer index is not open yet")
        if self._index is None or self._index.store is not store:
            if self._index is not None:
                self._index.close()
            self._index = ExplorerIndex(store, self._limits, self.api.registry)
        return self._index

    def install(self, app: web.Application) -> None:
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)

    # --- the indexer task ----------------------------------------------------------------

    async def _start(self, app: web.Application) -> None:
        self._task = asyncio.create_task(self._run())
        # A node that publishes its commits (accord.node.Node.feed) hands each committed block
        # to the index in memory (ExplorerIndex.offer): its pass need not read it back.
        feed = getattr(self.node, "feed", None)
        if isinstance(feed, BlockFeed):
            self._unlisten = feed.listen(self._offer)

    async def _stop(self, app: web.Application) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._index is not None:
            self._index.close()
            self._index = None

    def _offer(self, block: Block, receipts: list[Receipt]) -> None:
        index = self._index
        if index is not None and index.store is self.node.store:
            index.offer(block, receipts)

    async def _run(self) -> None:
        while True:
            if self.node.store is None:  # not started yet (or stopped): look again shortly
                await asyncio.sleep(0.25)
                continue
            index = self.index
            try:
                done = await asyncio.to_thread(index.catch_up)
            except asyncio.CancelledError:
                raise
            except Exception:  # a store being closed or damaged: the API reports that itself
                log.warning("explorer index pass failed", exc_info=True)
                done = 0
            await asyncio.sleep(0 if done >= index.limits.per_pass else 0.25)

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
            signers=cert.signer_indices(self.node.set_size(cert.height))
            if cert is not None
            else [],
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
        q: s.TxPageQuery = self._query(request, s.TxPageQuery)
        return _json(await asyncio.to_thread(self._txs, text, "a:" + text, q))

    async def contract_txs(self, request: web.Request) -> web.Response:
        from accord.node.api import _json

        name = request.match_info["contract"]
        q: s.TxPageQuery = self._query(request, s.TxPageQuery)
        self.api._require_contract(name)
        return _json(await asyncio.to_thread(self._txs, name, "c:" + name, q))

    def _txs(self, subject: str, key: str, q: s.TxPageQuery) -> s.TxListResponse:
        before: tuple[int, int | None] | None = None
        if q.before is not None:
            height, _, index = q.before.partition(":")
            before = (int(height), int(index) if index else None)
        txs, cursor, (first, last) = self.index.page(key, q.limit, before)
        return s.TxListResponse(
            subject=subject,
            txs=txs,
            indexed_from=first,
            indexed_to=last,
            next_before=None if cursor is None else f"{cursor[0]}:{cursor[1]}",
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

        def build() -> s.OracleListResponse:
            first, last = self.index.coverage()
            return s.OracleListResponse(
                requests=self.index.oracle(q.limit), indexed_from=first, indexed_to=last
            )

        return _json(await asyncio.to_thread(build))

    async def shielded(self, request: web.Request) -> web.Response:
        from accord.node.api import _json, _resolve

        q: s.PageQuery = self._query(request, s.PageQuery)
        if "shielded_pool" not in {c.name for c in self.node.genesis.contracts}:
            return _json(s.ShieldedResponse(present=False))
        size = await _resolve(self.node.query("shielded_pool", "size", {}))
        root = await _resolve(self.node.query("shielded_pool", "root", {}))

        def build() -> s.ShieldedResponse:
            first, last = self.index.coverage()
            return s.ShieldedResponse(
                present=True,
                note_count=int(size),
                root=bytes(root).hex(),
                nullifiers_seen=self.index.nullifiers_seen,
                recent=self.index.shielded(q.limit),
                indexed_from=first,
                indexed_to=last,
            )

        return _json(await asyncio.to_thread(build))

    def _governed(self) -> bool:
        from accord.base.errors import UnknownContract

        try:
            self.api._require_contract(gov.CONTRACT)
        except UnknownContract:
            return False
        return True

    async def _in_force(self, head: int) -> s.InForceModel:
        from accord.node.api import _resolve

        doc = await _resolve(self.node.query(gov.CONTRACT, "in_force", {"height": max(head, 0)}))
        return gov.in_force_model(doc)

    async def governance(self, request: web.Request) -> web.Response:
        from accord.node.api import _json, _resolve

        q: s.GovernancePageQuery = self._query(request, s.GovernancePageQuery)
        if not self._governed():
            return _json(s.GovernanceListResponse(present=False))
        head = self._head()
        in_force = await self._in_force(head)
        offset, top = gov.page_bounds(gov.proposal_count(self.node.store), q.before)
        result = await _resolve(
            self.node.query(gov.CONTRACT, "proposals", {"offset": offset, "limit": q.limit})
        )
        total, proposals, next_before = gov.list_page(result, offset, top, head, in_force)
        return _json(
            s.GovernanceListResponse(
                present=True,
                head_height=head,
                total=total,
                proposals=proposals,
                next_before=next_before,
                in_force=in_force,
            )
        )

    async def proposal(self, request: web.Request) -> web.Response:
        from accord.contracts.base import state_key
        from accord.node.api import _json, _resolve

        pid = gov.parse_id(request.match_info["proposal"])
        gov.require_present(self._governed())
        if self.node.store.get_state(state_key(gov.CONTRACT, gov.record_key(pid))) is None:
            raise NotFound(f"no proposal {pid.hex()}")
        head = self._head()
        in_force = await self._in_force(head)
        rec = await _resolve(self.node.query(gov.CONTRACT, "proposal", {"proposal": pid}))
        return _json(
            s.ProposalResponse(
                head_height=head, proposal=gov.proposal_model(dict(rec), head, in_force)
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
