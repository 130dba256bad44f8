"""A userspace link shaper: TCP relays that add latency, jitter, stalls, a bandwidth cap and
partitions between validators, for machines whose kernel has no ``netem`` queueing discipline.

Each :class:`Relay` listens on one port and forwards every connection it accepts to one
target, shaping each direction on its own. Validators dial relays instead of each other (the
lower-indexed validator of a pair dials, see :class:`accord.net.Transport`), so one relay per
pair shapes both directions of that link. :class:`ShapedNetwork` builds those relays for a
network and says which address each validator should dial for each peer (``addresses=`` of
:class:`accord.node.Node`, or ``peers`` in ``node.json``).

What a direction does to the bytes, modelled on what TCP on a real path shows the application:

* **In order, never early.** A chunk read at time ``a`` is written no earlier than
  ``a + delay + U(-jitter, +jitter)`` (never below zero) and no earlier than the chunk before
  it: jitter reorders nothing, it bunches chunks up, as a TCP stream does.
* **Loss is a stall.** TCP retransmits what a lossy path drops, so the application sees lost
  packets as waits, not holes: with probability ``loss`` a chunk is held for an extra
  retransmission timeout (``rto_s``, 200 ms by default, Linux's minimum), and everything behind
  it waits too.
* **A bandwidth cap** serialises chunks at ``rate`` bytes per second before the delay.
* **Bounded memory.** At most ``max_chunks`` chunks of at most ``chunk_size`` bytes wait in a
  direction, and each write waits for the socket to drain: a receiver that stops reading makes
  the relay stop reading from the sender, whose own writes then block (back-pressure, as on a
  real link), instead of the relay buffering without bound.
* **Partitions.** ``partition("hold")`` stops delivering (bytes wait, back-pressure applies;
  :meth:`Relay.heal` delivers them, late); ``partition("drop")`` resets every connection and
  refuses new ones until healed.

The schedule of a direction is :class:`Schedule`, a pure function of arrival times, sizes and
a seed, so its guarantees are tested without clocks (``tests/test_net_linkshaper.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from accord.base.errors import ValidationError


@dataclass(frozen=True)
class LinkProfile:
    """What one direction of a link does to the bytes crossing it."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    """Probability that a chunk stalls for ``rto_s`` (a retransmission, as TCP sees loss)."""
    rto_s: float = 0.2
    rate: float | None = None
    """Bytes per second (None: no cap)."""

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0 or self.rto_s < 0:
            raise ValidationError("delay, jitter and rto must not be negative")
        if not 0.0 <= self.loss <= 1.0:
            raise ValidationError(f"loss is a probability, got {self.loss}")
        if self.rate is not None and self.rate <= 0:
            raise ValidationError(f"rate must be positive, got {self.rate}")

    @classmethod
    def parse(
        cls, delay: str = "0ms", jitter: str = "0ms", loss: str = "0%", rate: str | None = None
    ) -> LinkProfile:
        """From command-line forms: ``20ms``/``0.02s``, ``1%``/``0.01``, ``1mbit``/``125000``."""
        return cls(
            delay_s=parse_duration(delay),
            jitter_s=parse_duration(jitter),
            loss=parse_ratio(loss),
            rate=None if rate is None else parse_rate(rate),
        )

    def describe(self) -> str:
        s = f"delay {self.delay_s * 1000:g}ms jitter {self.jitter_s * 1000:g}ms loss {self.loss:.2%}"
        return s + ("" if self.rate is None else f" rate {self.rate:g}B/s")


def parse_duration(text: str) -> float:
    t = text.strip().lower()
    try:
        if t.endswith("ms"):
            return float(t[:-2]) / 1000
        if t.endswith("s"):
            return float(t[:-1])
        return float(t)
    except ValueError:
        raise ValidationError(f"not a duration: {text!r} (e.g. 20ms, 0.5s)") from None


def parse_ratio(text: str) -> float:
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ValidationError(f"not a ratio: {text!r} (e.g. 1%, 0.01)") from None


def parse_rate(text: str) -> float:
    """Bytes per second from ``125000``, ``1mbit``, ``500kbit``."""
    t = text.strip().lower()
    units = {"gbit": 1e9 / 8, "mbit": 1e6 / 8, "kbit": 1e3 / 8}
    try:
        for suffix, scale in units.items():
            if t.endswith(suffix):
                return float(t[: -len(suffix)]) * scale
        return float(t)
    except ValueError:
        raise ValidationError(f"not a rate: {text!r} (e.g. 1mbit, 125000)") from None


class Schedule:
    """When each chunk of one direction is delivered (see the module docstring)."""

    def __init__(self, profile: LinkProfile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self.last = float("-inf")  # when the previous chunk is delivered
        self.wire_free = float("-inf")  # when the bandwidth cap has sent the previous chunk
        self.stalls = 0

    def deliver_at(self, arrival: float, size: int) -> float:
        p = self.profile
        sent = arrival
        if p.rate is not None:
            sent = max(arrival, self.wire_free) + size / p.rate
            self.wire_free = sent
        delay = p.delay_s
        if p.jitter_s:
            delay = max(0.0, delay + self.rng.uniform(-p.jitter_s, p.jitter_s))
        t = sent + delay
        if p.loss and self.rng.random() < p.loss:
            self.stalls += 1
            t += p.rto_s
        t = max(t, self.last)
        self.last = t
        return t


@dataclass
class DirectionStats:
    bytes: int = 0
    chunks: int = 0
    stalls: int = 0


@dataclass
class RelayStats:
    connections: int = 0
    refused: int = 0
    forward: DirectionStats = field(default_factory=DirectionStats)
    backward: DirectionStats = field(default_factory=DirectionStats)


class Relay:
    """One listening port forwarding to ``target``: ``forward`` shapes what the dialer sends,
    ``backward`` what the target answers (default: the same profile)."""

    def __init__(
        self,
        target: tuple[str, int],
        forward: LinkProfile,
        backward: LinkProfile | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        chunk_size: int = 16 * 1024,
        max_chunks: int = 16,
    ) -> None:
        self.target = target
        self.forward = forward
        self.backward = backward if backward is not None else forward
        self.host = host
        self.port = port
        self.chunk_size = chunk_size
        self.max_chunks = max_chunks
        self.stats = RelayStats()
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._dropping = False
        self._queued = 0  # bytes read and not yet written, over all connections

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def buffered(self) -> int:
        """Bytes this relay holds now: queued chunks and what sits in its sockets' write
        buffers (the bound the back-pressure guarantee is about)."""
        held = self._queued
        for a, b in self._conns:
            held += a.transport.get_write_buffer_size() + b.transport.get_write_buffer_size()
        return held

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def partition(self, mode: str = "hold") -> None:
        """``hold``: deliver nothing until healed; ``drop``: reset every connection and refuse
        new ones until healed."""
        if mode == "hold":
            self._flowing.clear()
        elif mode == "drop":
            self._dropping = True
            self._reset_all()
        else:
            raise ValidationError(f"partition mode is hold or drop, got {mode!r}")

    def heal(self) -> None:
        self._dropping = False
        self._flowing.set()

    def _reset_all(self) -> None:
        for a, b in list(self._conns):
            for w in (a, b):
                w.transport.abort()  # a reset, as a path that went away looks to TCP
        self._conns.clear()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._dropping:
            self.stats.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), 5.0
            )
        except (OSError, TimeoutError):
            self.stats.refused += 1
            writer.transport.abort()
            return
        for w in (writer, up_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stats.connections += 1
        pair = (writer, up_writer)
        self._conns.add(pair)
        seed = self._rng.getrandbits(64)
        fwd = Schedule(self.forward, random.Random(seed))
        bwd = Schedule(self.backward, random.Random(seed ^ 0x5A5A))
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, fwd, self.stats.forward)),
            asyncio.create_task(self._pipe(up_reader, writer, bwd, self.stats.backward)),
        ]
        for t in tasks:
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        try:
            # one direction ending (EOF or error) ends the connection, as a relay must not
            # leave a half-open pair behind
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._conns.discard(pair)
            for w in pair:
                w.close()

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        schedule: Schedule,
        stats: DirectionStats,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(self.max_chunks)

        async def read() -> None:
            try:
                while True:
                    data = await src.read(self.chunk_size)
                    if not data:
                        break
                    at = schedule.deliver_at(loop.time(), len(data))
                    stats.stalls = schedule.stalls
                    self._queued += len(data)
                    await queue.put((at, data))  # blocks when full: back-pressure
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                await queue.put(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                at, data = item
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._flowing.wait()
                dst.write(data)
                self._queued -= len(data)
                stats.bytes += len(data)
                stats.chunks += 1
                await dst.drain()
            if dst.can_write_eof():
                with contextlib.suppress(OSError):
                    dst.write_eof()
        except (OSError, ConnectionError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            while not queue.empty():
                item = queue.get_nowait()
                if item is not None:
                    self._queued -= len(item[1])


class ShapedNetwork:
    """A relay for every pair of validators ``i < j``: ``i`` dials ``j`` through it.

    ``addresses`` are the validators' real transport addresses by index; :meth:`dial_map`
    gives, for validator ``i``, the address to use for each higher-indexed peer."""

    def __init__(
        self,
        addresses: Mapping[int, tuple[str, int]],
        profile: LinkProfile,
        *,
        host: str = "127.0.0.1",
        seed: int = 1,
    ) -> None:
        self.addresses = dict(addresses)
        self.profile = profile
        self.relays: dict[tuple[int, int], Relay] = {}
        n = sorted(self.addresses)
        for a, i in enumerate(n):
            for j in n[a + 1 :]:
                self.relays[(i, j)] = Relay(
                    self.addresses[j], profile, host=host, seed=seed * 1000 + i * 31 + j
                )

    async def start(self) -> None:
        for r in self.relays.values():
            await r.start()

    async def stop(self) -> None:
        for r in self.relays.values():
            await r.stop()

    def dial_map(self, i: int) -> dict[int, tuple[str, int]]:
        return {j: r.address for (a, j), r in self.relays.items() if a == i}

    def links_of(self, i: int) -> list[Relay]:
        return [r for (a, b), r in self.relays.items() if i in (a, b)]

    def partition(self, i: int, mode: str = "hold") -> None:
        """Cut validator ``i`` off from every other validator."""
        for r in self.links_of(i):
            r.partition(mode)

    def heal(self, i: int) -> None:
        for r in self.links_of(i):
            r.heal()

    def stalls(self) -> int:
        return sum(r.stats.forward.stalls + r.stats.backward.stalls for r in self.relays.values())


class ShaperThread:
    """A :class:`ShapedNetwork` served by an event loop of its own, for synchronous callers
    (the chaos campaign): every method is safe to call from any thread."""

    def __init__(self, network: ShapedNetwork) -> None:
        self.network = network
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.network.start(), self._loop).result(30)

    def call(self, fn: Callable[..., object], *args: object) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.network.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
