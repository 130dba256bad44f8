"""A small metrics registry with the Prometheus text exposition format (version 0.0.4).

Why our own: the node needs a handful of counters, gauges and histograms, several independent
registries in one process (tests run four validators side by side, each with its own
``/metrics``), and no global state. ``prometheus_client`` keeps a process-global default
registry and pulls in more than we use; this module is about 200 lines and has no
dependencies.

Invariants:

* Memory is bounded: each metric holds at most ``max_series`` label combinations; further
  combinations are folded into one series whose label values are all ``"overflow"`` (so a
  hostile peer cannot grow memory by inventing label values; callers should only use label
  values from small fixed sets anyway).
* Updates are thread-safe (one lock per metric), so a node running on a background thread and
  a host application reading ``render()`` may share a registry.
* Collectors registered with :meth:`Registry.add_collector` run just before rendering, which
  is how gauges that mirror live state (queue depths) stay exact without being updated on
  every change.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of :meth:`Registry.render` output."""

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
OVERFLOW = "overflow"


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str], max_series: int) -> None:
        if not _NAME.match(name):
            raise ValueError(f"bad metric name {name!r}")
        for ln in labelnames:
            if not _LABEL.match(ln) or ln == "le":
                raise ValueError(f"bad label name {ln!r}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self.max_series = max_series
        self._lock = threading.Lock()

    def _key(
        self, labels: dict[str, object], series: dict[tuple[str, ...], object]
    ) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        key = tuple(str(labels[n]) for n in self.labelnames)
        if key not in series and len(series) >= self.max_series:
            key = tuple(OVERFLOW for _ in self.labelnames)
        return key

    def samples(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


class _Values(_Metric):
    """A metric holding one number per label combination (counters and gauges)."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str], max_series: int) -> None:
        super().__init__(name, help, labelnames, max_series)
        self._values: dict[tuple[str, ...], float] = {}

    def _add(self, amount: float, labels: dict[str, object]) -> None:
        if not labels and not self.labelnames:  # the common, unlabelled case: no key to build
            with self._lock:
                self._values[()] = self._values.get((), 0.0) + amount
            return
        with self._lock:
            key = self._key(labels, self._values)  # type: ignore[arg-type]
            self._values[key] = self._values.get(key, 0.0) + amount

    def get(self, **labels: object) -> float:
        with self._lock:
            return self._values.get(tuple(str(labels[n]) for n in self.labelnames), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.labelnames:
            items = [((), 0.0)]
        return [f"{self.name}{_labels_text(self.labelnames, k)} {_fmt(v)}" for k, v in items]


class Counter(_Values):
    """A value that only goes up (frames sent, handshakes refused...)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if amount < 0:
            raise ValueError("a counter cannot decrease")
        self._add(amount, labels)

    def total(self) -> float:
        """Sum over all label combinations."""
        with self._lock:
            return sum(self._values.values())


class Gauge(_Values):
    """A value that goes up and down (connected peers, queue depth)."""

    kind = "gauge"

    def set(self, value: float, **labels: object) -> None:
        with self._lock:
            self._values[self._key(labels, self._values)] = float(value)  # type: ignore[arg-type]

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels: object) -> None:
        self.inc(-amount, **labels)

    def clear(self) -> None:
        """Forget every series (collectors call this before re-setting live values)."""
        with self._lock:
            self._values.clear()


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str],
        max_series: int,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help, labelnames, max_series)
        bs = sorted(float(b) for b in buckets)
        if not bs or any(math.isnan(b) for b in bs):
            raise ValueError("a histogram needs buckets")
        if not math.isinf(bs[-1]):
            bs.append(math.inf)
        self.buckets = tuple(bs)
        # per series: [count per bucket (non-cumulative)..., sum, count]
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, value: float, **labels: object) -> None:
        with self._lock:
            key = self._key(labels, self._series)  # type: ignore[arg-type]
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = [0.0] * (len(self.buckets) + 2)
            for i, b in enumerate(self.buckets):
                if value <= b:
                    s[i] += 1
                    break
            s[-2] += value
            s[-1] += 1

    def count(self, **labels: object) -> float:
        with self._lock:
            s = self._series.get(tuple(str(labels[n]) for n in self.labelnames))
            return s[-1] if s else 0.0

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        out = []
        for key, s in items:
            acc = 0.0
            for i, b in enumerate(self.buckets):
                acc += s[i]
                le = f'le="{_fmt(b)}"'
                out.append(
                    f"{self.name}_bucket{_labels_text(self.labelnames, key, le)} {_fmt(acc)}"
                )
            out.append(f"{self.name}_sum{_labels_text(self.labelnames, key)} {_fmt(s[-2])}")
            out.append(f"{self.name}_count{_labels_text(self.labelnames, key)} {_fmt(s[-1])}")
        return out


class Registry:
    """A set of named metrics rendered together. Creating a metric twice returns the first one
    (so independent components can share a registry), unless the type or labels differ."""

    def __init__(self, max_series: int = 1000) -> None:
        self.max_series = max_series
        self._metrics: dict[str, _Metric] = {}
        self._collectors: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def _get(
        self, cls: type[_Metric], name: str, help: str, labelnames: Sequence[str], **kw: object
    ) -> _Metric:
        with self._lock:
            m = self._metrics.get(name)
            if m is not None:
                if type(m) is not cls or m.labelnames != tuple(labelnames):
                    raise ValueError(
                        f"metric {name} already registered with another type or labels"
                    )
                return m
            m = cls(name, help, labelnames, self.max_series, **kw)
            self._metrics[name] = m
            return m

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, help, labelnames)  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, help, labelnames)  # type: ignore[return-value]

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._get(Histogram, name, help, labelnames, buckets=tuple(buckets))  # type: ignore[return-value]

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def add_collector(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` before each render (to refresh gauges that mirror live state)."""
        with self._lock:
            self._collectors.append(fn)

    def remove_collector(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if fn in self._collectors:
                self._collectors.remove(fn)

    def render(self) -> str:
        """The whole registry in the Prometheus text format."""
        with self._lock:
            collectors = list(self._collectors)
            metrics = sorted(self._metrics.values(), key=lambda m: m.name)
        for fn in collectors:
            fn()
        lines: list[str] = []
        for m in metrics:
            lines.append(f"# HELP {m.name} {_escape_help(m.help)}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            lines.extend(m.samples())
        return "\n".join(lines) + "\n"


def parse_text(text: str) -> dict[str, float]:
    """Parse exposition text into ``{'name{labels}': value}`` (for tests and tools; it reads
    what :meth:`Registry.render` writes, not every dialect of the format)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        out[series] = float(value)
    return out
