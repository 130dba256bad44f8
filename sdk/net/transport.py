"""The validator transport: authenticated, persistent WebSocket connections between validators.

One :class:`Transport` per validator. It listens on the validator's port (aiohttp server, path
``/accord/p2p``) and dials its peers, keeps one authenticated connection per peer, and moves
frames (:mod:`accord.net.frames`) in both directions. It knows nothing about consensus or
blocks: the node hands it payloads to send and receives ``(from_index, kind, payload)``.

Who dials: validator i dials every validator j > i; it only accepts from the others. So each
pair has exactly one dialer and a steady state without duplicate connections. A second
authenticated connection from a peer that is already connected is refused (``duplicate``):
the dialer retries with back-off, and by then a dead connection has been noticed (TCP reset
on a killed process, or the WebSocket heartbeat for a silent one).

Reconnection: the dialer retries forever with exponential back-off (``backoff_base`` doubling
up to ``backoff_max``) and jitter (each delay is multiplied by a random factor in [0.5, 1]) so
that peers restarting together do not dial in lockstep. A successful handshake resets it.

Back-pressure and memory: every peer has two bounded send lanes (frames and bytes):

* ``reliable`` (kinds whose :class:`~accord.net.frames.Overflow` is ``BLOCK``: consensus,
  block requests/responses) is drained first. When it is full, :meth:`Transport.send_wait`
  waits for room (the producer is slowed to the peer's pace) and :meth:`Transport.send`
  refuses the frame (returns False, counted as ``queue_full``) without dropping queued ones.
* ``gossip`` (``DROP_OLDEST`` kinds: transaction batches, status) drops its oldest frames
  to make room (counted as ``queue_drop_oldest``): a slow peer never stalls transaction flow.

On the receiving side a frame is handled before the next one is read, so a slow message
handler pushes back through TCP to the sender's queues. The dedup set, the handshake nonce
memory and metric label sets are bounded too. Nothing grows with traffic.

Inbound checks (each failure is counted in ``accord_net_dropped_total{reason}``): frames larger
than aiohttp's ``max_msg_size`` close the connection (the WebSocket layer cannot skip them);
frames over their kind's limit, undecodable (``garbage``), of unknown or handshake kind, and
text frames are dropped; gossip kinds already seen (by SHA-256 of the frame; echoes and
replays) are dropped as ``duplicate``. After ``max_bad_frames`` bad frames the connection is
closed (``misbehaving``); the peer may reconnect, but its frames never reach the node.

Encryption (``NetConfig.tls_cert``/``tls_key`` set): the listener speaks TLS 1.3 only and the
dialer dials ``wss://``; both handshake signatures cover the listener's certificate as the TLS
session showed it (see :mod:`accord.net.tls`), so a man in the middle holding a certificate of
its own is refused (``bad_signature``). The listener reads the first byte of every connection
before choosing: a TLS ClientHello goes to TLS, anything else (an old plaintext dialer) gets an
HTTP ``426`` saying that this validator requires TLS, counted as
``accord_net_handshake_failures_total{reason="plaintext"}``; on a plaintext validator a TLS
ClientHello is closed and counted as ``tls_not_enabled``. A dialer refused that way counts
``accord_net_dial_failures_total{reason="tls_required"}`` (or ``tls``).

Pre-authentication frames are capped at the handshake's size on both sides: accepted
connections open at ``HANDSHAKE_MAX`` and are widened just before READY; dialed connections
open at ``HANDSHAKE_MAX`` too and are widened once the acceptor's CHALLENGE signature has
verified (a hostile listener answering a dial with a huge frame is refused at its header,
``oversized``).

Request/response (catch-up): :meth:`Transport.request` sends ``BLOCK_REQUEST`` ``{id, body}``
to one peer and waits for the matching ``BLOCK_RESPONSE``; the peer answers with its
``on_request`` handler in a separate task (at most ``max_served_requests`` per peer). Answers
are accepted once, from the peer asked, for an outstanding id; anything else is dropped as
``unsolicited``, so replayed answers change nothing.

Rules for users: call the transport from its event loop's thread only (a node on a
background thread uses ``loop.call_soon_threadsafe``). Keep ``on_message`` quick: it runs in
the peer's read loop, so a handler that awaits ``send_wait`` toward a peer that is itself
waiting on us could deadlock both; hand heavy work to the node's own bounded queues or
tasks. A handler blocked for longer than ``heartbeat / 2`` s makes aiohttp's ping timeout drop
the connection (which then reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.errors import AccordError, BadFrame, HandshakeRefused, NetError, ValidationError
from accord.base.genesis import Genesis
from accord.base.logbudget import LogBudget
from accord.base.metrics import Registry
from accord.net import handshake as hs
from accord.net import tls as _tls
from accord.net.frames import (
    HANDSHAKE_KINDS,
    HANDSHAKE_MAX,
    Kind,
    KindSpec,
    Overflow,
    decode_frame,
    encode_frame,
    kind_specs,
    max_frame,
)

log = logging.getLogger("accord.net")

_WsReader: Any = None
try:  # aiohttp's frame parser, to raise a connection's frame limit once its peer is authenticated
    from aiohttp._websocket.reader import WebSocketReader as _WsReader
except ImportError:  # pragma: no cover - older aiohttp
    with contextlib.suppress(ImportError):
        from aiohttp.http_websocket import WebSocketReader as _WsReader

_widening_works = _WsReader is not None
"""Whether connections (accepted and dialed) start at the handshake's frame limit (see
_widen_frame_limit and _widen_dialer_frame_limit)."""


def _widen_frame_limit(ws: web.WebSocketResponse, limit: int) -> bool:
    """Give an accepted connection, now authenticated, the transport's full frame limit.

    An unauthenticated peer must not make a validator buffer more than a handshake frame
    (before: up to ``max_frame``, 33 MB per connection; eight parallel ones took a validator
    from 72 to 865 MB, never given back). aiohttp fixes a WebSocket's size limit when the
    connection opens, so accepted connections open at ``HANDSHAKE_MAX`` and their frame
    parser is replaced by one with ``limit`` right before READY is sent: the dialer sends
    nothing between its AUTH and our READY, so no partial frame is lost in the swap. This
    reaches into aiohttp's internals (checked here, and by the transport tests); if they are
    not as expected it returns False, and later connections open at the full limit.
    """
    req = getattr(ws, "_req", None)
    proto = getattr(req, "protocol", None)
    queue = getattr(ws, "_reader", None)
    if (
        _WsReader is None
        or proto is None
        or queue is None
        or getattr(proto, "_payload_parser", None) is None
    ):
        return False
    try:
        parser = _WsReader(
            queue, limit, compress=False, decode_text=getattr(ws, "_decode_text", True)
        )
    except TypeError:
        try:
            parser = _WsReader(queue, limit, compress=False)
        except TypeError:
            return False
    proto._payload_parser = parser
    if hasattr(ws, "_parser"):
        ws._parser = parser
    return True


def _widen_dialer_frame_limit(ws: aiohttp.ClientWebSocketResponse, limit: int) -> bool:
    """Give a dialed connection, whose acceptor has proven its key, the full frame limit.

    Dialed connections open at ``HANDSHAKE_MAX`` so that a hostile listener cannot make the
    dialer buffer a big frame before it has proven anything. The swap happens after the
    CHALLENGE verified and before AUTH leaves: an honest acceptor sends nothing in between
    (READY answers AUTH), so no frame is split across the two parsers. Same caveat as
    :func:`_widen_frame_limit` about aiohttp's internals (False if they are not as expected).
    """
    resp = getattr(ws, "_response", None)
    conn = getattr(resp, "connection", None)
    proto = getattr(conn, "protocol", None)
    queue = getattr(ws, "_reader", None)
    if (
        _WsReader is None
        or proto is None
        or queue is None
        or getattr(proto, "_payload_parser", None) is None
    ):
        return False
    try:
        parser = _WsReader(queue, limit, compress=False, decode_text=True)
    except TypeError:
        try:
            parser = _WsReader(queue, limit, compress=False)
        except TypeError:
            return False
    proto._payload_parser = parser
    if hasattr(ws, "_parser"):
        ws._parser = parser
    return True


def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _is_tls_error(e: BaseException) -> bool:
    seen: BaseException | None = e
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, (ssl.SSLError, aiohttp.ClientSSLError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


MessageHandler = Callable[[int, Kind, encoding.Value], Awaitable[None] | None]
PeerHandler = Callable[[int, bool], Awaitable[None] | None]
RequestHandler = Callable[[int, encoding.Value], Awaitable[encoding.Value]]

RELIABLE = "reliable"
GOSSIP = "gossip"
_CLOSE_REFUSED = 4001
_CLOSE_MISBEHAVING = 4002
_PLAINTEXT_REFUSAL_TEXT = b"this validator requires TLS on validator links: dial wss:// (set p2p_tls in node.json, or upgrade Accord)\n"
_PLAINTEXT_REFUSAL = (
    b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: TLS/1.3\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n"
    % len(_PLAINTEXT_REFUSAL_TEXT)
) + _PLAINTEXT_REFUSAL_TEXT
_TLS_ALERT_HANDSHAKE_FAILURE = b"\x15\x03\x03\x00\x02\x02\x28"
"""A fatal TLS alert record (handshake_failure): what a plaintext listener answers a ClientHello."""
_TX_OVERHEAD = 8  # generous msgpack framing per transaction inside a batch


def _disable_widening() -> None:
    global _widening_works
    log.error(
        "this aiohttp version's frame parser cannot be replaced: connections now open at the full "
        "frame limit (unauthenticated peers can make this validator buffer more)"
    )
    _widening_works = False


@dataclass
class NetConfig:
    """Local transport settings (not consensus-critical; may differ between validators)."""

    path: str = "/accord/p2p"
    fanout: int | None = None
    """gossip fanout; None uses ``gossip_fanout`` of the consensus parameters in force"""
    queue_frames: int = 4096
    """per peer and lane"""
    queue_bytes: int = 32 * 1024 * 1024
    """per peer and lane; one frame larger than this is still accepted into an empty lane"""
    max_bad_frames: int = 32
    misbehaving_ban: float = 5.0
    """seconds during which a peer closed as misbehaving is refused (``banned``)"""
    handshake_timeout: float = 5.0
    max_pending_handshakes: int = 16
    """the shared pool of pending handshakes (any source address)"""
    max_pending_handshakes_per_ip: int = 4
    """pending handshakes from one remote address in the shared pool: a few hosts cannot take
    every slot"""
    peer_handshake_slots: int = 4
    """pending handshakes reserved for each configured validator address (genesis or node.json),
    used once the shared pool or its per-address share is full: silent connections from other
    addresses cannot lock the validators out of each other"""
    first_byte_timeout: float = 1.0
    """seconds a connection from an address that is no validator's may stay silent before its
    first byte (a dialer sends its ClientHello or request at once); configured addresses get
    ``handshake_timeout``"""
    max_pending_requests: int = 256
    """outstanding :meth:`Transport.request` calls, all peers together"""
    max_served_requests: int = 8
    """requests from one peer being answered at once; more are dropped (``busy``)"""
    heartbeat: float = 10.0
    connect_timeout: float = 5.0
    backoff_base: float = 0.1
    backoff_max: float = 5.0
    dedup_capacity: int = 100_000
    nonce_memory: int = 8192
    tx_batch_delay: float = 0.05
    """seconds a transaction batch waits for more before it leaves: a frame costs about as much
    CPU whatever its size (~0.5 ms on a slow 2-core machine), and 50 ms instead of 5 ms cut the
    validators' CPU per transaction by ~10% at 900 tx/s; rounds are a second long"""
    tx_batch_bytes: int = 256 * 1024
    tls_cert: str | None = None
    """PEM certificate of this validator's listener; with ``tls_key``, links are encrypted
    (TLS 1.3) and TLS is required of every peer. Both None: plaintext links (older networks)."""
    tls_key: str | None = None


def _norm_ip(ip: str) -> str:
    """One spelling per address (an IPv4 peer reaching a dual-stack socket shows up as
    ``::ffff:a.b.c.d``), so that the per-address counts and the validator set agree."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(a)


async def _close_quietly(
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    code: int,
    message: bytes,
    timeout: float = 2.0,
) -> None:
    """Close a WebSocket within ``timeout``, whatever state its connection is in.

    The close runs as its own task: aiohttp may cancel or fail a close whose connection is
    lost mid-way (both ends stopping at once), and that must neither raise into the caller
    nor hang it (a peer that stopped reading would block the close handshake forever)."""
    task = asyncio.ensure_future(ws.close(code=code, message=message))
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: a failed close of a dying connection is expected


class _Peer:
    """One authenticated connection: its send lanes and state."""

    def __init__(
        self,
        index: int,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        cfg: NetConfig,
        dialed: bool,
    ) -> None:
        self.index = index
        self.ws = ws
        self.dialed = dialed
        self.cfg = cfg
        self.lanes: dict[str, deque[tuple[bytes, Kind]]] = {RELIABLE: deque(), GOSSIP: deque()}
        self.lane_bytes = {RELIABLE: 0, GOSSIP: 0}
        self.max_frames_seen = {RELIABLE: 0, GOSSIP: 0}
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.closed = False
        self.bad = 0
        self.close_reason = "closed"

    def fits(self, lane: str, size: int) -> bool:
        q = self.lanes[lane]
        if len(q) >= self.cfg.queue_frames:
            return False
        return not q or self.lane_bytes[lane] + size <= self.cfg.queue_bytes

    def push(self, lane: str, frame: bytes, kind: Kind) -> None:
        q = self.lanes[lane]
        q.append((frame, kind))
        self.lane_bytes[lane] += len(frame)
        if len(q) > self.max_frames_seen[lane]:
            self.max_frames_seen[lane] = len(q)
        self.wake.set()

    def drop_oldest(self, lane: str) -> None:
        frame, _ = self.lanes[lane].popleft()
        self.lane_bytes[lane] -= len(frame)

    def pop(self) -> tuple[bytes, Kind] | None:
        for lane in (RELIABLE, GOSSIP):
            q = self.lanes[lane]
            if q:
                frame, kind = q.popleft()
                self.lane_bytes[lane] -= len(frame)
                self.room.set()
                return frame, kind
        return None


class Transport:
    """Authenticated WebSocket mesh between the validators of one genesis.

    ``addresses`` overrides genesis host/port per validator index (tests use ephemeral ports:
    start every transport with ``port=0`` and call :meth:`set_address` with the bound ports).
    ``on_message(from_index, kind, payload)`` and ``on_peer(index, connected)`` may be plain
    functions or coroutines; they run on the transport's event loop, one frame at a time per
    peer, so a slow handler applies back-pressure to that peer.

    **The roster.** Peers are numbered locally: genesis's validators first, in genesis order,
    then validators governance added (``roster`` at construction, :meth:`add_validator` later),
    in the order this node learnt them. The handshake binds keys, not numbers, so two nodes
    need not number a newcomer alike. Of two validators the one earlier in genesis dials the
    other; a validator not in genesis dials those in genesis, and of two newcomers the lower
    key dials.
    """

    def __init__(
        self,
        genesis: Genesis,
        index: int,
        secret: bytes,
        *,
        host: str | None = None,
        port: int | None = None,
        addresses: Mapping[int, tuple[str, int]] | None = None,
        config: NetConfig | None = None,
        metrics: Registry | None = None,
        on_message: MessageHandler | None = None,
        on_peer: PeerHandler | None = None,
        on_request: RequestHandler | None = None,
        roster: Sequence[tuple[str, bytes]] = (),
        named_addresses: Mapping[str, tuple[str, int]] | None = None,
        block_bytes: int | None = None,
    ) -> None:
        self._keys = genesis.validator_keys()
        self._names = [v.name for v in genesis.validators]
        for name, key in roster:
            if key not in self._keys:
                self._keys.append(key)
                self._names.append(name)
        if not 0 <= index < len(self._keys):
            raise ValidationError(
                f"validator index {index} is not in genesis (n={genesis.n}) or the roster"
            )
        self.genesis = genesis
        self.index = index
        self._secret = secret
        if bls.public_key(secret) != self._keys[index]:
            raise ValidationError(f"the secret key is not validator {index}'s key in genesis")
        self._key_index = {k: i for i, k in enumerate(self._keys)}
        self.me = self._keys[index]
        self.genesis_hash = genesis.hash
        self.config = config or NetConfig()
        me = genesis.validators[index] if index < genesis.n else None
        # Addresses are node configuration; an older genesis's legacy addresses are only the
        # fallback for validators the caller names none for.
        self.host = host if host is not None else ((me.host if me else None) or "127.0.0.1")
        self.port = port if port is not None else ((me.port if me else None) or 0)
        self._named_addresses = dict(named_addresses or {})
        self._addresses: dict[int, tuple[str, int]] = {
            i: (v.host or "127.0.0.1", v.port) for i, v in enumerate(genesis.validators) if v.port
        }
        if addresses:
            self._addresses.update(addresses)
        for j in range(genesis.n, len(self._keys)):
            if self._names[j] in self._named_addresses:
                self._addresses.setdefault(j, self._named_addresses[self._names[j]])
        self._tls_server: ssl.SSLContext | None = None
        self._tls_client: ssl.SSLContext | None = None
        self._own_binding: bytes | None = None
        cfg = self.config
        if (cfg.tls_cert is None) != (cfg.tls_key is None):
            raise ValidationError(
                "validator TLS needs both a certificate and its key (tls_cert, tls_key)"
            )
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            self._tls_server = _tls.link_server_context(cfg.tls_cert, cfg.tls_key)
            self._tls_client = _tls.link_client_context()
            self._own_binding = _tls.channel_binding(_tls.cert_der(cfg.tls_cert))
        self.specs: dict[Kind, KindSpec] = kind_specs(genesis.consensus, block_bytes)
        self.max_frame = max_frame(self.specs)
        self.block_bytes = genesis.consensus.max_block_bytes if block_bytes is None else block_bytes
        """The largest block frames are sized for (see :meth:`carry_blocks`)."""
        self.gossip_fanout = genesis.consensus.gossip_fanout
        """Peers :meth:`gossip` sends to: genesis's, then what governance put in force (the
        node sets it)."""
        self.on_message = on_message
        self.on_peer = on_peer
        self.on_request = on_request
        self.metrics = metrics if metrics is not None else Registry()
        self._define_metrics()

        self._peers: dict[int, _Peer] = {}
        self._seen = hs.RecentSet(self.config.dedup_capacity)
        self._nonces = hs.RecentSet(self.config.nonce_memory)
        self._pending_handshakes = 0
        self._pending_by_ip: dict[str, int] = {}
        self._open_ws: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._opening: set[asyncio.Task[None]] = set()
        self._opening_by_ip: dict[str, int] = {}
        self._opening_reserved_by_ip: dict[str, int] = {}
        self._pending_reserved_by_ip: dict[str, int] = {}
        self._peer_ips: set[str] = set()
        # what unauthenticated peers trigger is logged with a budget (see accord.base.logbudget)
        self._log = LogBudget(log, on_held=lambda kind: self.m_log_held.inc(kind=kind))
        self._warned_plaintext = hs.RecentSet(256)
        self._session: aiohttp.ClientSession | None = None
        self._dialers: list[asyncio.Task[None]] = []
        self._addr_changed: asyncio.Event | None = None
        self._refreshing: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._started = False
        self._rng = random.Random()
        self._tx_pending: list[bytes] = []
        self._tx_bytes = 0
        self._tx_timer: asyncio.TimerHandle | None = None
        self._requests: dict[int, tuple[int, asyncio.Future[encoding.Value]]] = {}
        self._next_request_id = random.getrandbits(48)
        self._serving: dict[int, set[asyncio.Task[None]]] = {}
        self._banned_until: dict[int, float] = {}
        self._retired: set[int] = set()
        self._dialing: set[int] = set()
        """Validators a dial loop runs for (one each)."""
        self.bound_port: int | None = None

    # --- metrics -------------------------------------------------------------------------

    def _define_metrics(self) -> None:
        m = self.metrics
        self.m_frames_in = m.counter(
            "accord_net_frames_in_total", "frames accepted from peers", ["kind"]
        )
        self.m_frames_out = m.counter(
            "accord_net_frames_out_total", "frames written to peers", ["kind"]
        )
        self.m_bytes_in = m.counter(
            "accord_net_bytes_in_total", "bytes of accepted frames", ["kind"]
        )
        self.m_bytes_out = m.counter(
            "accord_net_bytes_out_total", "bytes of written frames", ["kind"]
        )
        self.m_dropped = m.counter(
            "accord_net_dropped_total", "frames dropped, inbound or outbound, by reason", ["reason"]
        )
        self.m_hs_fail = m.counter(
            "accord_net_handshake_failures_total",
            "handshakes refused or failed, by reason",
            ["reason"],
        )
        self.m_log_held = m.counter(
            "accord_net_log_lines_held_total",
            "log lines about strangers' connections held back by the log budget, by kind",
            ["kind"],
        )
        self.m_hs_reserved = m.counter(
            "accord_net_reserved_handshake_slots_total",
            "connections from a configured validator address admitted on its reserved slots "
            "because the shared pool was full",
            ["stage"],
        )
        self.m_hs_ok = m.counter(
            "accord_net_handshakes_total", "authenticated connections", ["role"]
        )
        self.m_disconnects = m.counter(
            "accord_net_disconnects_total",
            "authenticated connections closed, by reason",
            ["reason"],
        )
        self.m_dial_fail = m.counter(
            "accord_net_dial_failures_total", "dial attempts that did not connect", ["reason"]
        )
        self.m_handler_errors = m.counter(
            "accord_net_handler_errors_total", "exceptions raised by the message handler"
        )
        self.m_connected = m.gauge(
            "accord_net_connected_peers", "authenticated peers connected now"
        )
        self.m_queue_frames = m.gauge(
            "accord_net_queue_frames", "frames waiting in a peer's send lane", ["peer", "lane"]
        )
        self.m_queue_bytes = m.gauge(
            "accord_net_queue_bytes", "bytes waiting in a peer's send lane", ["peer", "lane"]
        )
        m.add_collector(self._collect)

    def _collect(self) -> None:
        self.m_connected.set(len(self._peers))
        self.m_queue_frames.clear()
        self.m_queue_bytes.clear()
        for j, p in list(self._peers.items()):
            name = self._names[j]
            for lane in (RELIABLE, GOSSIP):
                self.m_queue_frames.set(len(p.lanes[lane]), peer=name, lane=lane)
                self.m_queue_bytes.set(p.lane_bytes[lane], peer=name, lane=lane)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, then dial every higher-index validator (in the background, forever)."""
        if self._started:
            return
        self._started = True
        self._addr_changed = asyncio.Event()
        app = web.Application(client_max_size=1024)
        app.router.add_get(self.config.path, self._accept)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._refresh_peer_ips()
        await self._listen()
        self._session = aiohttp.ClientSession()
        for j in range(len(self._keys)):
            if self._dials(j):
                self._start_dialer(j)

    def _order(self, j: int) -> tuple[int, bytes]:
        return (j if j < self.genesis.n else self.genesis.n, self._keys[j])

    def _dials(self, j: int) -> bool:
        """Whether this side dials validator ``j`` (see the roster in the class docstring)."""
        return j != self.index and self._order(self.index) < self._order(j)

    def _start_dialer(self, j: int) -> None:
        self._dialing.add(j)
        self._dialers.append(asyncio.create_task(self._dial_loop(j), name=f"accord-dial-{j}"))

    def add_validator(self, name: str, key: bytes) -> int:
        """A validator governance added (or this node learnt late): its local index, and, if
        this side dials it, a dialer to the address node.json's ``peers`` names for it."""
        j = self._key_index.get(key)
        if j is not None:
            return j
        j = len(self._keys)
        self._keys.append(key)
        self._names.append(name)
        self._key_index[key] = j
        if name in self._named_addresses:
            self._addresses.setdefault(j, self._named_addresses[name])
        if self._started and not self._stopping and self._dials(j):
            self._start_dialer(j)
        return j

    def become(self, index: int, secret: bytes) -> None:
        """Speak as validator ``index`` (already in the roster) with ``secret`` from now on:
        this validator's key was rotated by vote. Every link authenticated the old key, so
        each is closed and made again under the new one (peers that have not yet executed
        the rotation refuse it until they have; the dialers retry), and the dial rule is
        applied anew for this side's new place."""
        key = bls.public_key(secret)
        if self._keys[index] != key:
            raise ValidationError(f"the secret is not validator {index}'s key in the roster")
        self.index, self._secret, self.me = index, secret, key
        for peer in list(self._peers.values()):
            peer.close_reason = "rekeyed"
            self._close_later(peer)
        if self._started and not self._stopping:
            for j in range(len(self._keys)):
                if self._dials(j) and j not in self._dialing and j not in self._retired:
                    self._start_dialer(j)

    def _close_later(self, peer: _Peer) -> None:
        async def close() -> None:
            await peer.ws.close()

        task = asyncio.get_running_loop().create_task(close())
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    def index_of(self, key: bytes) -> int | None:
        return self._key_index.get(key)

    def retire(self, key: bytes) -> None:
        """A key its validator rotated away (often because it leaked): refused from now on,
        its connection closed, its entry no longer dialed. Idempotent."""
        j = self._key_index.pop(key, None)
        if j is None:
            return
        self._retired.add(j)
        peer = self._peers.get(j)
        if peer is not None:
            peer.close_reason = "retired"
            self._close_later(peer)

    def carry_blocks(self, block_bytes: int) -> None:
        """Size frames for blocks of up to ``block_bytes`` from now on (governance scheduled
        a larger ``max_block_bytes``; never lowered: smaller blocks still fit). A connection's
        frame limit is fixed when its handshake ends, so every open connection is closed and
        dialed again with the new limit (what the core sends meanwhile it resends)."""
        if block_bytes <= self.block_bytes:
            return
        self.block_bytes = block_bytes
        self.specs = kind_specs(self.genesis.consensus, block_bytes)
        self.max_frame = max_frame(self.specs)
        for peer in list(self._peers.values()):
            peer.close_reason = "frame_limit"

            async def close(ws: Any = peer.ws) -> None:
                await ws.close()

            task = asyncio.get_running_loop().create_task(close())
            self._refreshing.add(task)
            task.add_done_callback(self._refreshing.discard)

    def name_of(self, index: int) -> str:
        return self._names[index]

    async def stop(self) -> None:
        """Close every connection and the listener; cancel dialers. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._tx_timer is not None:
            self._tx_timer.cancel()
            self._tx_timer = None
        for t in self._dialers:
            t.cancel()
        for t in [*self._accepting, *self._opening]:
            t.cancel()
        await asyncio.gather(*self._accepting, *self._opening, return_exceptions=True)
        for sock in self._listeners:
            sock.close()
        for tasks in self._serving.values():
            for t in tasks:
                t.cancel()
        sockets: list[web.WebSocketResponse | aiohttp.ClientWebSocketResponse] = []
        for p in list(self._peers.values()):
            p.close_reason = "stopping"
            sockets.append(p.ws)
        sockets.extend(ws for ws in list(self._open_ws) if ws not in sockets)
        await asyncio.gather(
            *(_close_quietly(ws, aiohttp.WSCloseCode.GOING_AWAY, b"stopping") for ws in sockets)
        )
        await asyncio.gather(*self._dialers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self.metrics.remove_collector(self._collect)

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set_address(self, index: int, host: str, port: int) -> None:
        """Point the dialer for ``index`` at a new address (takes effect on the next dial)."""
        self._addresses[index] = (host, port)
        if self._addr_changed is not None:
            self._addr_changed.set()
            task = asyncio.get_running_loop().create_task(self._refresh_peer_ips())
            self._refreshing.add(task)
            task.add_done_callback(self._refreshing.discard)

    async def _refresh_peer_ips(self) -> None:
        """The addresses the other validators are configured at (resolved), which get reserved
        handshake slots. A name that does not resolve now is skipped (logged): its validator
        still competes for the shared pool, behind the first-byte deadline, like a NAT'd one."""
        loop = asyncio.get_running_loop()
        ips: set[str] = set()
        for j, (host, _port) in list(self._addresses.items()):
            if j == self.index or not host:
                continue
            try:
                ips.add(_norm_ip(str(ipaddress.ip_address(host))))
                continue
            except ValueError:
                pass
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), 5.0
                )
            except (OSError, TimeoutError) as e:
                log.warning(
                    "validator %d: cannot resolve validator %d's host %r: %r (no reserved "
                    "handshake slots for it)",
                    self.index,
                    j,
                    host,
                    e,
                )
                continue
            ips.update(_norm_ip(str(info[4][0])) for info in infos)
        self._peer_ips = ips

    def _admit(
        self,
        ip: str,
        shared: int,
        shared_by_ip: dict[str, int],
        reserved_by_ip: dict[str, int],
        stage: str,
    ) -> str | None:
        """Which pool a new pending connection from ``ip`` takes ("shared", "reserved"), or None
        (refused and counted). Reserved slots are only for configured validator addresses and
        only once their shared share is gone, so that the shared limits still mean what they say."""
        cfg = self.config
        if (
            shared < cfg.max_pending_handshakes
            and shared_by_ip.get(ip, 0) < cfg.max_pending_handshakes_per_ip
        ):
            return "shared"
        if ip in self._peer_ips and reserved_by_ip.get(ip, 0) < cfg.peer_handshake_slots:
            self.m_hs_reserved.inc(stage=stage)
            return "reserved"
        self.m_hs_fail.inc(reason="busy" if shared >= cfg.max_pending_handshakes else "busy_ip")
        return None

    # --- queries -------------------------------------------------------------------------

    def peers(self) -> list[int]:
        """Indexes of the validators connected and authenticated now."""
        return sorted(self._peers)

    def is_connected(self, index: int) -> bool:
        return index in self._peers

    def peer_stats(self) -> dict[int, dict[str, object]]:
        return {
            j: {
                "dialed": p.dialed,
                "queue_frames": {lane: len(q) for lane, q in p.lanes.items()},
                "queue_bytes": dict(p.lane_bytes),
                "queue_frames_max": dict(p.max_frames_seen),
                "bad_frames": p.bad,
            }
            for j, p in sorted(self._peers.items())
        }

    async def wait_connected(self, count: int | None = None, timeout: float = 10.0) -> None:
        """Wait until ``count`` peers (default: all others) are connected."""
        want = self.genesis.n - 1 if count is None else count
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self._peers) < want:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"validator {self.index}: {len(self._peers)}/{want} peers connected"
                )
            await asyncio.sleep(0.01)

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every peer's send lanes are empty (e.g. before a clean stop, so queued
        frames are written rather than discarded). False if ``timeout`` passes first."""
        self.flush_txs()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(p.lanes[RELIABLE] or p.lanes[GOSSIP] for p in self._peers.values()):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # --- sending -------------------------------------------------------------------------

    def _lane(self, kind: Kind) -> str:
        return GOSSIP if self.specs[kind].overflow is Overflow.DROP_OLDEST else RELIABLE

    def _check_kind(self, kind: Kind) -> Kind:
        kind = Kind(kind)
        if kind in HANDSHAKE_KINDS:
            raise ValidationError("handshake kinds are sent by the transport itself")
        return kind

    def _frame(self, kind: Kind, payload: encoding.Value) -> bytes:
        frame = encode_frame(kind, payload)
        if len(frame) > self.specs[kind].max_bytes:
            raise ValidationError(
                f"{kind.name} frame of {len(frame)} bytes exceeds its limit {self.specs[kind].max_bytes}"
            )
        if self.specs[kind].dedup:
            # remember our own gossip so that echoes from peers are dropped as duplicates
            self._seen.add(encoding.sha256(frame))
        return frame

    def _enqueue(self, peer: _Peer, kind: Kind, frame: bytes) -> bool:
        lane = self._lane(kind)
        if lane == GOSSIP:
            while not peer.fits(lane, len(frame)) and peer.lanes[lane]:
                peer.drop_oldest(lane)
                self.m_dropped.inc(reason="queue_drop_oldest")
        elif not peer.fits(lane, len(frame)):
            self.m_dropped.inc(reason="queue_full")
            return False
        peer.push(lane, frame, kind)
        return True

    def send(self, index: int, kind: Kind, payload: encoding.Value) -> bool:
        """Queue a frame for one peer without waiting. False if the peer is not connected or
        (for must-deliver kinds) its reliable lane is full; both are counted."""
        kind = self._check_kind(kind)
        frame = self._frame(kind, payload)
        peer = self._peers.get(index)
        if peer is None:
            self.m_dropped.inc(reason="not_connected")
            return False
        return self._enqueue(peer, kind, frame)

    async def send_wait(
        self, index: int, kind: Kind, payload: encoding.Value, timeout: float | None = None
    ) -> bool:
        """Queue a frame for one peer, waiting for room in its lane (back-pressure on the
        producer). False if the peer is (or becomes) disconnected or ``timeout`` passes."""
        kind = self._check_kind(kind)
        frame = self._frame(kind, payload)
        lane = self._lane(kind)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            peer = self._peers.get(index)
            if peer is None or peer.closed:
                self.m_dropped.inc(reason="not_connected")
                return False
            if lane == GOSSIP or peer.fits(lane, len(frame)):
                return self._enqueue(peer, kind, frame)
            peer.room.clear()
            try:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(peer.room.wait(), left)
            except TimeoutError:
                self.m_dropped.inc(reason="send_timeout")
                return False

    def broadcast(
        self,
        kind: Kind,
        payload: encoding.Value,
        fanout: int | None = None,
        exclude: Iterable[int] = (),
    ) -> int:
        """Send one frame to every connected peer (``fanout=None``) or to ``fanout`` of them
        chosen at random, skipping ``exclude`` (e.g. the peer a relayed message came from).
        Returns how many peers it was queued for."""
        kind = self._check_kind(kind)
        frame = self._frame(kind, payload)
        skip = set(exclude)
        targets = [p for j, p in self._peers.items() if j not in skip]
        if fanout is not None and fanout < len(targets):
            targets = self._rng.sample(targets, fanout)
        return sum(1 for p in targets if self._enqueue(p, kind, frame))

    def gossip(self, kind: Kind, payload: encoding.Value, exclude: Iterable[int] = ()) -> int:
        """:meth:`broadcast` with the configured fanout (:attr:`gossip_fanout` unless
        ``NetConfig.fanout`` says otherwise)."""
        fanout = self.config.fanout if self.config.fanout is not None else self.gossip_fanout
        return self.broadcast(kind, payload, fanout=fanout, exclude=exclude)

    def gossip_tx(self, tx: bytes) -> None:
        """Add one encoded transaction to the outgoing batch. Batches leave when they reach
        ``tx_batch_bytes`` or ``tx_batch_delay`` after their first transaction: many
        transactions per frame is what makes thousands of transactions per second cheap."""
        limit = min(self.config.tx_batch_bytes, self.specs[Kind.TX_BATCH].max_bytes - 64)
        if len(tx) + _TX_OVERHEAD > limit:
            raise ValidationError(f"a transaction of {len(tx)} bytes does not fit in a batch")
        if self._tx_bytes + len(tx) + _TX_OVERHEAD > limit:
            self.flush_txs()
        self._tx_pending.append(tx)
        self._tx_bytes += len(tx) + _TX_OVERHEAD
        if self._tx_timer is None:
            self._tx_timer = asyncio.get_running_loop().call_later(
                self.config.tx_batch_delay, self.flush_txs
            )

    def flush_txs(self) -> None:
        """Send the pending transaction batch now."""
        if self._tx_timer is not None:
            self._tx_timer.cancel()
            self._tx_timer = None
        if not self._tx_pending:
            return
        batch, self._tx_pending, self._tx_bytes = self._tx_pending, [], 0
        self.gossip(Kind.TX_BATCH, batch)

    # --- listening -----------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        """Whether this transport's links are TLS (and TLS is required of its peers)."""
        return self._tls_server is not None

    async def _listen(self) -> None:
        """Bind the listener's sockets (every address ``host`` resolves to, as aiohttp's own
        site would) and accept on them. Our own accept loop, not aiohttp's, so that the first
        byte of each connection decides between TLS and a clear refusal (see _open)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: set[tuple[int, Any]] = set()
        port = self.port
        try:
            for family, type_, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                sock = socket.socket(family, type_, proto)
                self._listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port and not self.port:  # port 0 on several addresses: the same port on all
                    addr = (addr[0], port, *addr[2:])
                sock.bind(addr)
                sock.listen(128)
                sock.setblocking(False)
                port = sock.getsockname()[1]
        except BaseException:
            for sock in self._listeners:
                sock.close()
            self._listeners.clear()
            raise
        self.bound_port = int(port)
        self._accepting = [
            asyncio.create_task(self._accept_loop(s), name="accord-accept") for s in self._listeners
        ]

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as e:  # out of descriptors and the like: wait, do not spin
                self._log.log(
                    logging.WARNING, "accept", "validator %d: accept failed: %r", self.index, e
                )
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            ip = _norm_ip(str(addr[0])) if addr else "?"
            shared = len(self._opening) - sum(self._opening_reserved_by_ip.values())
            pool = self._admit(
                ip, shared, self._opening_by_ip, self._opening_reserved_by_ip, "open"
            )
            if pool is None:
                conn.close()
                continue
            counts = self._opening_by_ip if pool == "shared" else self._opening_reserved_by_ip
            counts[ip] = counts.get(ip, 0) + 1
            task = asyncio.create_task(self._open(conn, ip, counts))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    @staticmethod
    async def _peek(conn: socket.socket) -> bytes:
        """The connection's first byte, left in the socket for whoever reads it next."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return conn.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(conn.fileno(), _set_once, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(conn.fileno())

    async def _open(self, conn: socket.socket, ip: str, counts: dict[str, int]) -> None:
        """Hand an accepted connection to the WebSocket server, over TLS or not, or refuse it.

        Bounded like the handshake: ``max_pending_handshakes`` connections (and
        ``max_pending_handshakes_per_ip`` from one address) may be here at once, each for at
        most ``handshake_timeout`` (first byte and TLS handshake included); a connection from
        an address that is no validator's must send its first byte within
        ``first_byte_timeout``, so that silent connections free the shared slots quickly."""
        loop = asyncio.get_running_loop()
        handed = False
        assert self._runner is not None
        server = self._runner.server
        assert server is not None
        try:
            known = ip in self._peer_ips
            deadline = self.config.handshake_timeout if known else self.config.first_byte_timeout
            try:
                first = await asyncio.wait_for(self._peek(conn), deadline)
            except TimeoutError:
                self.m_hs_fail.inc(reason="timeout" if known else "first_byte_timeout")
                return
            if not first:
                return
            tls_hello = first[0] == 0x16  # a TLS handshake record: ClientHello
            if self._tls_server is None:
                if tls_hello:
                    self.m_hs_fail.inc(reason="tls_not_enabled")
                    self._log.log(
                        logging.INFO,
                        "tls_refused",
                        "validator %d: refused a TLS connection from %s: this validator's links are "
                        "plaintext (no p2p_tls in its node.json)",
                        self.index,
                        ip,
                    )
                    # a TLS alert, so that the dialer's TLS layer reports a TLS failure rather
                    # than a reset; the ClientHello is read first (closing with unread bytes
                    # would reset the connection before the alert arrives)
                    with contextlib.suppress(OSError):
                        conn.recv(65536)
                        conn.send(_TLS_ALERT_HANDSHAKE_FAILURE)
                    return
                await loop.connect_accepted_socket(server, conn)
            elif tls_hello:
                try:
                    await loop.connect_accepted_socket(
                        server,
                        conn,
                        ssl=self._tls_server,
                        ssl_handshake_timeout=self.config.handshake_timeout,
                    )
                except (OSError, TimeoutError) as e:  # ssl.SSLError is an OSError
                    self.m_hs_fail.inc(reason="tls_handshake")
                    self._log.log(
                        logging.INFO,
                        "tls_handshake",
                        "validator %d: TLS handshake with %s failed: %r",
                        self.index,
                        ip,
                        e,
                    )
                    return
            else:
                self.m_hs_fail.inc(reason="plaintext")
                level = logging.WARNING if self._warned_plaintext.add(ip.encode()) else logging.INFO
                # budgeted like every line a stranger triggers: one line per garbage connection
                # would let a flood write the log at the rate it connects
                self._log.log(
                    level,
                    "plaintext",
                    "validator %d: refused a plaintext connection from %s: this validator requires "
                    "TLS on its links (an old version, or a peer without p2p_tls in node.json)",
                    self.index,
                    ip,
                )
                await self._refuse_plaintext(conn)
                return
            handed = True
        except (OSError, TimeoutError) as e:
            self._log.log(
                logging.INFO,
                "opening",
                "validator %d: connection from %s lost while opening: %r",
                self.index,
                ip,
                e,
            )
        finally:
            if not handed:
                conn.close()
            left = counts.get(ip, 1) - 1
            if left > 0:
                counts[ip] = left
            else:
                counts.pop(ip, None)

    async def _refuse_plaintext(self, conn: socket.socket) -> None:
        """What a plaintext dialer gets from a validator that requires TLS: one clear answer
        (its transport reports the HTTP status), then the connection closes. Written on the
        socket directly, within the opening slot and ``handshake_timeout``: no HTTP server
        holds such a connection, however slowly it sends its request."""
        loop = asyncio.get_running_loop()
        got = b""

        async def read_request() -> None:
            nonlocal got
            # read the request first: closing with unread bytes would reset the connection
            # before the answer arrives
            while b"\r\n\r\n" not in got and len(got) < 8192:
                chunk = await loop.sock_recv(conn, 8192 - len(got))
                if not chunk:
                    return
                got += chunk

        try:
            await asyncio.wait_for(read_request(), self.config.handshake_timeout)
        except TimeoutError:
            return
        await asyncio.wait_for(
            loop.sock_sendall(conn, _PLAINTEXT_REFUSAL), self.config.handshake_timeout
        )

    # --- connections ---------------------------------------------------------------------

    async def _dial_loop(self, j: int) -> None:
        try:
            await self._dial(j)
        finally:
            self._dialing.discard(j)

    async def _dial(self, j: int) -> None:
        attempt = 0
        assert self._session is not None and self._addr_changed is not None
        # _dials(j) changes only when this side's key is rotated (become): the other side
        # dials from then on.
        while not self._stopping and j not in self._retired and self._dials(j):
            host, port = self._addresses.get(j, ("", 0))
            if self._is_banned(j):
                await asyncio.sleep(self._banned_until[j] - asyncio.get_running_loop().time())
                continue
            if not port:
                self._addr_changed.clear()
                await self._addr_changed.wait()
                continue
            scheme = "https" if self._tls_client is not None else "http"
            url = f"{scheme}://{host}:{port}{self.config.path}"
            try:
                # bounded: a listener that accepts TCP but never answers must not stall us
                ws = await asyncio.wait_for(
                    self._session.ws_connect(
                        url,
                        # the handshake's size until the acceptor has proven its key (see
                        # _widen_dialer_frame_limit); the full limit if widening is broken
                        max_msg_size=HANDSHAKE_MAX + 1 if _widening_works else self.max_frame,
                        heartbeat=self.config.heartbeat,
                        compress=0,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                        ssl=self._tls_client if self._tls_client is not None else True,
                    ),
                    self.config.connect_timeout,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                self._count_dial_failure(j, e)
                ws = None
            if ws is not None:
                try:
                    peer = await asyncio.wait_for(
                        self._handshake_dial(ws, j), self.config.handshake_timeout
                    )
                except HandshakeRefused as e:
                    self.m_hs_fail.inc(reason=e.reason)
                    log.info("validator %d: handshake with %d failed: %s", self.index, j, e.message)
                    await ws.close(code=_CLOSE_REFUSED, message=e.reason.encode()[:100])
                except (TimeoutError, aiohttp.ClientError, OSError):
                    self.m_hs_fail.inc(reason="timeout")
                    await ws.close()
                else:
                    attempt = 0
                    await self._run_peer(peer)
            attempt += 1
            delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
            await asyncio.sleep(delay * self._rng.uniform(0.5, 1.0))

    def _count_dial_failure(self, j: int, e: BaseException) -> None:
        if isinstance(e, aiohttp.WSServerHandshakeError) and e.status == 426:
            self.m_dial_fail.inc(reason="tls_required")
            level = logging.WARNING if self._warned_plaintext.add(b"peer-%d" % j) else logging.INFO
            log.log(
                level,
                "validator %d: validator %d requires TLS on validator links; this validator has none "
                "(set p2p_tls in node.json)",
                self.index,
                j,
            )
        elif isinstance(e, aiohttp.WSServerHandshakeError):
            self.m_dial_fail.inc(reason="http")
        elif self._tls_client is not None and _is_tls_error(e):
            self.m_dial_fail.inc(reason="tls")
            log.info(
                "validator %d: TLS with validator %d failed (does it run without p2p_tls, or an old "
                "version?): %r",
                self.index,
                j,
                e,
            )
        else:
            self.m_dial_fail.inc(reason="connect")

    async def _recv_handshake(
        self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, expected: Kind
    ) -> encoding.Value:
        msg = await ws.receive()
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
        ):
            raise HandshakeRefused(
                f"peer closed the handshake: {msg.extra}", reason="closed_by_peer"
            )
        if msg.type is aiohttp.WSMsgType.ERROR:
            err = msg.data
            if (
                isinstance(err, aiohttp.WebSocketError)
                and err.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            ):
                raise HandshakeRefused(
                    "handshake frame too large (refused at its header)", reason="oversized"
                )
            raise HandshakeRefused(f"bad handshake frame: {err!r}", reason="malformed")
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise HandshakeRefused("handshake frames are binary", reason="malformed")
        if len(msg.data) > HANDSHAKE_MAX:
            raise HandshakeRefused("handshake frame too large", reason="oversized")
        try:
            kind, payload = decode_frame(msg.data, self.specs)
        except BadFrame as e:
            raise HandshakeRefused(e.message, reason="malformed") from None
        if kind is not expected:
            raise HandshakeRefused(
                f"expected {expected.name}, got {kind.name}", reason="unexpected_kind"
            )
        return payload

    async def _handshake_dial(self, ws: aiohttp.ClientWebSocketResponse, j: int) -> _Peer:
        gh = self.genesis_hash
        binding: bytes | None = None
        if self._tls_client is not None:
            ssl_object = ws.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if not der:
                raise HandshakeRefused(
                    "the link is not TLS, or the listener showed no certificate", reason="tls"
                )
            binding = _tls.channel_binding(der)
        n_d = hs.new_nonce()
        hello = {
            "version": hs.VERSION,
            "genesis": gh,
            "key": self.me,
            "to": self._keys[j],
            "nonce": n_d,
        }
        await ws.send_bytes(encode_frame(Kind.HELLO, hello))
        p = await self._recv_handshake(ws, Kind.CHALLENGE)
        n_a = hs.field(p, "nonce", bytes, hs.NONCE_SIZE)
        sig = hs.field(p, "sig", bytes)
        assert isinstance(n_a, bytes)
        hs.verify(self._keys[j], sig, gh, n_d, n_a, self._keys[j], self.me, binding)
        if _widening_works and not _widen_dialer_frame_limit(ws, self.max_frame):
            _disable_widening()
            raise HandshakeRefused(
                "cannot raise the frame limit of this connection", reason="internal"
            )
        my_sig = hs.sign(self._secret, gh, n_d, n_a, self.me, self._keys[j], binding)
        await ws.send_bytes(encode_frame(Kind.AUTH, {"sig": my_sig}))
        await self._recv_handshake(ws, Kind.READY)
        if j in self._peers or self._stopping:
            raise HandshakeRefused(f"validator {j} is already connected", reason="duplicate")
        peer = _Peer(j, ws, self.config, dialed=True)
        self._peers[j] = peer
        self.m_hs_ok.inc(role="dialer")
        return peer

    async def _handshake_accept(self, ws: web.WebSocketResponse, binding: bytes | None) -> _Peer:
        gh = self.genesis_hash
        p = await self._recv_handshake(ws, Kind.HELLO)
        if hs.field(p, "version", int) != hs.VERSION:
            raise HandshakeRefused("unsupported handshake version", reason="version")
        if hs.field(p, "genesis", bytes, 32) != gh:
            raise HandshakeRefused("peer runs another genesis", reason="wrong_genesis")
        key = hs.field(p, "key", bytes, bls.PUBLIC_KEY_SIZE)
        assert isinstance(key, bytes)
        j = self._key_index.get(key)
        if j is None or j == self.index:
            raise HandshakeRefused(
                "key is not another validator of this genesis", reason="unknown_key"
            )
        if self._is_banned(j):
            raise HandshakeRefused(f"validator {j} misbehaved recently", reason="banned")
        if hs.field(p, "to", bytes, bls.PUBLIC_KEY_SIZE) != self.me:
            raise HandshakeRefused("peer dialed the wrong validator", reason="wrong_peer")
        n_d = hs.field(p, "nonce", bytes, hs.NONCE_SIZE)
        assert isinstance(n_d, bytes)
        if not self._nonces.add(n_d):
            raise HandshakeRefused("handshake nonce seen before", reason="replay")
        if j in self._peers:
            raise HandshakeRefused(f"validator {j} is already connected", reason="duplicate")
        n_a = hs.new_nonce()
        sig = hs.sign(self._secret, gh, n_d, n_a, self.me, self._keys[j], binding)
        await ws.send_bytes(encode_frame(Kind.CHALLENGE, {"nonce": n_a, "sig": sig}))
        p = await self._recv_handshake(ws, Kind.AUTH)
        hs.verify(
            self._keys[j], hs.field(p, "sig", bytes), gh, n_d, n_a, self._keys[j], self.me, binding
        )
        if j in self._peers or self._stopping:
            raise HandshakeRefused(f"validator {j} is already connected", reason="duplicate")
        if _widening_works and not _widen_frame_limit(ws, self.max_frame):
            _disable_widening()
            raise HandshakeRefused(
                "cannot raise the frame limit of this connection", reason="internal"
            )
        peer = _Peer(j, ws, self.config, dialed=False)
        self._peers[j] = peer  # registered before READY leaves: no await in between
        await ws.send_bytes(encode_frame(Kind.READY, {}))
        self.m_hs_ok.inc(role="acceptor")
        return peer

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            self.m_hs_fail.inc(reason="busy")
            return web.Response(status=503, text="busy")
        ip = _norm_ip(request.remote or "?")
        # Without the per-address share, one host opening connections it never authenticates
        # would fill every slot and lock the real validators out until its handshakes time out;
        # without the reserved slots, a few hosts still could.
        pool = self._admit(
            ip,
            self._pending_handshakes,
            self._pending_by_ip,
            self._pending_reserved_by_ip,
            "upgrade",
        )
        if pool is None:
            return web.Response(status=503, text="busy")
        # Counted from here, before the first await, so that concurrent upgrades cannot all
        # pass the checks above together.
        counts = self._pending_by_ip if pool == "shared" else self._pending_reserved_by_ip
        if pool == "shared":
            self._pending_handshakes += 1
        counts[ip] = counts.get(ip, 0) + 1
        ws = web.WebSocketResponse(
            max_msg_size=HANDSHAKE_MAX + 1 if _widening_works else self.max_frame,
            heartbeat=self.config.heartbeat,
            compress=False,
        )
        try:
            try:
                peer = await self._upgrade_and_authenticate(request, ws)
            finally:
                if pool == "shared":
                    self._pending_handshakes -= 1
                left = counts[ip] - 1
                if left:
                    counts[ip] = left
                else:
                    del counts[ip]
            if peer is not None:
                await self._run_peer(peer)
            return ws
        finally:
            self._open_ws.discard(ws)

    async def _upgrade_and_authenticate(
        self, request: web.Request, ws: web.WebSocketResponse
    ) -> _Peer | None:
        """The acceptor's handshake on ``ws``: the peer, or None if it was refused (counted)."""
        await ws.prepare(request)
        self._open_ws.add(ws)
        try:
            binding = None
            if self._tls_server is not None:
                if (
                    request.transport is None
                    or request.transport.get_extra_info("ssl_object") is None
                ):
                    raise HandshakeRefused(
                        "this validator requires TLS on its links", reason="plaintext"
                    )
                binding = self._own_binding
            return await asyncio.wait_for(
                self._handshake_accept(ws, binding), self.config.handshake_timeout
            )
        except HandshakeRefused as e:
            self.m_hs_fail.inc(reason=e.reason)
            self._log.log(
                logging.INFO,
                "refused",
                "validator %d: refused a connection: %s",
                self.index,
                e.message,
            )
            await ws.close(code=_CLOSE_REFUSED, message=e.reason.encode()[:100])
        except TimeoutError:
            self.m_hs_fail.inc(reason="timeout")
            await ws.close(code=_CLOSE_REFUSED, message=b"timeout")
        return None

    async def _notify_peer(self, j: int, connected: bool) -> None:
        if self.on_peer is None:
            return
        try:
            r = self.on_peer(j, connected)
            if inspect.isawaitable(r):
                await r
        except Exception:
            self.m_handler_errors.inc()
            log.exception("validator %d: peer handler failed", self.index)

    async def _run_peer(self, peer: _Peer) -> None:
        """Serve one authenticated connection until it closes."""
        writer = asyncio.create_task(self._write_loop(peer), name=f"accord-write-{peer.index}")
        try:
            await self._notify_peer(peer.index, True)
            await self._read_loop(peer)
        finally:
            peer.closed = True
            if self._peers.get(peer.index) is peer:
                del self._peers[peer.index]
            peer.room.set()  # wake producers waiting in send_wait: they see the peer is gone
            self.m_disconnects.inc(reason=peer.close_reason)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if not peer.ws.closed:
                code = (
                    _CLOSE_MISBEHAVING
                    if peer.close_reason == "misbehaving"
                    else aiohttp.WSCloseCode.GOING_AWAY
                )
                await _close_quietly(peer.ws, code, peer.close_reason.encode())
            if not self._stopping:
                await self._notify_peer(peer.index, False)

    async def _write_loop(self, peer: _Peer) -> None:
        try:
            while True:
                item = peer.pop()
                if item is None:
                    peer.wake.clear()
                    await peer.wake.wait()
                    continue
                frame, kind = item
                await peer.ws.send_bytes(frame)
                label = kind.name.lower()
                self.m_frames_out.inc(kind=label)
                self.m_bytes_out.inc(len(frame), kind=label)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # connection reset while writing: end the connection
            peer.close_reason = "write_error"
            log.info("validator %d: write to %d failed: %r", self.index, peer.index, e)
            with contextlib.suppress(Exception):
                await peer.ws.close()

    async def _read_loop(self, peer: _Peer) -> None:
        ws = peer.ws
        while True:
            msg = await ws.receive()
            t = msg.type
            if t is aiohttp.WSMsgType.BINARY:
                if not await self._handle_frame(peer, msg.data):
                    return
            elif t is aiohttp.WSMsgType.TEXT:
                if not self._bad(peer, "garbage"):
                    return
            elif t is aiohttp.WSMsgType.ERROR:
                err = msg.data
                if (
                    isinstance(err, aiohttp.WebSocketError)
                    and err.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
                ):
                    self.m_dropped.inc(reason="oversized")
                    peer.close_reason = "oversized"
                else:
                    self.m_dropped.inc(reason="garbage")
                    peer.close_reason = "protocol_error"
                return
            else:  # CLOSE, CLOSING, CLOSED
                if peer.close_reason == "closed":
                    peer.close_reason = (
                        "closed_by_peer" if t is aiohttp.WSMsgType.CLOSE else "closed"
                    )
                return

    def _is_banned(self, j: int) -> bool:
        until = self._banned_until.get(j)
        return until is not None and asyncio.get_running_loop().time() < until

    def _bad(self, peer: _Peer, reason: str) -> bool:
        """Count a bad frame; False (close the connection) once the peer has sent too many."""
        self.m_dropped.inc(reason=reason)
        peer.bad += 1
        if peer.bad > self.config.max_bad_frames:
            peer.close_reason = "misbehaving"
            self._banned_until[peer.index] = (
                asyncio.get_running_loop().time() + self.config.misbehaving_ban
            )
            log.warning(
                "validator %d: closing %d after %d bad frames", self.index, peer.index, peer.bad
            )
            return False
        return True

    async def _handle_frame(self, peer: _Peer, data: bytes) -> bool:
        try:
            kind, payload = decode_frame(data, self.specs)
        except BadFrame as e:
            return self._bad(peer, e.reason)
        if kind in HANDSHAKE_KINDS:
            return self._bad(peer, "unexpected_kind")
        if kind is Kind.BLOCK_RESPONSE or (
            kind is Kind.BLOCK_REQUEST and self.on_request is not None
        ):
            return self._handle_rpc(peer, kind, payload, len(data))
        if self.specs[kind].dedup and not self._seen.add(encoding.sha256(data)):
            self.m_dropped.inc(reason="duplicate")
            return True
        label = kind.name.lower()
        self.m_frames_in.inc(kind=label)
        self.m_bytes_in.inc(len(data), kind=label)
        if self.on_message is not None:
            try:
                r = self.on_message(peer.index, kind, payload)
                if inspect.isawaitable(r):
                    await r
            except Exception:
                self.m_handler_errors.inc()
                log.exception(
                    "validator %d: message handler failed on %s from %d",
                    self.index,
                    kind.name,
                    peer.index,
                )
        return True

    # --- request / response (catch-up) ---------------------------------------------------------

    async def request(
        self, index: int, body: encoding.Value, timeout: float = 10.0
    ) -> encoding.Value:
        """Ask one peer (``BLOCK_REQUEST``) and wait for its answer (``BLOCK_RESPONSE``).

        Frames carry ``{"id", "body"}`` (answers ``{"id", "body"}`` or ``{"id", "error"}``).
        An answer is accepted only from the peer asked and only once, so a replayed or
        unsolicited response is dropped (counted ``unsolicited``). Raises :class:`NetError`
        with reason ``not_connected``, ``timeout``, ``busy`` or ``remote_error``.
        """
        if len(self._requests) >= self.config.max_pending_requests:
            raise NetError("too many outstanding requests", reason="busy")
        rid = self._next_request_id
        self._next_request_id = (rid + 1) % (1 << 63)
        fut: asyncio.Future[encoding.Value] = asyncio.get_running_loop().create_future()
        self._requests[rid] = (index, fut)
        try:
            if not await self.send_wait(
                index, Kind.BLOCK_REQUEST, {"id": rid, "body": body}, timeout
            ):
                raise NetError(f"validator {index} is not connected", reason="not_connected")
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise NetError(
                    f"validator {index} did not answer in {timeout} s", reason="timeout"
                ) from None
        finally:
            self._requests.pop(rid, None)

    def _handle_rpc(self, peer: _Peer, kind: Kind, payload: encoding.Value, size: int) -> bool:
        if type(payload) is not dict or type(payload.get("id")) is not int:
            return self._bad(peer, "garbage")
        label = kind.name.lower()
        rid = payload["id"]
        if kind is Kind.BLOCK_RESPONSE:
            entry = self._requests.get(rid)
            if entry is None or entry[0] != peer.index or entry[1].done():
                self.m_dropped.inc(reason="unsolicited")
                return True
            self.m_frames_in.inc(kind=label)
            self.m_bytes_in.inc(size, kind=label)
            if "error" in payload:
                code = payload["error"]
                entry[1].set_exception(
                    NetError(
                        f"validator {peer.index}: {code}",
                        reason="remote_error",
                        remote=code if type(code) is str else None,
                    )
                )
            else:
                entry[1].set_result(payload.get("body"))
            return True
        # a request: answer it in a task so that a slow answer (or a full send lane) never
        # stalls this peer's read loop; bounded per peer
        serving = self._serving.setdefault(peer.index, set())
        if len(serving) >= self.config.max_served_requests:
            self.m_dropped.inc(reason="busy")
            return True
        self.m_frames_in.inc(kind=label)
        self.m_bytes_in.inc(size, kind=label)
        task = asyncio.create_task(self._serve(peer.index, rid, payload.get("body")))
        serving.add(task)
        task.add_done_callback(serving.discard)
        return True

    async def _serve(self, frm: int, rid: int, body: encoding.Value) -> None:
        assert self.on_request is not None
        answer: dict[str, encoding.Value]
        try:
            answer = {"id": rid, "body": await self.on_request(frm, body)}
        except AccordError as e:
            answer = {"id": rid, "error": e.code}
        except Exception:
            self.m_handler_errors.inc()
            log.exception("validator %d: request handler failed", self.index)
            answer = {"id": rid, "error": "internal"}
        try:
            await self.send_wait(frm, Kind.BLOCK_RESPONSE, answer, timeout=30.0)
        except ValidationError:  # the answer is larger than a response may be
            self.m_dropped.inc(reason="response_too_large")
            await self.send_wait(
                frm, Kind.BLOCK_RESPONSE, {"id": rid, "error": "too_large"}, timeout=30.0
            )
