"""The client HTTP API of one node (aiohttp).

Applications, wallets, light clients and load generators talk to a validator through this API;
validators talk to each other through :mod:`accord.net`, never through here.

What it guarantees:

* **Bad input changes nothing.** Every request is parsed and validated (pydantic models from
  :mod:`accord.base.wire`, strict canonical decoding for transactions) before anything is
  handed to the node; a rejection is a JSON ``{"error": {"code", "message"}}`` with a stable
  code and a 4xx status (5xx only for a node-side failure, which is logged).
* **Bounded cost per client.** Bodies are capped (``client_max_size`` plus a tighter cap for a
  single transaction), batches and header ranges are capped, WebSocket streams are capped, and
  each client IP has a token bucket (429 when empty). The bucket table itself is bounded.
* **Proofs are against committed headers.** A state value is read *from the authenticated
  tree at the state root of a specific header* (not from the latest-values table), so value,
  proof and header always agree even while blocks are being committed.
* **Raw bytes for re-hashing.** Headers, certificates, transactions and receipts carry a
  ``raw`` hex field with their canonical encoding; ``GET /v1/blocks/{h}?format=raw`` returns
  the block's canonical bytes.

The node is reached only through :class:`NodeView`, so the API can be tested against any real
ledger (and the ``Node`` class implements the protocol).

Endpoints (the OpenAPI document at ``/openapi.json`` is the reference; :data:`ROUTES` builds
both it and the router)::

    POST /v1/txs                      one tx: {"tx": hex} or raw canonical bytes -> 202 {tx_hash}
    POST /v1/txs/batch                many: {"txs": [hex]} or raw encode([bytes...]) -> per-item results
    GET  /v1/txs/{hash}               pending|committed|unknown, receipt, inclusion proof
    GET  /v1/blocks/{height}|latest|hash/{hash}   ?format=raw for canonical bytes, ?receipts=true
    GET  /v1/headers/{height}         header + certificate
    GET  /v1/headers?from=H&limit=N   consecutive headers + certificates (light-client sync)
    GET  /v1/state/{contract}/{key}   value + proof at a header's state root (?key_type=str)
    POST /v1/query/{contract}/{method}  read-only call: {"args": {...}} or raw canonical map
    GET  /v1/validators | /v1/status | /v1/genesis
    GET  /v1/stream                   WebSocket: hello, then block and event messages
    GET  /metrics | /openapi.json
    GET  /v1/blocks, /v1/search, /v1/accounts/{a}/txs, /v1/contracts/{c}/txs, /v1/explorer/*,
         /explorer/               the web explorer (accord.node.explorer)

Embedding: ``server = ApiServer(node, host, port, ApiConfig(...)); await server.start()``
inside the node's event loop, ``await server.stop()`` on shutdown; or mount
``create_app(node)`` into an existing aiohttp application.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import pydantic
from aiohttp import WSMsgType, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from accord.base import encoding, merkle
from accord.base import wire as s
from accord.base.encoding import Value
from accord.base.errors import (
    AccordError,
    DecodeError,
    InvalidRequest,
    NotFound,
    RateLimited,
    TooLarge,
    Unavailable,
    UnknownContract,
)
from accord.base.genesis import Genesis
from accord.base.logbudget import LogBudget
from accord.base.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from accord.base.metrics import Registry
from accord.base.types import MAX_TX_BYTES, Block, Receipt, Tx
from accord.node.explorer import ROUTES as EXPLORER_ROUTES
from accord.node.explorer import Explorer

log = logging.getLogger(__name__)

API_VERSION = "1"


STATUS_KEYS = frozenset(
    {
        "name",
        "index",
        "chain_id",
        "height",
        "head_hash",
        "round",
        "peers",
        "mempool",
        "running",
        "healthy",
        "fault",
        "holding",
    }
)
"""What ``NodeView.status()`` answers; ``/v1/status`` adds the genesis hash and state root."""


class NodeView(Protocol):
    """What the API needs from a node. ``accord.node.Node`` implements it.

    ``subscribe()`` must register the subscriber when it is *called* (not at the first
    iteration), so that a block committed right after the call is delivered; closing the
    iterator (``aclose()``, if it has one) unregisters it. If a subscriber falls behind, the
    node may drop blocks from its queue: the stream fills gaps from the store by height.

    ``submit``, ``has_pending``, ``status`` and ``query`` are called on the event loop; each
    may also be a coroutine function (its result is awaited).
    """

    genesis: Genesis
    store: Any  # accord.storage.Store
    metrics: Any  # accord.base.metrics.Registry (anything with render() -> str), or None

    def submit(self, tx: Tx) -> bytes:
        """Admit ``tx`` into the mempool (and gossip it); its hash, or an AccordError."""
        ...

    def submit_batch(self, items: list[Tx | bytes]) -> Any:
        """Admit each item in order, as ``submit`` would (same checks, same errors); per item
        its hash or the AccordError refusing it. May return an awaitable of that list."""
        ...

    def has_pending(self, tx_hash: bytes) -> bool:
        """Whether the transaction waits in this node's mempool."""
        ...

    def status(self) -> dict[str, Any]:
        """The keys of :data:`STATUS_KEYS` (JSON-able: hashes as hex)."""
        ...

    def subscribe(self) -> AsyncIterator[tuple[Block, list[Receipt]]]:
        """Committed blocks with their receipts, in height order."""
        ...

    def query(self, contract: str, method: str, args: dict[str, Value]) -> Value:
        """A read-only contract call on the committed state."""
        ...

    def set_size(self, height: int) -> int:
        """Validators in the set of ``height`` (governance changes it): what that height's
        certificate's signer field is read against."""
        ...


@dataclass
class ApiConfig:
    """Limits of the client API. Defaults are generous: a benchmark load generator on
    loopback submitting batches must never be throttled by them."""

    max_body_bytes: int = 16 * 1024 * 1024
    """aiohttp ``client_max_size``: the largest body of any request (a batch of txs)."""
    max_tx_body_bytes: int = 2 * MAX_TX_BYTES + 1024
    """The largest body of ``POST /v1/txs`` (one tx as JSON hex is ~2x its size)."""
    max_batch_txs: int = 20_000
    max_headers: int = 1000
    max_streams: int = 256
    max_streams_per_client: int = 16
    """Open streams per client IP, so that one client cannot take every stream slot (429)."""
    rate_per_s: float = 5000.0
    """Requests per second per client IP (a batch counts once); <= 0 disables the limit."""
    burst: float = 10_000.0
    rate_exempt: tuple[str, ...] = ()
    """Client IPs never rate limited (e.g. a trusted gateway or the local load generator)."""
    max_clients: int = 10_000
    """Client IPs tracked by the rate limiter (the least recently seen are forgotten)."""
    block_cache_blocks: int = 8
    """Recent blocks kept decoded (with receipts and tx-tree leaves) for tx status and proofs:
    decoding a 5,000-tx block and its receipts costs ~0.25 s, and clients polling for their
    transactions all ask about the same few recent blocks."""
    request_head_timeout_s: float = 10.0
    """Seconds from a request's first byte (or the connection's opening) to its complete
    headers; a slower client is disconnected (``accord_api_connections_refused_total{reason="head_timeout"}``)."""
    request_body_timeout_s: float = 30.0
    """Seconds to receive a request's whole body (408)."""
    keepalive_timeout_s: float = 15.0
    """Seconds an idle keep-alive connection stays open between requests."""
    max_connections: int = 2048
    """Open HTTP connections, all clients together (kept well below the descriptor limit);
    beyond it new connections are closed at once (``reason="busy"``)."""
    max_connections_per_client: int = 64
    """Open HTTP connections from one client IP (``reason="busy_ip"``)."""
    stream_heartbeat_s: float = 30.0
    stream_send_timeout_s: float = 30.0
    """A stream whose client accepts no message for this long is closed (after a ``lagged``
    message, if that still fits), so a stuck reader holds no subscription."""


class TokenBuckets:
    """Per-key token buckets with a bounded table (LRU eviction: an evicted client simply
    starts again with a full bucket, which errs on the side of serving)."""

    def __init__(
        self, rate: float, burst: float, max_keys: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: str, cost: float = 1.0) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        ok = tokens >= cost
        if ok:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return ok

    def __len__(self) -> int:
        return len(self._buckets)


# --- error mapping -------------------------------------------------------------------------

_STATUS: dict[str, int] = {
    "not_found": 404,
    "unknown_contract": 404,
    "unknown_method": 404,
    "too_large": 413,
    "duplicate_tx": 409,
    "rate_limited": 429,
    "mempool_full": 503,
    "unavailable": 503,
    "storage_damaged": 503,  # the node halted: its data folder needs repair (see accord.storage.verify)
    "invalid_request": 422,
    "invalid_signature": 422,
    "wrong_chain": 422,
    "bad_nonce": 422,
    "gas_limit_too_high": 422,
    "revert": 422,
    "out_of_gas": 422,
    "bad_state_key": 400,
}


def status_of(err: AccordError) -> int:
    """HTTP status of a rejection: 400 for malformed input unless the code says otherwise."""
    return _STATUS.get(err.code, 400)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _pydantic_message(e: pydantic.ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _model(model: type[pydantic.BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise InvalidRequest(_pydantic_message(e)) from None


def _jsonable(v: Any) -> Any:
    """Status values from the node made JSON-safe (bytes -> hex, tuples -> lists)."""
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


async def _resolve(value: Any) -> Any:
    """A NodeView method's result; a Node may also implement a method as a coroutine."""
    if inspect.isawaitable(value):
        return await value
    return value


def _parse_height(text: str) -> int:
    return s.parse_uint(text, "height")


def _json(model: pydantic.BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True).encode(),
        status=status,
        content_type="application/json",
    )


class BlockQuery(s.WireModel):
    format: str = pydantic.Field(default="json", pattern="^(json|raw)$")
    receipts: bool = False


class TxQuery(s.WireModel):
    proof: bool = True
    tx: bool = False


def _query_dict(request: web.Request) -> dict[str, str]:
    q = request.rel_url.query
    if len(q) != len(set(q.keys())):
        raise InvalidRequest("a query parameter is repeated")
    return dict(q)


class _CachedBlock:
    """A decoded committed block, its receipts and (computed on first use) its tx-tree leaves."""

    def __init__(self, block: Block, receipts: list[Receipt]) -> None:
        self.block = block
        self.receipts = receipts
        self._leaves: list[bytes] | None = None
        self._tree: merkle.TxTree | None = None

    def leaves(self) -> list[bytes]:
        if self._leaves is None:  # a race computes the same list twice: harmless
            self._leaves = [
                merkle.tx_leaf(t.hash, r.hash)
                for t, r in zip(self.block.txs, self.receipts, strict=True)
            ]
        return self._leaves

    def proof(self, index: int) -> list[bytes]:
        """The inclusion proof of tx ``index``, from one tree kept per block.

        Served proofs are checked against the header's tx root first: a store whose receipts
        were damaged gives an error here, never a proof that a light client would refuse.
        """
        leaves = self.leaves()
        if self._tree is None:  # a race builds the same tree twice: harmless
            self._tree = merkle.TxTree(leaves)
        proof = self._tree.proof(index)
        try:
            merkle.verify_merkle_proof(
                self.block.header.tx_root, leaves[index], index, len(leaves), proof
            )
        except AccordError:
            raise Unavailable(
                f"block {self.block.height}: stored receipts do not match the header's tx root "
                "(check the data folder with `accord node --verify`)"
            ) from None
        return proof


def _allowed_methods(path: str, *, literal_only: bool = False) -> str:
    """The documented methods of the resource at ``path`` (for ``Allow``). A literal route
    wins over a template that also matches it (``/v1/txs/batch`` is not a ``/v1/txs/{hash}``),
    so ``Allow`` lists what the OpenAPI document says, not every route the path would reach."""
    literal = sorted({r.method.upper() for r in ROUTES if r.path == path})
    if literal or literal_only:
        return ", ".join(literal)
    segs = path.split("/")
    found = set()
    for r in ROUTES:
        tpl = r.path.split("/")
        if len(tpl) == len(segs) and all(
            t == x or (t.startswith("{") and x) for t, x in zip(tpl, segs, strict=True)
        ):
            found.add(r.method.upper())
    return ", ".join(sorted(found))


class _Lagged(Exception):
    """A stream client stopped reading."""


# --- the route table (also the source of the OpenAPI paths) ---------------------------------

_HEX = {"type": "string", "pattern": s.HEX_PATTERN}
_HASH = {"type": "string", "pattern": s.HASH_HEX_PATTERN}
_HEIGHT = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}  # what parse_uint reads
_BOOL = {"type": "boolean"}


def _p(
    name: str, where: str, schema: dict[str, Any], description: str = "", required: bool = True
) -> s.Param:
    return s.Param.model_validate(
        {
            "name": name,
            "where": where,
            "schema_": schema,
            "description": description,
            "required": required,
        }
    )


ROUTES: list[s.Route] = [
    s.Route(
        method="post",
        path="/v1/txs",
        summary="Submit one signed transaction",
        operation_id="submitTx",
        request="SubmitTxRequest",
        raw_request=True,
        response="SubmitTxResponse",
        status=202,
        errors=[400, 409, 413, 422, 503],
    ),
    s.Route(
        method="post",
        path="/v1/txs/batch",
        summary="Submit many signed transactions",
        operation_id="submitTxBatch",
        request="SubmitTxBatchRequest",
        raw_request=True,
        response="SubmitTxBatchResponse",
        errors=[400, 413, 422],
    ),
    s.Route(
        method="get",
        path="/v1/txs/{hash}",
        summary="Transaction status, receipt and inclusion proof",
        operation_id="getTx",
        response="TxStatusResponse",
        errors=[400, 422],
        params=[
            _p("hash", "path", _HASH, "tx hash"),
            _p("proof", "query", _BOOL, "include the inclusion proof (default true)", False),
            _p("tx", "query", _BOOL, "include the transaction itself (default false)", False),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/blocks/latest",
        summary="The head block",
        operation_id="getLatestBlock",
        response="BlockResponse",
        errors=[404, 422],
        params=[
            _p(
                "format",
                "query",
                {"type": "string", "enum": ["json", "raw"]},
                "raw: canonical bytes",
                False,
            ),
            _p("receipts", "query", _BOOL, "include receipts", False),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/blocks/hash/{hash}",
        summary="A block by its hash",
        operation_id="getBlockByHash",
        response="BlockResponse",
        errors=[400, 404, 422],
        params=[
            _p("hash", "path", _HASH, "block hash"),
            _p(
                "format",
                "query",
                {"type": "string", "enum": ["json", "raw"]},
                "raw: canonical bytes",
                False,
            ),
            _p("receipts", "query", _BOOL, "include receipts", False),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/blocks/{height}",
        summary="A block by height",
        operation_id="getBlock",
        response="BlockResponse",
        errors=[400, 404, 422],
        params=[
            _p("height", "path", _HEIGHT),
            _p(
                "format",
                "query",
                {"type": "string", "enum": ["json", "raw"]},
                "raw: canonical bytes",
                False,
            ),
            _p("receipts", "query", _BOOL, "include receipts", False),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/headers/{height}",
        summary="A header with its certificate",
        operation_id="getHeader",
        response="HeaderResponse",
        errors=[400, 404],
        params=[_p("height", "path", _HEIGHT)],
    ),
    s.Route(
        method="get",
        path="/v1/headers",
        summary="Consecutive headers with certificates (light-client sync)",
        operation_id="getHeaders",
        response="HeadersResponse",
        errors=[422],
        params=[
            _p("from", "query", _HEIGHT, "first height"),
            _p(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                "at most",
                False,
            ),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/state/{contract}/{key}",
        summary="A contract state value with its proof",
        operation_id="getState",
        response="StateResponse",
        errors=[400, 404, 422],
        params=[
            _p("contract", "path", {"type": "string"}),
            _p("key", "path", {"type": "string"}, "hex bytes, or a str key with key_type=str"),
            _p("key_type", "query", {"type": "string", "enum": ["hex", "str"]}, "", False),
            _p("height", "query", {"type": "integer", "minimum": 0}, "", False),
        ],
    ),
    s.Route(
        method="post",
        path="/v1/query/{contract}/{method}",
        summary="A read-only contract call",
        operation_id="query",
        request="QueryRequest",
        raw_request=True,
        response="QueryResponse",
        errors=[400, 404, 413, 422],
        params=[
            _p("contract", "path", {"type": "string"}),
            _p("method", "path", {"type": "string"}),
        ],
    ),
    s.Route(
        method="get",
        path="/v1/accounts/{address}",
        summary="An account's committed and next nonce",
        operation_id="getAccount",
        response="AccountResponse",
        errors=[400],
        params=[
            _p(
                "address",
                "path",
                {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"},
                "20-byte address",
            )
        ],
    ),
    s.Route(
        method="get",
        path="/v1/validators",
        summary="The validator set",
        operation_id="getValidators",
        response="ValidatorsResponse",
    ),
    s.Route(
        method="get",
        path="/v1/status",
        summary="Node status",
        operation_id="getStatus",
        response="StatusResponse",
    ),
    s.Route(
        method="get",
        path="/v1/genesis",
        summary="The genesis document and its hash",
        operation_id="getGenesis",
        response="GenesisResponse",
    ),
    s.Route(
        method="get",
        path="/v1/stream",
        summary="WebSocket: StreamHello, then StreamBlock and StreamEvent messages (JSON text frames)",
        operation_id="stream",
        response=None,
        status=101,
        content_type="application/json",
        errors=[422, 426, 429, 503],
        params=[
            _p("from", "query", _HEIGHT, "replay from this height first", False),
            _p("blocks", "query", _BOOL, "", False),
            _p("events", "query", _BOOL, "", False),
            _p("contract", "query", {"type": "string"}, "only this contract's events", False),
        ],
    ),
    s.Route(
        method="get",
        path="/metrics",
        summary="Prometheus metrics (text format 0.0.4)",
        operation_id="metrics",
        response=None,
        content_type="text/plain",
    ),
    s.Route(
        method="get",
        path="/openapi.json",
        summary="This document",
        operation_id="openapi",
        response=None,
        content_type="application/json",
    ),
]

ROUTES += EXPLORER_ROUTES  # the web explorer's endpoints and pages (accord.node.explorer)


def openapi(genesis: Genesis | None = None) -> dict[str, Any]:
    """The API's OpenAPI 3.1 document (generated from the pydantic models and ROUTES)."""
    title = "Accord client API" + (f" ({genesis.chain_id})" if genesis is not None else "")
    return s.openapi_document(ROUTES, title=title, version=API_VERSION)


# --- the application -------------------------------------------------------------------------


class ClientApi:
    """Handlers and state (rate limiter, streams, caches, metrics) of one node's API."""

    def __init__(self, node: NodeView, config: ApiConfig | None = None) -> None:
        self.node = node
        self.config = config or ApiConfig()
        self.buckets = TokenBuckets(
            self.config.rate_per_s, self.config.burst, self.config.max_clients
        )
        self._blocks: OrderedDict[int, _CachedBlock] = OrderedDict()
        self._blocks_lock = threading.Lock()  # filled from worker threads; one decode per miss
        self._streams: set[web.WebSocketResponse] = set()
        self._streams_by_ip: dict[str, int] = {}
        self._streams_opening = 0
        self._openapi: bytes | None = None
        reg = node.metrics if isinstance(node.metrics, Registry) else Registry()
        self.registry = reg
        self.m_requests = reg.counter(
            "accord_api_requests_total",
            "API requests by route and HTTP status",
            ("route", "status"),
        )
        self.m_rejected = reg.counter(
            "accord_api_rejected_total", "API rejections by error code", ("code",)
        )
        self.m_rate_limited = reg.counter(
            "accord_api_rate_limited_total", "requests refused by the rate limiter"
        )
        self.m_txs = reg.counter(
            "accord_api_txs_submitted_total", "transactions admitted through the API"
        )
        self.m_streams = reg.gauge("accord_api_streams", "open WebSocket streams")
        self.m_stream_lagged = reg.counter(
            "accord_api_stream_lagged_total", "streams closed because the client read too slowly"
        )
        self.m_conn_refused = reg.counter(
            "accord_api_connections_refused_total",
            "HTTP connections closed by the API's limits",
            ("reason",),
        )
        self.m_connections = reg.gauge("accord_api_connections", "open HTTP connections")
        self._conns_by_ip: dict[str, int] = {}
        self._conns = 0
        self._guards: dict[asyncio.BaseTransport, _Guard] = {}
        self.m_latency = reg.histogram(
            "accord_api_request_seconds", "API request handling time", ("route",)
        )

    # --- wiring ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_body_bytes,
            middlewares=[self._errors_middleware, self._rate_middleware],
        )
        # The router is built from ROUTES, the same table the OpenAPI document comes from,
        # so the document lists exactly what is served (order matters: literal paths such as
        # /v1/blocks/latest come before /v1/blocks/{height}).
        handlers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "submitTx": self.submit_tx,
            "submitTxBatch": self.submit_batch,
            "getTx": self.get_tx,
            "getLatestBlock": self.get_latest_block,
            "getBlockByHash": self.get_block_by_hash,
            "getBlock": self.get_block,
            "getHeader": self.get_header,
            "getHeaders": self.get_headers,
            "getState": self.get_state,
            "query": self.query,
            "getValidators": self.validators,
            "getAccount": self.account,
            "getStatus": self.status,
            "getGenesis": self.genesis,
            "stream": self.stream,
            "metrics": self.metrics,
            "openapi": self.openapi,
        }
        explorer = self.explorer = Explorer(self)
        handlers.update(explorer.handlers())
        explorer.install(app)
        for route in ROUTES:
            app.router.add_route(route.method.upper(), route.path, handlers[route.operation_id])
        app.on_shutdown.append(self._close_streams)
        return app

    @web.middleware
    async def _errors_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every failure becomes the JSON error shape; every request is counted."""
        route = (
            request.match_info.route.resource.canonical
            if request.match_info.route.resource
            else "unmatched"
        )
        started = time.perf_counter()
        literal = _allowed_methods(request.path, literal_only=True)
        guard = self._guards.get(request.transport) if request.transport is not None else None
        if guard is not None:
            guard.head_received()
        try:
            if literal and request.method not in literal.split(", "):
                # e.g. GET /v1/txs/batch, which the /v1/txs/{hash} template would take
                raise web.HTTPMethodNotAllowed(request.method, literal.split(", "))
            resp = await handler(request)
        except AccordError as e:
            self.m_rejected.inc(code=e.code)
            resp = error_response(status_of(e), e.code, e.message)
        except web.HTTPRequestEntityTooLarge as e:
            self.m_rejected.inc(code="too_large")
            resp = error_response(413, "too_large", e.text or "request body too large")
        except web.HTTPException as e:
            if e.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, f"http_{e.status}")
            self.m_rejected.inc(code=code)
            resp = error_response(e.status, code, e.reason)
            if e.status == 405:  # a 405 must say which methods the resource has (RFC 9110)
                resp.headers["Allow"] = _allowed_methods(request.path) or e.headers.get("Allow", "")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("client API handler failed on %s %s", request.method, request.path)
            resp = error_response(500, "internal", "internal error")
        finally:
            if guard is not None:
                guard.request_done()
        self.m_requests.inc(route=route, status=resp.status)
        if not isinstance(resp, web.WebSocketResponse):
            self.m_latency.observe(time.perf_counter() - started, route=route)
        return resp

    @web.middleware
    async def _rate_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        key = request.remote or "unknown"
        if key not in self.config.rate_exempt and not self.buckets.allow(key):
            self.m_rate_limited.inc()
            raise RateLimited(f"more than {self.config.rate_per_s:g} requests/s from {key}")
        return await handler(request)

    async def _close_streams(self, app: web.Application) -> None:
        for ws in list(self._streams):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"node shutting down")

    # --- body reading ------------------------------------------------------------------

    async def _body(self, request: web.Request, limit: int) -> bytes:
        """The body, refused with 413 before reading when it is declared or found too large."""
        declared = request.content_length
        if declared is not None and declared > limit:
            raise TooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
        try:  # bounded by client_max_size, and in time: a dribbled body holds no connection
            data = await asyncio.wait_for(request.read(), self.config.request_body_timeout_s)
        except TimeoutError:
            self.m_conn_refused.inc(reason="body_timeout")
            raise web.HTTPRequestTimeout(
                reason=f"request body not received within {self.config.request_body_timeout_s:g} s"
            ) from None
        if len(data) > limit:
            raise TooLarge(f"body of {len(data)} bytes exceeds the limit of {limit}")
        return data

    @staticmethod
    def _is_raw(request: web.Request) -> bool:
        return request.content_type == "application/octet-stream"

    @staticmethod
    def _json_body(data: bytes) -> Any:
        if not data:
            raise DecodeError("empty body; expected JSON")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise DecodeError(f"body is not valid JSON: {e}") from None
        except (
            RecursionError
        ):  # the stdlib parser recurses per level; the body size bounds the cost
            raise DecodeError("body nests too deeply") from None
        # The parser's own limit is the interpreter's recursion limit, which a host (or a test
        # run) may have raised: bound the depth explicitly, without recursing.
        stack: list[tuple[Any, int]] = [(value, 1)]
        while stack:
            v, depth = stack.pop()
            if isinstance(v, dict | list):
                if depth > encoding.MAX_DEPTH:
                    raise DecodeError("body nests too deeply")
                stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
        return value

    # --- transactions ------------------------------------------------------------------

    async def submit_tx(self, request: web.Request) -> web.Response:
        data = await self._body(request, self.config.max_tx_body_bytes)
        if self._is_raw(request):
            raw = data
        else:
            req = _model(s.SubmitTxRequest, self._json_body(data))
            raw = s.parse_hex(req.tx, "tx")
        tx = Tx.decode(raw)  # strict: size limit, canonical form, field types
        h = await _resolve(self.node.submit(tx))
        self.m_txs.inc()
        return _json(s.SubmitTxResponse(tx_hash=h.hex()), status=202)

    async def submit_batch(self, request: web.Request) -> web.Response:
        """Admit each transaction independently; one bad transaction rejects only itself.

        Body: JSON ``{"txs": [hex, ...]}`` or ``application/octet-stream`` holding the
        canonical encoding of a list of tx byte strings.
        """
        data = await self._body(request, self.config.max_body_bytes)
        items: list[bytes | AccordError]
        if self._is_raw(request):
            lst = encoding.decode(data, max_size=self.config.max_body_bytes)
            if type(lst) is not list or not lst or any(type(x) is not bytes for x in lst):
                raise DecodeError(
                    "a raw batch is the canonical encoding of a non-empty list of byte strings"
                )
            items = list(lst)
        else:
            req = _model(s.SubmitTxBatchRequest, self._json_body(data))
            items = []
            for i, text in enumerate(req.txs):
                try:
                    items.append(s.parse_hex(text, f"txs[{i}]"))
                except AccordError as e:
                    items.append(e)
        if len(items) > self.config.max_batch_txs:
            raise TooLarge(f"a batch holds at most {self.config.max_batch_txs} transactions")
        return await self._submit_many(items)

    async def _submit_many(self, items: list[bytes | AccordError]) -> web.Response:
        """The node admits the whole batch in one call (signatures checked in bulk, off the
        loop for large batches); the answer is :class:`SubmitTxBatchResponse`'s JSON, written
        without a pydantic model per transaction."""
        raw: list[Tx | bytes] = [x for x in items if not isinstance(x, AccordError)]
        admitted = iter(await _resolve(self.node.submit_batch(raw)))
        results: list[dict[str, Any]] = []
        accepted = 0
        for item in items:
            r = item if isinstance(item, AccordError) else next(admitted)
            if isinstance(r, AccordError):
                self.m_rejected.inc(code=r.code)
                results.append({"tx_hash": None, "error": {"code": r.code, "message": r.message}})
            else:
                accepted += 1
                results.append({"tx_hash": r.hex(), "error": None})
        self.m_txs.inc(accepted)
        body = json.dumps({"accepted": accepted, "results": results}, separators=(",", ":"))
        return web.Response(body=body.encode(), content_type="application/json")

    def _cached_block(self, height: int) -> _CachedBlock:
        """Block ``height`` with its receipts, decoded once (worker threads only)."""
        store = self.node.store
        header = store.get_header(height)
        if header is None:
            raise Unavailable(f"block {height} is not readable")
        with self._blocks_lock:  # serialises misses: concurrent askers wait, then hit
            cached = self._blocks.get(height)
            if cached is not None and cached.block.hash == header.hash:
                self._blocks.move_to_end(height)
                return cached
            block = store.get_block(height)
            receipts = store.get_receipts(height)
            if block is None or block.hash != header.hash or len(receipts) != len(block.txs):
                raise Unavailable(f"block {height} is not readable")
            cached = _CachedBlock(block, receipts)
            if self.config.block_cache_blocks > 0:
                self._blocks[height] = cached
                while len(self._blocks) > self.config.block_cache_blocks:
                    self._blocks.popitem(last=False)
            return cached

    async def get_tx(self, request: web.Request) -> web.Response:
        h = s.parse_hex(request.match_info["hash"], "tx hash", 32)
        q = _model(TxQuery, _query_dict(request))
        store = self.node.store
        loc = store.get_tx_location(h)
        if loc is None:
            pending = await _resolve(self.node.has_pending(h))
            return _json(
                s.TxStatusResponse(tx_hash=h.hex(), status="pending" if pending else "unknown")
            )
        height, index = loc

        def build() -> s.TxStatusResponse:
            cached = self._cached_block(height)
            block = cached.block
            if index >= len(block.txs) or block.txs[index].hash != h:
                raise Unavailable(f"the index of tx {h.hex()[:16]} does not match block {height}")
            tx, receipt = block.txs[index], cached.receipts[index]
            proof = None
            if q.proof:
                leaves = cached.leaves()
                proof = s.InclusionProof(
                    leaf=leaves[index].hex(),
                    index=index,
                    count=len(leaves),
                    siblings=[x.hex() for x in cached.proof(index)],
                    tx_root=block.header.tx_root.hex(),
                )
            return s.TxStatusResponse(
                tx_hash=h.hex(),
                status="committed",
                height=height,
                index=index,
                block_hash=block.hash.hex(),
                receipt=s.ReceiptModel.of(receipt),
                proof=proof,
                tx=s.TxModel.of(tx) if q.tx else None,
            )

        # Big blocks make the proof a few ms of hashing: keep it off the event loop.
        return _json(await asyncio.to_thread(build))

    # --- blocks and headers --------------------------------------------------------------

    async def _block_response(
        self, request: web.Request, height: int | None, block: Block | None
    ) -> web.Response:
        q = _model(BlockQuery, _query_dict(request))
        if block is None:
            raise NotFound(
                self._missing("block", height) if height is not None else "no such block"
            )
        if q.format == "raw":
            return web.Response(body=block.encode(), content_type="application/octet-stream")
        store = self.node.store

        def build() -> bytes:
            cert = store.get_certificate(block.height)
            receipts = store.get_receipts(block.height) if q.receipts else None
            return (
                s.BlockResponse.of(block, cert, receipts, n=self.node.set_size(block.height))
                .model_dump_json()
                .encode()
            )

        body = await asyncio.to_thread(build)
        return web.Response(body=body, content_type="application/json")

    def _missing(self, what: str, height: int) -> str:
        base = self.node.store.base()
        if height < base:  # pruned, or before the snapshot this node started from
            return f"no {what} at height {height}: this node keeps blocks from height {base} on (pruned)"
        return f"no {what} at height {height}"

    async def get_block(self, request: web.Request) -> web.Response:
        height = _parse_height(request.match_info["height"])
        return await self._block_response(request, height, self.node.store.get_block(height))

    async def get_latest_block(self, request: web.Request) -> web.Response:
        head = self.node.store.head()
        if head is None:
            raise NotFound("the chain has no blocks yet")
        return await self._block_response(request, head[0], self.node.store.get_block(head[0]))

    async def get_block_by_hash(self, request: web.Request) -> web.Response:
        h = s.parse_hex(request.match_info["hash"], "block hash", 32)
        return await self._block_response(request, None, self.node.store.get_block_by_hash(h))

    def _header_response(self, height: int) -> s.HeaderResponse | None:
        store = self.node.store
        header = store.get_header(height)
        if header is None:
            return None
        cert = store.get_certificate(height)
        return s.HeaderResponse(
            header=s.HeaderModel.of(header),
            certificate=s.CertificateModel.of(cert, self.node.set_size(cert.height))
            if cert is not None
            else None,
        )

    async def get_header(self, request: web.Request) -> web.Response:
        height = _parse_height(request.match_info["height"])
        if request.rel_url.query:
            raise InvalidRequest("this endpoint takes no query parameters")
        resp = self._header_response(height)
        if resp is None:
            raise NotFound(self._missing("header", height))
        return _json(resp)

    async def get_headers(self, request: web.Request) -> web.Response:
        q = _model(s.HeadersQuery, _query_dict(request))
        limit = min(q.limit, self.config.max_headers)
        head = self.node.store.head()
        head_height = head[0] if head is not None else -1
        out: list[s.HeaderResponse] = []
        for height in range(q.from_, min(q.from_ + limit, head_height + 1)):
            resp = self._header_response(height)
            if resp is None:  # pruned or racing a reopen: return the consecutive run we have
                break
            out.append(resp)
        return _json(s.HeadersResponse(headers=out, head_height=max(head_height, 0)))

    # --- state and queries -----------------------------------------------------------------

    def _require_contract(self, contract: str) -> None:
        from accord.ledger.chain import Chain

        known = {c.name for c in self.node.genesis.contracts}
        chain = getattr(self.node, "chain", None)  # a NodeView need not have one
        if contract not in known and isinstance(chain, Chain):
            known |= chain.known_contracts()  # those deployed by governance after genesis
        if contract not in known:
            raise UnknownContract(f"no contract {contract[:64]!r} on this chain")

    async def get_state(self, request: web.Request) -> web.Response:
        from accord.contracts.base import state_key  # the runtime owns the key layout

        contract = request.match_info["contract"]
        key_text = request.match_info["key"]
        q = _model(s.StateQuery, _query_dict(request))
        self._require_contract(contract)
        key: str | bytes = key_text if q.key_type == "str" else s.parse_hex(key_text, "key")
        skey = state_key(contract, key)
        store = self.node.store
        head = store.head()
        if head is None:
            raise Unavailable("the chain has no blocks yet")
        at = head[0] if q.height is None else q.height
        if at > head[0]:
            raise NotFound(f"height {at} is above the head ({head[0]})")
        header = store.get_header(at)
        if header is None:
            if q.height is not None:
                raise NotFound(f"no header at height {at} (pruned, or not stored)")
            raise Unavailable(f"header {head[0]} is not readable")
        # Read value and proof from the tree at this header's root: they match the header
        # even if more blocks are committed meanwhile (old roots stay provable).
        value, proof = store.prove_state(skey, header.state_root)
        decoded = None
        if value is not None:
            try:
                decoded = s.value_to_json(encoding.decode(value))
            except AccordError:
                decoded = None  # not a canonical value (foreign writer): raw bytes still served
        proof_obj = proof.to_obj()
        return _json(
            s.StateResponse(
                contract=contract,
                key=key_text,
                state_key=skey.hex(),
                value=value.hex() if value is not None else None,
                decoded=decoded,
                proof=s.value_to_json(proof_obj),
                proof_raw=encoding.encode(proof_obj).hex(),
                height=header.height,
                header=s.HeaderModel.of(header),
            )
        )

    async def query(self, request: web.Request) -> web.Response:
        contract = request.match_info["contract"]
        method = request.match_info["method"]
        data = await self._body(request, self.config.max_tx_body_bytes)
        args: Any
        if self._is_raw(request):
            args = encoding.decode(data, max_size=MAX_TX_BYTES) if data else {}
            if type(args) is not dict:
                raise DecodeError("raw query arguments must be the canonical encoding of a map")
        else:
            req = _model(s.QueryRequest, self._json_body(data)) if data else s.QueryRequest()
            args = s.value_from_json(req.args)
        self._require_contract(contract)
        head = self.node.store.head()
        result = await _resolve(self.node.query(contract, method, args))
        return _json(
            s.QueryResponse(
                result=s.value_to_json(result),
                raw=encoding.encode(result).hex(),
                height=head[0] if head is not None else 0,
            )
        )

    # --- node --------------------------------------------------------------------------

    async def account(self, request: web.Request) -> web.Response:
        """Nonces of an account: what the committed state says, and the nonce its next
        transaction must carry here (counting transactions pending in this node's mempool)."""
        from accord.contracts.runtime import nonce_key

        text = request.match_info["address"]
        address = s.parse_hex(text, "address", 20)
        raw = self.node.store.get_state(nonce_key(address))
        committed = 0 if raw is None else int(encoding.decode(raw))
        next_nonce = getattr(self.node, "next_nonce", None)
        pending = next_nonce(address) if next_nonce is not None else committed
        return _json(s.AccountResponse(address=address.hex(), nonce=committed, next_nonce=pending))

    async def validators(self, request: web.Request) -> web.Response:
        g = self.node.genesis
        return _json(
            s.ValidatorsResponse(
                validators=[
                    s.ValidatorModel(
                        index=i,
                        name=v.name,
                        bls_public_key=v.bls_public_key,
                        pop=v.pop,
                        account=v.account,
                        host=v.host,
                        port=v.port,
                        api_port=v.api_port,
                    )
                    for i, v in enumerate(g.validators)
                ],
                n=g.n,
                f=g.f,
                quorum=g.quorum,
            )
        )

    async def status(self, request: web.Request) -> web.Response:
        store = self.node.store
        head = store.head()
        facts: dict[str, Any] = _jsonable(await _resolve(self.node.status()))
        facts.update(
            chain_id=self.node.genesis.chain_id,
            genesis_hash=self.node.genesis.hash.hex(),
            height=head[0] if head is not None else -1,
            head_hash=head[1].hex() if head is not None else "",
            state_root=store.state_root().hex(),
        )
        return _json(_model(s.StatusResponse, facts))

    async def genesis(self, request: web.Request) -> web.Response:
        g = self.node.genesis
        return _json(s.GenesisResponse(hash=g.hash.hex(), genesis=g))

    async def metrics(self, request: web.Request) -> web.Response:
        m = self.node.metrics
        text = self.registry.render()
        if m is not None and m is not self.registry:
            render = getattr(m, "render", None)
            if render is not None:
                text = render() + text
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = json.dumps(openapi(self.node.genesis)).encode()
        return web.Response(body=self._openapi, content_type="application/json")

    # --- stream ----------------------------------------------------------------------------

    def _stream_messages(
        self, q: s.StreamQuery, block: Block, receipts: list[Receipt]
    ) -> list[str]:
        out: list[str] = []
        if q.blocks:
            cert = self.node.store.get_certificate(block.height)
            out.append(
                s.StreamBlock(
                    height=block.height,
                    hash=block.hash.hex(),
                    header=s.HeaderModel.of(block.header),
                    certificate=s.CertificateModel.of(cert, self.node.set_size(cert.height))
                    if cert is not None
                    else None,
                    tx_hashes=[t.hash.hex() for t in block.txs],
                    receipts_ok=[r.ok for r in receipts],
                ).model_dump_json()
            )
        if q.events:
            for r in receipts:
                for i, e in enumerate(r.events):
                    if q.contract is not None and e.contract != q.contract:
                        continue
                    out.append(
                        s.StreamEvent(
                            height=block.height,
                            tx_hash=r.tx_hash.hex(),
                            index=i,
                            event=s.EventModel.of(e),
                        ).model_dump_json()
                    )
        return out

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Committed blocks and events over a WebSocket, in height order, without gaps.

        Subscribe first, then replay stored blocks from ``from`` (if asked), then forward live
        blocks, skipping heights already sent and filling any gap from the store. The reader
        loop notices the client leaving and cancels the forwarder.
        """
        q = _model(s.StreamQuery, _query_dict(request))
        if len(self._streams) + self._streams_opening >= self.config.max_streams:
            raise Unavailable(f"at most {self.config.max_streams} streams are open")
        ip = request.remote or "?"
        mine = self._streams_by_ip.get(ip, 0)
        if mine >= self.config.max_streams_per_client:
            raise RateLimited(
                f"this client has {mine} streams open (at most {self.config.max_streams_per_client})"
            )
        # counted before the first await, so that concurrent upgrades cannot all pass the checks
        self._streams_by_ip[ip] = mine + 1
        self._streams_opening += 1
        ws = web.WebSocketResponse(heartbeat=self.config.stream_heartbeat_s, max_msg_size=4096)
        if not ws.can_prepare(request).ok:
            self._streams_opening -= 1  # nothing opened
            if mine:
                self._streams_by_ip[ip] = mine
            else:
                self._streams_by_ip.pop(ip, None)
            resp = error_response(
                426, "upgrade_required", "this endpoint is a WebSocket: send Upgrade: websocket"
            )
            resp.headers["Upgrade"] = "websocket"
            return resp
        try:
            try:
                await ws.prepare(request)
            finally:
                self._streams_opening -= 1
            self._streams.add(ws)
            self.m_streams.set(len(self._streams))
            return await self._serve_stream(ws, q)
        finally:
            self._streams.discard(ws)
            self.m_streams.set(len(self._streams))
            left = self._streams_by_ip.get(ip, 1) - 1
            if left > 0:
                self._streams_by_ip[ip] = left
            else:
                self._streams_by_ip.pop(ip, None)
            if ws.prepared and not ws.closed:
                await ws.close()

    async def _serve_stream(
        self, ws: web.WebSocketResponse, q: s.StreamQuery
    ) -> web.WebSocketResponse:
        sub = self.node.subscribe()
        store = self.node.store

        async def send_block(block: Block, receipts: list[Receipt]) -> None:
            # A 5,000-tx block makes thousands of messages: build them off the event loop.
            texts = await asyncio.to_thread(self._stream_messages, q, block, receipts)
            for text in texts:
                try:
                    await asyncio.wait_for(ws.send_str(text), self.config.stream_send_timeout_s)
                except TimeoutError:
                    raise _Lagged(
                        f"client read nothing for {self.config.stream_send_timeout_s:g} s"
                    ) from None

        def load(height: int) -> tuple[Block, list[Receipt]] | None:
            block = store.get_block(height)
            return None if block is None else (block, store.get_receipts(height))

        async def forward() -> None:
            head = store.head()
            head_height = head[0] if head is not None else -1
            await ws.send_str(s.StreamHello(height=max(head_height, 0)).model_dump_json())
            last = head_height
            if q.from_ is not None:
                last = q.from_ - 1
                while last < head_height:
                    stored = await asyncio.to_thread(load, last + 1)
                    if stored is None:
                        break
                    await send_block(*stored)
                    last += 1
            async for block, receipts in sub:
                if block.height <= last:
                    continue
                while last + 1 < block.height:  # fill a gap (commits during the replay, or
                    # blocks the node's subscription dropped for a slow reader)
                    stored = await asyncio.to_thread(load, last + 1)
                    if stored is None:
                        break
                    await send_block(*stored)
                    last += 1
                await send_block(block, receipts)
                last = block.height

        task = asyncio.create_task(forward())
        try:
            reader = asyncio.ensure_future(self._drain(ws))
            done, _ = await asyncio.wait({task, reader}, return_when=asyncio.FIRST_COMPLETED)
            if task in done and task.exception() is not None:
                exc = task.exception()
                if isinstance(exc, _Lagged):
                    self.m_stream_lagged.inc()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(
                            ws.send_str(s.StreamLagged(message=str(exc)).model_dump_json()), 1.0
                        )
                elif not isinstance(exc, ConnectionResetError):
                    log.warning("stream forwarder stopped: %r", exc)
            reader.cancel()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            aclose = getattr(sub, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        """Read (and ignore) what the client sends until it closes: the stream is one-way."""
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break


API_KEY = web.AppKey("accord_api", ClientApi)
"""Where :func:`create_app` keeps the :class:`ClientApi` in the application."""


def create_app(node: NodeView, config: ApiConfig | None = None) -> web.Application:
    """The aiohttp application serving ``node``'s client API (mount it or run it)."""
    api = ClientApi(node, config)
    app = api.app()
    app[API_KEY] = api
    return app


class _JsonErrors(RequestHandler):
    """aiohttp's per-connection protocol, answering in the API's JSON error shape what its HTTP
    parser refuses before any handler runs (a malformed request line, a bad or oversize header,
    a body framing error): aiohttp itself answers those as ``text/plain``, and a client parsing
    every error as JSON then fails on the one kind it cannot retry by fixing a field."""

    __slots__ = ()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp logs each refused request with its traceback at ERROR: one line per bad
        # request a stranger sends. A short line within a budget instead.
        msg, *rest = args
        _PARSE_LOG.log(logging.INFO, "http_parse", str(msg), *rest)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs, refuses if bytes went out
        code = "bad_request" if 400 <= status < 500 else "internal"
        text = "the request could not be parsed as HTTP/1.1" if status < 500 else "internal error"
        if status == 413 or (message and "too long" in message.lower()):
            code, text = "too_large", "a request line or header is too long"
        resp = error_response(status, code, text)
        resp.force_close()
        return resp


_PARSE_LOG = LogBudget(logging.getLogger("accord.api"))


def _protocol(server: web.Server) -> RequestHandler:
    """One connection's protocol, as ``server()`` makes it but with JSON errors."""
    kwargs = getattr(server, "_kwargs", {})
    return _JsonErrors(server, loop=asyncio.get_running_loop(), **kwargs)


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol with what aiohttp does not bound: how many
    connections are open (in total and per client IP: refused at once, before any parsing)
    and how long a request's headers may take (aiohttp waits for ever, so one header byte
    every few seconds held a connection and its descriptor indefinitely)."""

    def __init__(self, api: ClientApi, inner: asyncio.Protocol) -> None:
        self.api = api
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.ip = "?"
        self.admitted = False
        self.timer: asyncio.TimerHandle | None = None
        self.in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        api, cfg = self.api, self.api.config
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else "?"
        reason = None
        if api._conns >= cfg.max_connections:
            reason = "busy"
        elif api._conns_by_ip.get(self.ip, 0) >= cfg.max_connections_per_client:
            reason = "busy_ip"
        if reason is not None:
            api.m_conn_refused.inc(reason=reason)
            transport.close()
            return
        self.admitted = True
        api._conns += 1
        api._conns_by_ip[self.ip] = api._conns_by_ip.get(self.ip, 0) + 1
        api._guards[transport] = self
        api.m_connections.set(api._conns)
        self._arm()
        self.inner.connection_made(transport)

    def _arm(self) -> None:
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.api.config.request_head_timeout_s, self._head_timeout)

    def _head_timeout(self) -> None:
        self.timer = None
        if self.transport is not None and not self.in_request:
            self.api.m_conn_refused.inc(reason="head_timeout")
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.abort()

    def head_received(self) -> None:
        """Called when a request reaches the handlers: its headers are all in."""
        self.in_request = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def request_done(self) -> None:
        self.in_request = False

    def data_received(self, data: bytes) -> None:
        if not self.in_request:
            self._arm()  # the first bytes of a next request: its headers have the same bound
        cast(asyncio.Protocol, self.inner).data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.admitted:
            return
        api = self.api
        api._conns -= 1
        left = api._conns_by_ip.get(self.ip, 1) - 1
        if left > 0:
            api._conns_by_ip[self.ip] = left
        else:
            api._conns_by_ip.pop(self.ip, None)
        if self.transport is not None:
            api._guards.pop(self.transport, None)
        api.m_connections.set(api._conns)
        self.inner.connection_lost(exc)


class ApiServer:
    """Runs the client API on ``host:port`` inside the caller's event loop.

    ``port=0`` picks a free port; read it from :attr:`port` after :meth:`start`.
    """

    def __init__(
        self,
        node: NodeView,
        host: str = "127.0.0.1",
        port: int = 0,
        config: ApiConfig | None = None,
        *,
        tls: tuple[str | Path, str | Path] | None = None,
    ) -> None:
        self.node = node
        self.host = host
        self._port = port
        self.config = config
        self._ssl: ssl.SSLContext | None = None
        if tls is not None:  # loaded here so that a bad file fails before anything listens
            from accord.net.tls import server_context

            self._ssl = server_context(*tls)
        self.app = create_app(node, config)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    @property
    def api(self) -> ClientApi:
        return self.app[API_KEY]

    async def start(self) -> None:
        cfg = self.api.config
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=cfg.keepalive_timeout_s,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        api = self.api
        loop = asyncio.get_running_loop()
        # our own listener rather than TCPSite: each connection's protocol is wrapped in a _Guard
        self._listener = await loop.create_server(
            lambda: _Guard(api, _protocol(server)),
            self.host,
            self._port,
            reuse_address=True,
            ssl=self._ssl,
            backlog=128,
        )
        socks = self._listener.sockets
        if socks:
            self._port = int(socks[0].getsockname()[1])

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl is not None else 'http'}://{self.host}:{self._port}"

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
