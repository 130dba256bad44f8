"""Sharing by data owners, and three servers in one process for tests and notebooks.

:func:`split` is what a data owner runs on its own machine: it turns an array into three share
pairs, one per server, with fresh randomness from the operating system. :func:`run_local`
runs a program on three threads connected by in-memory queues; the protocols, the messages
and the randomness are exactly those of the networked servers (:mod:`accord.mpc.server`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.base.errors import AccordError, MpcError, PeerGone
from accord.mpc import ring
from accord.mpc.engine import Party, SharedArray
from accord.mpc.prf import LocalRandom, fresh_key
from accord.mpc.ring import FixedPoint, Ring

ShareTriple = list[tuple[Ring, Ring]]


def split(values: npt.ArrayLike, frac_bits: int) -> ShareTriple:
    """Replicated shares of ``values`` encoded with ``frac_bits`` (0: integers).

    Returns ``[(x0, x1), (x1, x2), (x2, x0)]``: element i goes to server i and to no one else.
    """
    arr = np.asarray(values)
    enc = ring.encode_int(arr) if frac_bits == 0 else ring.encode_fixed(arr, frac_bits)
    rnd = LocalRandom()
    x0 = rnd.words(enc.size).reshape(enc.shape)
    x1 = rnd.words(enc.size).reshape(enc.shape)
    x2 = enc - x0 - x1
    return [(x0, x1), (x1, x2), (x2, x0)]


def combine(shares: list[tuple[Ring, Ring] | None]) -> Ring:
    """Reconstruct from any two servers' share pairs, checking the overlap when all three came.

    In replicated sharing every share word is held by two servers, so a receiver that gets all
    three pairs can check them against each other for free.
    """
    have = [i for i, s in enumerate(shares) if s is not None]
    if len(have) < 2:
        raise MpcError("need the shares of at least two servers")
    x: list[Ring | None] = [None, None, None]
    for i in have:
        pair = shares[i]
        assert pair is not None
        for j, word in ((i, pair[0]), ((i + 1) % 3, pair[1])):
            prev = x[j]
            if prev is not None and not np.array_equal(prev, word):
                raise MpcError("the servers' shares do not agree")
            x[j] = word
    if any(v is None for v in x):
        raise MpcError("shares do not cover the secret")
    return x[0] + x[1] + x[2]  # type: ignore[operator]


class LocalNetwork:
    """In-memory links between three threads (bounded queues, timeouts like the TCP links)."""

    def __init__(self, timeout: float = 60.0, max_pending: int = 64) -> None:
        self.timeout = timeout
        self.queues: dict[tuple[int, int], queue.Queue[Any]] = {
            (s, d): queue.Queue(maxsize=max_pending) for s in range(3) for d in range(3) if s != d
        }
        self.dead: set[int] = set()

    def transport(self, index: int) -> _LocalTransport:
        return _LocalTransport(self, index)


class _LocalTransport:
    def __init__(self, net: LocalNetwork, index: int) -> None:
        self.net = net
        self.i = index

    def send(self, to: int, data: Ring) -> None:
        try:
            self.net.queues[(self.i, to)].put(data.copy(), timeout=self.net.timeout)
        except queue.Full:
            raise PeerGone(f"server {to} stopped reading") from None

    def recv(self, frm: int, count: int) -> Ring:
        try:
            item = self.net.queues[(frm, self.i)].get(timeout=self.net.timeout)
        except queue.Empty:
            raise PeerGone(f"server {frm} sent nothing for {self.net.timeout} s") from None
        if item is None:
            raise PeerGone(f"server {frm} is gone")
        return item

    def close(self) -> None:
        """Tell the others this server is gone (what a closed socket tells a TCP peer)."""
        for d in range(3):
            if d != self.i:
                self.net.queues[(self.i, d)].put(None)


def run_local(
    program: Callable[..., Any],
    inputs: dict[str, tuple[npt.ArrayLike, int]] | None = None,
    *,
    fp: FixedPoint | None = None,
    params: dict[str, Any] | None = None,
    timeout: float = 60.0,
    keep_views: bool = False,
    fail: dict[int, int] | None = None,
    keys: list[bytes] | None = None,
    session: str = "local",
    party_class: type[Party] = Party,
    wrap: dict[int, Callable[[Any], Any]] | None = None,
) -> list[Any]:
    """Run ``program(party, **shared_inputs, **params)`` on three in-process servers.

    ``inputs`` maps a name to ``(values, frac_bits)``; each is split as a data owner would.
    Returns the three servers' return values (an exception in any server is raised).
    ``fail`` maps a server to the number of messages after which it dies (tests). ``keys``
    are the three static pair keys (fresh unless given: a test of restarts passes the same).
    ``party_class`` is the protocol side (``MaliciousParty`` for checked runs); ``wrap`` maps a
    server to a function of its transport (tests: a server that tampers with its messages).
    """
    fp = fp or FixedPoint()
    keys = keys or [fresh_key() for _ in range(3)]
    net = LocalNetwork(timeout=timeout)
    shared: dict[str, ShareTriple] = {}
    fracs: dict[str, int] = {}
    for name, (values, frac) in (inputs or {}).items():
        shared[name] = split(values, frac)
        fracs[name] = frac
    results: list[Any] = [None, None, None]
    errors: list[BaseException | None] = [None, None, None]
    parties: list[Party] = []
    for i in range(3):
        t = net.transport(i)
        transport: Any = t if not fail or i not in fail else _Dying(t, fail[i])
        if wrap and i in wrap:
            transport = wrap[i](transport)
        p = party_class(i, (keys[i], keys[(i + 1) % 3]), transport, fp, session=session)
        p.stats.keep_views = keep_views
        parties.append(p)

    def work(i: int) -> None:
        p = parties[i]
        kwargs = {
            name: SharedArray(p, tri[i][0].copy(), tri[i][1].copy(), fracs[name])
            for name, tri in shared.items()
        }
        try:
            p.start()  # the session handshake, before the program's first operation
            results[i] = program(p, **kwargs, **(params or {}))
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            errors[i] = e
            net.transport(i).close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # Report what a requester would see: a protocol error first, then a lost peer, and only
    # then whatever killed a server (a crashed server reports nothing itself).
    for e in errors:
        if isinstance(e, AccordError) and not isinstance(e, PeerGone):
            raise e
    for e in errors:
        if isinstance(e, PeerGone):
            raise e
    for e in errors:
        if e is not None:
            raise e
    local_runs.append(parties)
    if len(local_runs) > 1:
        del local_runs[0]
    return results


local_runs: list[list[Party]] = []
"""The parties of the last :func:`run_local` call (their stats and recorded views, for tests)."""


class _Dying:
    """A transport that drops dead after ``n`` sends: a server crashing mid-computation."""

    def __init__(self, inner: _LocalTransport, n: int) -> None:
        self.inner = inner
        self.left = n

    def send(self, to: int, data: Ring) -> None:
        if self.left <= 0:
            raise SystemExit("server crashed")  # noqa: TRY301 - simulated crash
        self.left -= 1
        self.inner.send(to, data)

    def recv(self, frm: int, count: int) -> Ring:
        return self.inner.recv(frm, count)
