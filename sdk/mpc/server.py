"""An MPC server process: one per consortium member, three in a cluster.

Servers connect to each other over TCP through :class:`~accord.mpc.channel.Channel` (the
server with the higher index dials the lower one), derive their PRF pair keys from their
static keys (``k_j`` is known to servers j-1 and j only) and then serve clients:

* only registered identities (:mod:`accord.mpc.registry`): an unknown key is refused after
  the handshake, with an error frame instead of the welcome; each identity has its own byte
  quota and number of connections;
* ``store``: a data owner uploads its share pair of a named input (only shares ever arrive),
  within byte quotas per identity and per server (a full store refuses, counted in
  ``refused_stores``), with a store id (16 random bytes the owner sends identically to all
  three servers: the version of the input); ``delete`` frees an input of the client's own;
* ``grant`` / ``revoke``: an owner allows one exact computation on one of its inputs: a
  program, a receiver, the public params (their canonical hash) and the full list of the
  run's inputs, each at the version it has when the grant is made (names are namespaced by
  owner, so only the owner can grant its own);
* ``run``: run a registered program on named inputs (the requester's own, or other owners'
  whose grant names exactly this run); the three servers first agree that they hold the same
  version of every input (:meth:`MpcServer._agree`), then run it in step, each in its own
  session, and each returns its share pair of every output to the requester, who
  reconstructs (:class:`accord.mpc.client.Cluster`).

With a data folder, stored shares and grants live in LMDB (:mod:`accord.mpc.sharestore`) and
are reloaded at start, so a restarted server rejoins with everything it held. Links between
servers heal: a link that ends (the peer restarted, or sent an oversized or malformed frame)
is closed and dialled again with backoff by the server with the higher index, and a new
connection from a peer replaces its old one.

Every computation has a session id; peer messages carry it, and each (session, peer) has a
bounded queue, so a slow computation pushes back on its peer instead of growing memory. A
peer that disconnects fails every session that waits on it at once with :class:`PeerGone`;
a peer that goes silent fails it after ``timeout`` seconds. A failed run returns an error to
the requester and no outputs.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base import encoding
from accord.base.errors import AccordError, MpcError, PeerGone
from accord.mpc.channel import HANDSHAKE_TIMEOUT, Channel, pair_secret
from accord.mpc.engine import Party, SharedArray
from accord.mpc.malicious import MALICIOUS_PROGRAMS, MaliciousParty, MpcAbort
from accord.mpc.programs import PROGRAMS, source_hash
from accord.mpc.registry import Identity
from accord.mpc.ring import FixedPoint, Ring
from accord.mpc.sharestore import (
    LEGACY_ID,
    SALT_BYTES,
    Grant,
    GrantInput,
    ParamRange,
    ShareStore,
    StoredInput,
    derive_store_id,
)

log = logging.getLogger("accord.mpc.server")

_DEAD = object()
_ABORT = object()
_FINISHED_KEPT = 4096


@dataclass(frozen=True)
class ServerInfo:
    host: str
    port: int
    public_key: bytes


def pack_parts(
    header: dict[str, Any], payload: bytes | memoryview = b""
) -> list[bytes | memoryview]:
    """The pieces of :func:`pack`'s frame, for :meth:`Channel.send_parts` to encrypt without
    joining them first."""
    h = encoding.encode(header)
    return [struct.pack(">I", len(h)) + h, memoryview(payload).cast("B")]


def pack(header: dict[str, Any], payload: bytes | memoryview = b"") -> bytearray:
    """``4-byte header length || canonical header || raw payload`` in one buffer (one copy)."""
    h = encoding.encode(header)
    mv = memoryview(payload).cast("B")
    out = bytearray(4 + len(h) + mv.nbytes)
    out[:4] = struct.pack(">I", len(h))
    out[4 : 4 + len(h)] = h
    out[4 + len(h) :] = mv
    return out


def unpack(frame: bytes | bytearray | memoryview) -> tuple[dict[str, Any], memoryview]:
    if len(frame) < 4:
        raise MpcError("short frame")
    (n,) = struct.unpack(">I", frame[:4])
    if n > len(frame) - 4:
        raise MpcError("bad frame header length")
    header = encoding.decode(bytes(frame[4 : 4 + n]), max_size=1 << 20)
    if not isinstance(header, dict):
        raise MpcError("frame header must be a map")
    return header, memoryview(frame)[4 + n :]


def payload_arrays(payload: memoryview, specs: list[tuple[tuple[int, ...], int]]) -> list[Ring]:
    """Split a payload into uint64 arrays of the given shapes (each spec: shape, count)."""
    out = []
    off = 0
    for shape, _ in specs:
        n = int(np.prod(shape, dtype=np.int64))
        if off + 8 * n > len(payload):
            raise MpcError("payload shorter than announced")
        out.append(
            np.frombuffer(payload, dtype=np.uint64, count=n, offset=off).reshape(shape).copy()
        )
        off += 8 * n
    if off != len(payload):
        raise MpcError("payload longer than announced")
    return out


MAX_DIMS = 8
MAX_ELEMENTS = 1 << 28  # one stored input or output: 2^28 elements (4 GiB of share pairs)
MAX_NAME = 256
MAX_SESSION = 128
MAX_INPUTS = 256  # inputs named by one run request
MAX_GRANTS = 256  # bound computations per input
MAX_GRANT_INPUTS = 64  # inputs one granted computation names
MAX_GRANT_RANGES = 16  # params one grant may bound by a range
MAX_PARAM_NAME = 64
_BACKOFF_MAX = 2.0  # seconds between attempts to re-establish a link, at most
# Before authentication a connection is anyone's: it gets a short deadline for the whole
# handshake (a trickled handshake cannot stretch it), and one source address may hold only
# a few such connections, so one host cannot take every slot from the registered clients.
PREAUTH_TIMEOUT = 3.0
MAX_PREAUTH_PER_IP = 8


def check_shape(shape: Any) -> tuple[int, ...]:
    """A shape from a request: at most ``MAX_DIMS`` non-negative ints, ``MAX_ELEMENTS`` in all.

    Checked with Python integers: ``np.prod`` wraps around in int64, and a wrapped product
    would let a huge announced shape pass the quota as a small one.
    """
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise MpcError(f"a shape is a list of at most {MAX_DIMS} dimensions")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise MpcError("a shape's dimensions are non-negative integers")
    if math.prod(shape) > MAX_ELEMENTS:
        raise MpcError(f"an array has at most {MAX_ELEMENTS} elements")
    return tuple(shape)


def qualify(owner: bytes, name: str) -> str:
    """The server-wide name of a client's input: ``owner key (hex) / name``.

    Inputs are namespaced by the key that stored them, so no client can take (squat) or
    overwrite a name another client will use; oracle requests name inputs this way.
    """
    return owner.hex() + "/" + name


def params_digest(params: Mapping[str, Any]) -> bytes:
    """The canonical hash of a run's public params, as a grant binds them.

    Params are compared exactly as sent (same keys, same values: ``"0.5"`` is not
    ``"0.50"``, and an omitted default is not the same as the default written out).
    """
    return encoding.sha256(encoding.encode(["accord/mpc/params", dict(params)]))


def run_view(
    program: str, code: bytes, params: Mapping[str, Any], view: list[GrantInput]
) -> tuple[bytes, list[int]]:
    """What the servers compare before a run: one digest of the whole run (program and its
    code hash, params, every input's program name, qualified name and store id) and one
    64-bit word per input, so that a mismatch can name the input that differs."""
    digest = encoding.sha256(
        encoding.encode(
            [
                "accord/mpc/run-view",
                program,
                code,
                params_digest(params),
                [list(v) for v in view],
            ]
        )
    )
    words = [
        int.from_bytes(encoding.sha256(encoding.encode(["accord/mpc/input", *v]))[:8], "little")
        for v in view
    ]
    return digest, words


def client_session(client_key: bytes, session: str) -> str:
    """The server-side id of a client's run: its own namespace, derived from its identity.

    A client names its runs freely; the servers key them by ``(authenticated key, name)``,
    so no client can take, replay against or burn a session id another client or the oracle
    will use (a failed run still marks its id as used, but only in the client's namespace).
    All three servers derive the same id, so the three sides of a run still meet.
    """
    digest = encoding.sha256(encoding.encode(["accord/mpc/client-session", client_key, session]))
    return "c:" + digest.hex()


def oracle_session(request_id: bytes) -> str:
    """The server-side id of an oracle request's run: no client's derived id has this prefix."""
    return "o:" + request_id.hex()


class _SessionTransport:
    def __init__(self, server: MpcServer, session: str) -> None:
        self.server = server
        self.session = session

    def send(self, to: int, data: Ring) -> None:
        ch = self.server.peers.get(to)
        if ch is None or to in self.server.dead:
            raise PeerGone(f"server {to} is gone")
        self.server.data_frames += 1
        ch.send_parts(pack_parts({"t": "data", "s": self.session}, data.data))

    def recv(self, frm: int, count: int) -> Ring:
        q = self.server.queue_for(self.session, frm)
        try:
            item = q.get(timeout=self.server.timeout)
        except queue.Empty:
            raise PeerGone(f"server {frm} sent nothing for {self.server.timeout} s") from None
        if item is _DEAD:
            q.put(_DEAD)  # keep the tombstone for later readers
            raise PeerGone(f"server {frm} disconnected")
        if item is _ABORT:
            raise PeerGone(f"server {frm} abandoned the computation")
        arr: Ring = item
        return arr


def _rerandomise(party: Party, result: dict[str, Any]) -> dict[str, Any]:
    """Fresh shares of every output before release (1 round for all of them together).

    The share words a program ends with can be words other parties know or chose (an
    input's stored shares, a PRF value of a protocol): the receivers see all three pairs, so
    they must carry nothing but the value. Each server re-shares its own component as a
    3-out-of-3 sharing, masked by a fresh zero-sharing. All servers hold the same outputs,
    in the same order, so they stay in step.
    """
    names = sorted(k for k, v in result.items() if isinstance(v, SharedArray))
    if not names:
        return result
    flat = np.concatenate([np.asarray(result[k].a, dtype=np.uint64).ravel() for k in names])
    a, b = party.reshare(flat.copy())
    out = dict(result)
    off = 0
    for k in names:
        v = result[k]
        n = v.size
        out[k] = SharedArray(
            party, a[off : off + n].reshape(v.shape), b[off : off + n].reshape(v.shape), v.frac
        )
        off += n
    return out


def _keepalive(sock: socket.socket) -> None:
    """Probe an idle link: a peer whose machine vanished (no FIN) is noticed in ~25 s.

    Without it the higher-index server would keep a dead link "up" and never dial again,
    while the restarted lower-index one waits for that dial.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, val in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)


class MpcServer:
    """One MPC server. ``start()`` binds, connects the mesh and returns; ``stop()`` ends it."""

    def __init__(
        self,
        index: int,
        servers: list[ServerInfo],
        private_key: X25519PrivateKey,
        *,
        fp: FixedPoint | None = None,
        timeout: float = 30.0,
        max_pending: int = 8,
        programs: dict[str, Callable[..., Any]] | None = None,
        max_store_bytes: int = 2 << 30,
        max_client_bytes: int = 512 << 20,
        max_clients: int = 64,
        max_preauth: int = 64,
        max_preauth_per_ip: int = MAX_PREAUTH_PER_IP,
        preauth_timeout: float = PREAUTH_TIMEOUT,
        malicious: Collection[str] | None = None,
        clients: Mapping[bytes, Identity] | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        """``clients`` is the registry of identities this server serves (``None``: any key,
        each with the default quota: in-process clusters of tests and examples only; the
        ``accord mpc serve`` command requires a registry). ``data_dir`` persists stored shares
        and grants (``None``: memory only, lost when the process ends)."""
        if len(servers) != 3 or index not in (0, 1, 2):
            raise MpcError("a cluster has exactly three servers")
        self.i = index
        self.servers = servers
        self.key = private_key
        self.fp = fp or FixedPoint()
        self.timeout = timeout
        self.max_pending = max_pending
        self.programs = programs if programs is not None else PROGRAMS
        # what grants bind and what the servers compare before a run: the code, not the name
        # (by function object: a program may be registered after start)
        self._code_hashes: dict[Callable[..., Any], bytes] = {}
        self.peers: dict[int, Channel] = {}
        self.dead: set[int] = set()
        self._plock = threading.Lock()  # peers and dead change together
        self.link_failures = 0  # inter-server links that ended while the server ran
        self.reconnects = 0  # links this server dialled again after one ended
        # qualified name -> (share a, share b, frac, store id)
        self.store: dict[str, tuple[Ring, Ring, int, bytes]] = {}
        self.owners: dict[str, bytes] = {}  # input name -> the client key that stored it
        self.grants: dict[str, set[Grant]] = {}  # input name -> computations allowed on it
        self.clients_registry = dict(clients) if clients is not None else None
        self.refused_identities = 0  # connections of keys that are not registered
        self.refused_grants = 0  # runs that named another owner's input without its grant
        # runs stopped because the servers held different versions of an input (a store or
        # replace that reached only some of them), or were asked for different runs
        self.input_mismatches = 0
        self.data_frames = 0  # session messages sent to peers (checks, nonces, protocol)
        self._conns: dict[bytes, int] = {}  # open connections per identity
        self._client_channels: set[Channel] = set()  # closed by stop()
        self._slock = threading.Lock()  # store, owners, grants and quotas change together
        # Share pairs live in memory for as long as their owner wants them: quotas keep one
        # client (or all of them together) from exhausting the server's memory.
        self.max_store_bytes = max_store_bytes
        self.max_client_bytes = max_client_bytes
        self.stored_bytes = 0
        self.client_bytes: dict[bytes, int] = {}
        self.refused_stores = 0
        # Client connections at once: each may hold a frame in flight, so this and the
        # client frame limit bound what unauthenticated-to-the-consortium clients can pin.
        self.max_clients = max_clients
        self.clients = 0
        self.refused_clients = 0
        # Connections not yet authenticated, counted apart from the clients they may become.
        self.max_preauth = max_preauth
        self.max_preauth_per_ip = max_preauth_per_ip
        self.preauth_timeout = preauth_timeout
        self._preauth: dict[str, int] = {}  # source address -> connections before authentication
        self.refused_preauth = 0  # connections refused at accept (their address, or all, full)
        self.expired_preauth = 0  # connections closed for not authenticating in time
        self.bad_requests = 0  # requests answered with an error (malformed, refused, failed)
        self.failed_runs = 0  # runs that ended with an error (on this server)
        self._active: set[str] = set()  # sessions running now: an id cannot run twice at once
        self._queues: dict[tuple[str, int], queue.Queue[Any]] = {}
        self._queue_born: dict[tuple[str, int], float] = {}  # when each queue was created
        self.expired_queues = 0  # peer-created queues no local run claimed in time
        self._finished: dict[str, None] = {}  # recent sessions (insertion-ordered, bounded)
        self._qlock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        prev_pub = servers[(index - 1) % 3].public_key
        next_pub = servers[(index + 1) % 3].public_key
        self.pair_keys = (
            pair_secret(private_key, prev_pub, "prf"),
            pair_secret(private_key, next_pub, "prf"),
        )
        self.hooks: dict[str, Callable[..., Any]] = {}
        # Programs run with security with abort against a malicious server
        # (accord.mpc.malicious); by default the anti-stacking check.
        self.malicious = set(MALICIOUS_PROGRAMS if malicious is None else malicious)
        self.aborts = 0  # runs a malicious-security check stopped (also in failed_runs)
        self.shares: ShareStore | None = None
        if data_dir is not None:
            self.shares = ShareStore(data_dir, max_bytes=max_store_bytes)
            self._load()

    def _load(self) -> None:
        """Everything this server held before it stopped, with its quotas recounted."""
        assert self.shares is not None
        inputs, grants = self.shares.load()
        for it in inputs:
            size = 16 * int(it.a.size)
            self.store[it.name] = (it.a, it.b, it.frac, it.store_id)
            self.owners[it.name] = it.owner
            self.stored_bytes += size
            self.client_bytes[it.owner] = self.client_bytes.get(it.owner, 0) + size
        self.grants = {k: v for k, v in grants.items() if k in self.store}
        if inputs:
            log.info(
                "server %d: reloaded %d inputs (%d bytes) and %d grants",
                self.i,
                len(inputs),
                self.stored_bytes,
                sum(len(g) for g in self.grants.values()),
            )

    def code_hash(self, program: str) -> bytes:
        """SHA-256 of the code this server runs under ``program`` (a known name)."""
        fn = self.programs[program]
        h = self._code_hashes.get(fn)
        if h is None:
            h = self._code_hashes[fn] = source_hash(fn)
        return h

    def identity(self, key: bytes) -> Identity | None:
        if self.clients_registry is None:
            return Identity("key " + key.hex()[:16], key, self.max_client_bytes, self.max_clients)
        return self.clients_registry.get(key)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, connect_timeout: float = 30.0) -> None:
        me = self.servers[self.i]
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((me.host, me.port))
        ls.listen(16)
        self._listener = ls
        self._spawn(self._accept_loop)
        self._spawn(self._expire_loop)
        deadline = time.monotonic() + connect_timeout
        for j in range(self.i):
            while True:
                try:
                    self._dial(j)
                    break
                except (AccordError, OSError):
                    if time.monotonic() > deadline:
                        raise PeerGone(f"cannot reach server {j}") from None
                    time.sleep(0.05)
        while len(self.peers) < 2:
            if time.monotonic() > deadline:
                raise PeerGone("the other servers did not connect in time")
            time.sleep(0.01)

    def _dial(self, j: int) -> None:
        """One attempt to open the link to server ``j`` (lower index: this server dials)."""
        info = self.servers[j]
        sock = socket.create_connection((info.host, info.port), timeout=5.0)
        try:
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"S" + bytes([self.i]))
            ch, _ = Channel.handshake(
                sock, self.key, info.public_key, initiator=True, prologue=b"S"
            )
        except BaseException:
            sock.close()
            raise
        self._add_peer(j, ch)

    def _redial(self, j: int) -> None:
        """Re-establish the link to server ``j`` with exponential backoff, until it is up.

        Runs until the link is back (dialled here, or the peer is known alive again) or the
        server stops: a peer that restarts minutes later is still found.
        """
        delay = 0.05
        while not self._stop.is_set():
            with self._plock:
                if j not in self.dead:
                    return
            try:
                self._dial(j)
                self.reconnects += 1
                log.info("server %d: link to server %d re-established", self.i, j)
                return
            except (AccordError, OSError) as e:
                log.debug("server %d: server %d not reachable yet: %s", self.i, j, e)
            self._stop.wait(delay)
            delay = min(2 * delay, _BACKOFF_MAX)

    def _add_peer(self, j: int, ch: Channel) -> None:
        """Make ``ch`` the link to server ``j``; a link it replaces is closed."""
        _keepalive(ch.sock)
        with self._plock:
            old = self.peers.get(j)
            self.peers[j] = ch
            self.dead.discard(j)
        if old is not None and old is not ch:
            old.close()
        self._spawn(self._peer_loop, j, ch)

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                # shutdown wakes the accept() in progress: a closed fd alone would keep the
                # socket listening (and the port taken) until that call returned
                self._listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._listener.close()
        for ch in list(self.peers.values()):
            ch.close()
        with self._qlock:
            open_clients = list(self._client_channels)
        for ch in open_clients:
            ch.close()
        if self.shares is not None:
            with self._slock:
                self.shares.close()
                self.shares = None

    def serve_forever(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        th = threading.Thread(target=fn, args=args, daemon=True)
        th.start()
        # connections and re-dials come and go for as long as the server runs
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(th)

    # --- connections -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, addr = self._listener.accept()
            except OSError:
                return
            ip = str(addr[0])
            with self._qlock:
                held = self._preauth.get(ip, 0)
                admit = (
                    held < self.max_preauth_per_ip
                    and sum(self._preauth.values()) < self.max_preauth
                )
                if admit:
                    self._preauth[ip] = held + 1
                else:
                    self.refused_preauth += 1
            if not admit:
                log.info(
                    "server %d: connection from %s refused: too many unauthenticated", self.i, ip
                )
                sock.close()
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._handle_incoming, sock, ip)

    def _release_preauth(self, ip: str) -> None:
        with self._qlock:
            left = self._preauth.get(ip, 0) - 1
            if left > 0:
                self._preauth[ip] = left
            else:
                self._preauth.pop(ip, None)

    def _handle_incoming(self, sock: socket.socket, ip: str = "") -> None:
        """One accepted connection: a peer server or a client, each authenticated first.

        Until its handshake completes, the connection holds one of its source address's
        pre-authentication slots and runs against ``preauth_timeout`` for the whole
        exchange (a timer shuts the socket down), whatever pace its bytes arrive at.
        """
        guard = threading.Lock()
        state = {"authenticated": False, "expired": False}

        def expire() -> None:
            with guard:
                if state["authenticated"]:
                    return
                state["expired"] = True
            self.expired_preauth += 1
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self.preauth_timeout, expire)
        timer.daemon = True
        timer.start()
        released = False

        def authenticated() -> None:
            nonlocal released
            timer.cancel()
            with guard:
                if state["expired"]:
                    raise PeerGone("the handshake did not complete in time")
                state["authenticated"] = True
            released = True
            self._release_preauth(ip)

        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)  # a silent connection does not hold a thread
            kind = sock.recv(1)
            if kind == b"S":
                j = sock.recv(1)
                if len(j) != 1 or j[0] not in (0, 1, 2) or j[0] <= self.i:
                    raise MpcError("bad server hello")
                sock.settimeout(None)
                ch, _ = Channel.handshake(
                    sock, self.key, self.servers[j[0]].public_key, initiator=False, prologue=b"S"
                )
                authenticated()
                self._add_peer(j[0], ch)
            elif kind == b"C":
                sock.settimeout(None)
                ch, client_key = Channel.handshake(
                    sock, self.key, None, False, prologue=b"C", max_frame=1 << 20
                )
                authenticated()
                with self._qlock:
                    full = self.clients >= self.max_clients
                    if full:
                        self.refused_clients += 1
                    else:
                        self.clients += 1
                if full:
                    log.info(
                        "server %d: client refused: %d connections open", self.i, self.max_clients
                    )
                    with contextlib.suppress(AccordError):
                        ch.send(
                            pack(
                                {
                                    "t": "error",
                                    "code": "mpc_busy",
                                    "message": f"too many client connections ({self.max_clients})",
                                }
                            )
                        )
                    ch.close()
                    return
                try:
                    self._serve_client(ch, client_key)
                finally:
                    with self._qlock:
                        self.clients -= 1
            else:
                sock.close()
        except AccordError as e:
            log.warning("connection refused: %s", e)
            sock.close()
        except OSError:
            sock.close()
        finally:
            timer.cancel()
            if not released:
                self._release_preauth(ip)

    def queue_for(self, session: str, peer: int) -> queue.Queue[Any]:
        with self._qlock:
            q = self._queues.get((session, peer))
            if q is None:
                q = queue.Queue(maxsize=self.max_pending)
                if peer in self.dead:
                    q.put(_DEAD)
                self._queues[(session, peer)] = q
                self._queue_born[(session, peer)] = time.monotonic()
            return q

    def _expire_loop(self) -> None:
        while not self._stop.wait(max(self.timeout / 2, 0.05)):
            self.expire_orphans()

    def expire_orphans(self) -> int:
        """Drop peer-created session queues that no local run claimed within ``timeout``.

        A peer's messages create a session's queue before (or without) the matching run
        here: a run sent to one server only, or one this server refused. Once ``timeout`` has
        passed unclaimed, the peer has given up on it (it waits at most that long for this
        server), so nothing will read the queue; kept, every such run would leak one queue
        per peer for the server's lifetime. Returns how many were dropped.
        """
        cutoff = time.monotonic() - self.timeout
        with self._qlock:
            stale = [
                k
                for k, born in self._queue_born.items()
                if born < cutoff and k[0] not in self._active
            ]
            for k in stale:
                self._queues.pop(k, None)
                self._queue_born.pop(k, None)
            self.expired_queues += len(stale)
        if stale:
            log.info("server %d: dropped %d session queues no run claimed", self.i, len(stale))
        return len(stale)

    def end_session(self, session: str) -> None:
        with self._qlock:
            for j in (0, 1, 2):
                self._queues.pop((session, j), None)
                self._queue_born.pop((session, j), None)
            self._finished[session] = None
            while len(self._finished) > _FINISHED_KEPT:
                del self._finished[next(iter(self._finished))]

    def _abort(self, session: str) -> None:
        """Tell the live peers that this server gave up on ``session`` (they fail at once
        instead of waiting for their timeout)."""
        for j, ch in list(self.peers.items()):
            if j not in self.dead:
                with contextlib.suppress(AccordError):
                    ch.send(pack({"t": "abort", "s": session}))

    def _peer_loop(self, j: int, ch: Channel) -> None:
        try:
            while not self._stop.is_set():
                header, payload = unpack(ch.recv())
                kind, session = header.get("t"), header.get("s")
                if kind not in ("data", "abort") or not isinstance(session, str):
                    raise MpcError("unexpected message from a peer server")
                if session in self._finished:
                    continue  # a straggler for a computation that is over
                if kind == "abort":
                    q = self.queue_for(session, j)
                    with contextlib.suppress(queue.Full):
                        q.put_nowait(_ABORT)
                    continue
                if len(payload) % 8:
                    raise MpcError("payload is not a whole number of words")
                arr = np.frombuffer(
                    payload, dtype=np.uint64
                )  # read-only; the engine never writes in place to received words
                # Blocks when the session is this many messages behind: TCP backpressure.
                self.queue_for(header["s"], j).put(arr)
        except AccordError as e:
            if not self._stop.is_set():
                log.warning("server %d: link to server %d ended: %s", self.i, j, e)
        except Exception as e:  # noqa: BLE001 - a frame no check foresaw ends the link, not the thread silently
            log.warning(
                "server %d: link to server %d ended: %s: %s", self.i, j, type(e).__name__, e
            )
        finally:
            ch.close()
            with self._plock:
                current = self.peers.get(j) is ch  # else a newer link replaced this one
                if current:
                    self.dead.add(j)
            if current and not self._stop.is_set():
                self.link_failures += 1
                if j < self.i:  # this server dials the lower ones: it re-establishes the link
                    self._spawn(self._redial, j)
            # Sessions in flight lost whatever this link still carried: they fail now.
            with self._qlock:
                qs = [q for (s, p), q in self._queues.items() if p == j]
            for q in qs:
                try:
                    q.put_nowait(_DEAD)
                except queue.Full:
                    # drop one stale message so the tombstone gets in: the session fails anyway
                    with contextlib.suppress(queue.Empty):
                        q.get_nowait()
                    q.put_nowait(_DEAD)

    # --- client requests ----------------------------------------------------------------------

    def _serve_client(self, ch: Channel, client_key: bytes) -> None:
        """Welcome a registered identity within its connection quota, refuse anyone else.

        The refusal comes after the handshake (the key is proven, not just claimed) as an
        error frame, so the client learns why instead of seeing a closed socket.
        """
        ident = self.identity(client_key)
        refusal = None
        with self._qlock:
            if ident is None:
                self.refused_identities += 1
                refusal = ("mpc_unregistered", "this client key is not registered with the cluster")
            elif self._conns.get(client_key, 0) >= ident.max_connections:
                self.refused_clients += 1
                refusal = (
                    "mpc_quota",
                    f"identity {ident.name!r} has its {ident.max_connections} "
                    "connections open already",
                )
            else:
                self._conns[client_key] = self._conns.get(client_key, 0) + 1
                self._client_channels.add(ch)
        if refusal is not None or ident is None:
            code, message = refusal or ("mpc_unregistered", "")
            log.info("server %d: client refused: %s", self.i, message)
            with contextlib.suppress(AccordError):
                ch.send(pack({"t": "error", "code": code, "message": message}))
            ch.close()
            return
        try:
            # a client frame is at most one store of the identity's whole quota
            ch.max_frame = ident.quota_bytes + (1 << 20)
            ch.send(pack({"t": "welcome", "identity": ident.name, "quota": ident.quota_bytes}))
            self._client_loop(ch, client_key)
        except AccordError:
            ch.close()
        finally:
            with self._qlock:
                self._client_channels.discard(ch)
                left = self._conns.get(client_key, 0) - 1
                if left > 0:
                    self._conns[client_key] = left
                else:
                    self._conns.pop(client_key, None)

    def _client_loop(self, ch: Channel, client_key: bytes) -> None:
        try:
            while not self._stop.is_set():
                frame = ch.recv()  # a broken or forged connection ends here (AccordError)
                try:
                    header, payload = unpack(frame)
                    reply = self.handle(header, payload, client_key)
                except AccordError as e:
                    self.bad_requests += 1
                    log.info("server %d: request refused: %s", self.i, e.message)
                    reply = pack({"t": "error", "code": e.code, "message": e.message[:512]})
                except Exception as e:  # noqa: BLE001 - no request may kill the server
                    self.bad_requests += 1
                    log.warning("server %d: request failed: %s: %s", self.i, type(e).__name__, e)
                    reply = pack(
                        {
                            "t": "error",
                            "code": "mpc_error",
                            "message": f"{type(e).__name__}: {e}"[:512],
                        }
                    )
                ch.send(reply)
        except AccordError:
            pass
        finally:
            ch.close()

    def handle(self, header: dict[str, Any], payload: memoryview, client_key: bytes) -> bytearray:
        t = header.get("t")
        if t == "ping":
            return pack({"t": "pong", "index": self.i, "peers": len(self.peers) - len(self.dead)})
        if t == "store":
            name, frac = header.get("name"), header.get("frac")
            salts, commit = header.get("salts"), header.get("commit")
            if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
                raise MpcError(f"bad store request: a name has 1..{MAX_NAME} characters")
            if not (
                isinstance(salts, list)
                and len(salts) == 2
                and all(isinstance(x, bytes) and len(x) == SALT_BYTES for x in salts)
                and isinstance(commit, bytes)
                and len(commit) == 32
            ):
                raise MpcError(
                    f"bad store request: salts are the {SALT_BYTES}-byte salts of this "
                    "server's two components and commit the commitment to the third "
                    "(the servers derive the store id from them)"
                )
            if type(frac) is not int or not 0 <= frac <= 30:
                raise MpcError("bad store request: frac must be an integer in [0, 30]")
            shp = check_shape(header.get("shape"))
            full = qualify(client_key, name)
            size = 16 * math.prod(shp)  # two uint64 shares per element
            if len(payload) != size:
                raise MpcError(
                    f"bad store request: payload of {len(payload)} bytes, {size} announced"
                )
            ident = self.identity(client_key)
            quota = self.max_client_bytes if ident is None else ident.quota_bytes
            a, b = payload_arrays(payload, [(shp, 0), (shp, 0)])
            binding = (salts[0], salts[1], commit)
            sid = derive_store_id(self.i, int(frac), a, b, (salts[0], salts[1]), commit)
            with self._slock:
                old = self._stored_size(full)
                mine = self.client_bytes.get(client_key, 0) - old + size
                total = self.stored_bytes - old + size
                if mine > quota or total > self.max_store_bytes:
                    self.refused_stores += 1
                    which = "this identity's" if mine > quota else "the server's"
                    raise MpcError(
                        f"store full: {name!r} ({size} bytes) exceeds {which} quota; "
                        "delete inputs first"
                    )
                if self.shares is not None:  # on disk before it counts as stored
                    self.shares.put_input(
                        StoredInput(full, client_key, int(frac), a, b, sid, binding, self.i)
                    )
                self._forget(full)  # a new version: the grants were for the old content
                self.store[full] = (a, b, int(frac), sid)
                self.owners[full] = client_key
                self.stored_bytes += size
                self.client_bytes[client_key] = self.client_bytes.get(client_key, 0) + size
            return pack({"t": "stored", "name": name, "qualified": full, "id": sid})
        if t == "delete":
            name = header.get("name")
            with self._slock:
                if not isinstance(name, str) or qualify(client_key, name) not in self.store:
                    raise MpcError(f"no input named {name!r} of this client on server {self.i}")
                if self.shares is not None:
                    self.shares.delete_input(qualify(client_key, name))
                self._forget(qualify(client_key, name))
            return pack({"t": "deleted", "name": name})
        if t in ("grant", "revoke"):
            return self._grant(t, header, client_key)
        if t == "run":
            # A client computes only on its own inputs: its names are looked up in its own
            # namespace, so it cannot address anyone else's. Oracle requests (filed on the
            # chain by registered contracts) go through run() with qualified names.
            session, program = header.get("s"), header.get("program")
            inputs, params = header.get("inputs", []), header.get("params", {})
            if not isinstance(session, str) or not isinstance(program, str):
                raise MpcError("bad run request: session and program are strings")
            if not session or len(session) > MAX_SESSION:
                raise MpcError(f"a run needs a session id of 1..{MAX_SESSION} characters")
            if not isinstance(params, dict):
                raise MpcError("bad run request: params is a map")
            resolved, expect = self._resolve(inputs, program, params, client_key)
            outputs, public = self.run(
                client_session(client_key, session), program, resolved, params, expect=expect
            )
            names = sorted(outputs)
            meta = {n: {"shape": list(outputs[n].shape), "frac": outputs[n].frac} for n in names}
            body = b"".join(
                np.ascontiguousarray(x).tobytes()
                for n in names
                for x in (outputs[n].a, outputs[n].b)
            )
            return pack({"t": "result", "outputs": meta, "public": public}, body)
        raise MpcError(f"unknown request type {t!r}")

    def _grant(self, t: str, header: dict[str, Any], client_key: bytes) -> bytearray:
        """Add (``grant``) or remove (``revoke``) one bound computation on an input.

        A grant names the program, the receiver, the public params and every input of the
        run (``{owner, name, as}``, this one included); the server records the hash of the
        code it runs under the program's name and each input's current store id with it. A
        run matches only if all of it is the same, so the receiver chooses none of it: not
        params that make the output one of the owner's rows, not a co-input crafted after
        the grant (replacing it changes its store id), not other code under the name.
        ``ranges`` (``{param: [lo, hi]}``, integers) instead bounds some params: the receiver
        may choose each within its range (iterations, sizes) and nothing else.
        ``revoke`` removes the grants of that computation whatever versions they recorded.
        Only the owner reaches its input: the name is qualified by the key of this
        authenticated connection.
        """
        name, program, receiver = header.get("name"), header.get("program"), header.get("receiver")
        params, items = header.get("params", {}), header.get("inputs")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise MpcError(f"bad {t} request: a name has 1..{MAX_NAME} characters")
        if not isinstance(program, str) or program not in self.programs:
            raise MpcError(f"bad {t} request: unknown program {program!r}")
        if not (isinstance(receiver, bytes) and len(receiver) == 32):
            raise MpcError(f"bad {t} request: the receiver is a 32-byte key")
        if not isinstance(params, dict):
            raise MpcError(f"bad {t} request: params is a map")
        ranges = self._parse_ranges(t, header.get("ranges", {}), params)
        if not (
            isinstance(items, list)
            and 0 < len(items) <= MAX_GRANT_INPUTS
            and all(isinstance(it, dict) for it in items)
        ):
            raise MpcError(
                f"bad {t} request: inputs lists the run's 1..{MAX_GRANT_INPUTS} inputs, each "
                "{owner, name, as}"
            )
        named = [self._parse_input(it, client_key) for it in items]
        shown = [n for n, _ in named]
        if len(set(shown)) != len(shown):
            raise MpcError(f"bad {t} request: a program name is given to two inputs")
        full = qualify(client_key, name)
        digest = params_digest(params)
        with self._slock:
            if full not in self.store:
                raise MpcError(f"no input named {name!r} of this client on server {self.i}")
            if full not in {q for _, q in named}:
                raise MpcError(
                    f"bad {t} request: the granted input {name!r} is not among the inputs"
                )
            current = set(self.grants.get(full, set()))
            if t == "grant":
                view = []
                for n, q in named:
                    held = self.store.get(q)
                    if held is None:
                        raise MpcError(
                            f"bad grant request: input {n!r} is not stored on server {self.i} "
                            "(a grant binds the stored version of every input)"
                        )
                    view.append((n, q, held[3]))
                code = self.code_hash(program)
                now = current | {
                    Grant(program, code, receiver, digest, tuple(sorted(view)), ranges)
                }
            else:
                probe = Grant(
                    program,
                    b"",
                    receiver,
                    digest,
                    tuple(sorted((n, q, LEGACY_ID) for n, q in named)),
                    ranges,
                )
                now = {g for g in current if not g.same_computation(probe)}
            if len(now) > MAX_GRANTS:
                raise MpcError(f"an input has at most {MAX_GRANTS} granted computations")
            if self.shares is not None:
                self.shares.put_grants(full, now)
            if now:
                self.grants[full] = now
            else:
                self.grants.pop(full, None)
        return pack(
            {"t": "granted" if t == "grant" else "revoked", "name": name, "grants": len(now)}
        )

    @staticmethod
    def _parse_ranges(t: str, raw: Any, params: dict[str, Any]) -> tuple[ParamRange, ...]:
        """A grant's ``{param: [lo, hi]}`` as sorted ``(param, lo, hi)``; any malformed
        entry refuses the grant (nothing is recorded)."""
        if not isinstance(raw, dict) or len(raw) > MAX_GRANT_RANGES:
            raise MpcError(f"bad {t} request: ranges maps at most {MAX_GRANT_RANGES} params")
        out = []
        for name, bounds in raw.items():
            if not isinstance(name, str) or not 0 < len(name) <= MAX_PARAM_NAME:
                raise MpcError(f"bad {t} request: a ranged param has a 1..{MAX_PARAM_NAME} name")
            if name in params:
                raise MpcError(f"bad {t} request: param {name!r} is given both a value and a range")
            if not (
                isinstance(bounds, list)
                and len(bounds) == 2
                and all(type(v) is int and -(1 << 63) <= v < 1 << 63 for v in bounds)
                and bounds[0] <= bounds[1]
            ):
                raise MpcError(
                    f"bad {t} request: the range of {name!r} is [lo, hi], integers, lo <= hi"
                )
            out.append((name, bounds[0], bounds[1]))
        return tuple(sorted(out))

    @staticmethod
    def _granted(
        granted: set[Grant],
        program: str,
        code: bytes,
        receiver: bytes,
        params: dict[str, Any],
        view: tuple[GrantInput, ...],
    ) -> tuple[bool, str | None]:
        """Whether one of ``granted`` allows this run, and if not, why a grant that matches
        it but for a ranged param refuses it (None: no grant comes that close)."""
        if Grant(program, code, receiver, params_digest(params), view) in granted:
            return True, None
        why = None
        for g in granted:
            if not g.ranges or (g.program, g.code, g.receiver, g.inputs) != (
                program,
                code,
                receiver,
                view,
            ):
                continue
            bounded = {r[0] for r in g.ranges}
            fixed = {k: v for k, v in params.items() if k not in bounded}
            if params_digest(fixed) != g.params_hash:
                continue
            why = g.out_of_range(params)
            if why is None:
                return True, None
        return False, why

    @staticmethod
    def _parse_input(it: Any, client_key: bytes) -> tuple[str, str]:
        """One input of a run or grant: (name the program sees, qualified name).

        A plain name is the requester's own input; ``{"owner": key, "name": name, "as":
        name the program sees}`` is any owner's.
        """
        if isinstance(it, str):
            if not 0 < len(it) <= MAX_NAME:
                raise MpcError(f"bad run request: input names have 1..{MAX_NAME} characters")
            return it, qualify(client_key, it)
        if not isinstance(it, dict) or set(it) - {"owner", "name", "as"}:
            raise MpcError("bad run request: an input is a name or {owner, name, as}")
        owner, name = it.get("owner"), it.get("name")
        shown = it.get("as", name)
        if not (isinstance(owner, bytes) and len(owner) == 32):
            raise MpcError("bad run request: an input's owner is a 32-byte key")
        if not (
            isinstance(name, str)
            and isinstance(shown, str)
            and 0 < len(name) <= MAX_NAME
            and 0 < len(shown) <= MAX_NAME
        ):
            raise MpcError(f"bad run request: input names have 1..{MAX_NAME} characters")
        return shown, qualify(owner, name)

    def _resolve(
        self, items: Any, program: str, params: Any, client_key: bytes
    ) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
        """A run request's inputs as (name the program sees, qualified name) pairs, and the
        store ids the grant check saw (the run refuses if any changes before it reads).

        Another owner's input needs that owner's grant of exactly this computation: this
        program, this requester, these params, and these inputs under these program names,
        each at the version the grant recorded. Without one the run is refused before
        anything is read or sent (the same answer whether or not the input exists).
        """
        if not isinstance(items, list) or len(items) > MAX_INPUTS:
            raise MpcError(f"bad run request: inputs is a list of at most {MAX_INPUTS} items")
        out = [self._parse_input(it, client_key) for it in items]
        foreign = [(n, q) for n, q in out if not q.startswith(client_key.hex() + "/")]
        if not foreign:
            return out, {}
        if not isinstance(params, dict):
            raise MpcError("bad run request: params is a map")
        code = self.code_hash(program) if program in self.programs else b""
        with self._slock:
            view = tuple(
                sorted((n, q, self.store[q][3] if q in self.store else b"") for n, q in out)
            )
            for n, q in foreign:
                granted = self.grants.get(q, set())
                ok, why = self._granted(granted, program, code, client_key, params, view)
                if ok:
                    continue
                self.refused_grants += 1
                if why is not None:
                    raise MpcError(f"input {n!r} is not granted for this run of {program!r}: {why}")
                near = any(g.program == program and g.receiver == client_key for g in granted)
                owner = q.split("/", 1)[0][:16]
                raise MpcError(
                    f"input {n!r} of owner {owner} is not granted to this key for this run of "
                    f"{program!r}"
                    + (
                        ": its grants name other params or inputs, or an input was replaced "
                        "since the grant, or the program's code changed since"
                        if near
                        else ""
                    )
                )
        return out, {q: sid for _, q, sid in view}

    def _stored_size(self, name: str) -> int:
        held = self.store.get(name)
        return 0 if held is None else 16 * int(held[0].size)

    def _forget(self, name: str) -> None:
        """Drop an input and its grants, and give its bytes back to its owner's quota
        (caller holds _slock).

        Replacing or deleting an input drops its grants: each bound the content it was made
        for (its store id), so a new version of the name starts with none.
        """
        size = self._stored_size(name)
        owner = self.owners.pop(name, None)
        self.store.pop(name, None)
        self.grants.pop(name, None)
        self.stored_bytes -= size
        if owner is not None:
            left = self.client_bytes.get(owner, 0) - size
            if left > 0:
                self.client_bytes[owner] = left
            else:
                self.client_bytes.pop(owner, None)

    def _agree(
        self, session: str, program: str, params: dict[str, Any], view: list[GrantInput]
    ) -> None:
        """Check with both peers that all three servers run the same thing on the same data.

        A store or replace that reached only some servers leaves them holding shares of
        different values under one name: computed on, they would give garbage, or an output
        that depends on the difference. Each server sends both peers a digest of its view
        (program, params hash, every input's program name, qualified name and store id) and
        one word per input, and compares theirs with its own before any nonce or share is
        sent. A mismatch fails the run here, naming the input whose version differs
        (counted in ``input_mismatches``); the peers see the same mismatch (or this server's
        abort) and fail too. One round, 32 + 8 n bytes to each peer.
        """
        digest, words = run_view(program, self.code_hash(program), params, view)
        msg = np.concatenate(
            [np.frombuffer(digest, dtype=np.uint64), np.array(words, dtype=np.uint64)]
        )
        tr = _SessionTransport(self, session)
        peers = [(self.i + 1) % 3, (self.i + 2) % 3]
        for j in peers:
            tr.send(j, msg)
        for j in peers:
            got = tr.recv(j, msg.size)
            if got.size >= 4 and got[:4].tobytes() == digest:
                continue
            self.input_mismatches += 1
            theirs = set(got[4:].tolist())
            differ = [v[0] for v, w in zip(view, words, strict=True) if w not in theirs]
            if differ:
                log.warning(
                    "server %d: run of %r refused: server %d holds another version of %r",
                    self.i,
                    program,
                    j,
                    differ[0],
                )
                raise MpcError(
                    f"servers {self.i} and {j} hold different versions of input "
                    f"{differ[0]!r} (a store or replace reached only some servers, or its "
                    "share pairs do not fit together): run aborted before any share was sent; "
                    "store it again"
                )
            log.warning(
                "server %d: run of %r refused: server %d was asked another", self.i, program, j
            )
            raise MpcError(
                f"servers {self.i} and {j} were asked for different runs (program, params or "
                "inputs) or run different code under the program's name: run aborted before "
                "any share was sent"
            )

    def party_for(self, program: str, session: str) -> Party:
        """This server's side of one session: checked if ``program`` runs in malicious mode."""
        cls = MaliciousParty if program in self.malicious else Party
        return cls(self.i, self.pair_keys, _SessionTransport(self, session), self.fp, session)

    def run(
        self,
        session: str,
        program: str,
        inputs: list[str] | list[tuple[str, str]],
        params: dict[str, Any],
        *,
        expect: Mapping[str, bytes] | None = None,
    ) -> tuple[dict[str, SharedArray], dict[str, Any]]:
        """Run one program in step with the other two servers; all outputs or an error.

        ``inputs`` are qualified names (:func:`qualify`; the program sees them as given) or
        ``(name the program sees, qualified name)`` pairs; ``expect`` maps qualified names to
        the store ids a grant check saw (an input replaced since fails the run). Before any
        share leaves this server, the three servers compare their views of the run
        (:meth:`_agree`). Any failure here (also a missing input, found before any message)
        tells the peers to abandon the session, so they fail at once instead of after their
        timeout; whatever the program raises reaches the caller as an :class:`MpcError` (or
        :class:`PeerGone`), never as a bare exception.
        """
        if not session or len(session) > MAX_SESSION:
            raise MpcError(f"a run needs a session id of 1..{MAX_SESSION} characters")
        with self._qlock:
            if session in self._active or session in self._finished:
                raise MpcError(f"session {session[:16]!r} is running or was used")
            self._active.add(session)
        try:
            try:
                fn = self.programs.get(program)
                if fn is None:
                    raise MpcError(f"unknown program {program!r}")
                party = self.party_for(program, session)
                shared = {}
                view: list[GrantInput] = []
                with self._slock:  # one consistent snapshot of every input
                    for item in inputs:
                        shown, full = item if isinstance(item, tuple) else (item, item)
                        held = self.store.get(full)
                        if held is None:
                            raise MpcError(f"no input named {shown!r} on server {self.i}")
                        if shown in shared:
                            raise MpcError(f"input {shown!r} named twice")
                        a, b, frac, sid = held
                        if expect is not None and expect.get(full, sid) != sid:
                            raise MpcError(
                                f"input {shown!r} was replaced after the grant check: run again"
                            )
                        shared[shown] = SharedArray(party, a, b, frac)
                        view.append((shown, full, sid))
                try:  # unknown or missing params fail here, before any message
                    inspect.signature(fn).bind(party, shared, **params)
                except TypeError as e:
                    raise MpcError(f"bad params for {program!r}: {e}") from None
                self._agree(session, program, params, sorted(view))
                party.start()  # fresh nonces from all three servers: the session's own keys
                result = fn(party, shared, **params)
                if not isinstance(result, dict):
                    raise MpcError(f"program {program!r} returned no result map")
                if isinstance(party, MaliciousParty):
                    result = party.release(result)  # every check passes before any output
                else:
                    result = _rerandomise(party, result)
            except AccordError:
                raise
            except Exception as e:  # noqa: BLE001 - bad inputs or params must not escape raw
                raise MpcError(
                    f"program {program!r} failed: {type(e).__name__}: {e}"[:300]
                ) from None
        except BaseException as e:
            self.failed_runs += 1
            if isinstance(e, MpcAbort):
                self.aborts += 1
            self._abort(session)
            raise
        finally:
            self.end_session(session)
            with self._qlock:
                self._active.discard(session)
        outputs = {k: v for k, v in result.items() if isinstance(v, SharedArray)}
        public = {k: v for k, v in result.items() if not isinstance(v, SharedArray)}
        return outputs, public
