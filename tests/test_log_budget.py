"""Strangers cannot fill the log: lines they can trigger go through a budget, and what is held
back is counted and reported (found by the operations review: each refused connection or
malformed request was one log line, a flood one line per packet)."""

from __future__ import annotations

import logging
import socket
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.logbudget import LogBudget

from .support.api import ServedNode


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@given(st.lists(st.tuples(st.sampled_from("ab"), st.floats(0, 30)), max_size=300))
def test_each_kind_logs_at_most_its_budget_per_window_and_counts_the_rest(
    events: list[tuple[str, float]],
) -> None:
    logger = logging.getLogger("test.budget")
    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = _Keep()
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        clock = _Clock()
        budget = LogBudget(logger, per_window=5, window_s=60.0, clock=clock)
        for kind, step in events:
            clock.t += step
            budget.log(logging.INFO, kind, "event %s", kind)
        events_lines = [x for x in lines if x.startswith("event")]
        summaries = [x for x in lines if "were not logged" in x]
        held_reported = sum(int(x.split()[0]) for x in summaries)
        # every event is either logged or counted, never lost
        assert len(events_lines) + budget.suppressed == len(events)
        # whatever is reported held back was really held back
        assert held_reported <= budget.suppressed
        # and no kind ever exceeds its budget within one window
        for kind in "ab":
            windows: dict[int, int] = {}
            t = 0.0
            start = None
            for k, step in events:
                t += step
                if k != kind:
                    continue
                if start is None or t - start >= 60.0:
                    start = t
                windows[int(start * 1000)] = windows.get(int(start * 1000), 0) + 1
            allowed = sum(min(5, n) for n in windows.values())
            assert sum(1 for x in events_lines if x == f"event {kind}") == allowed
    finally:
        logger.removeHandler(handler)


def test_a_flood_of_malformed_requests_logs_a_bounded_number_of_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = ServedNode(tmp_path / "node")
    try:
        host, port = urllib.parse.urlsplit(served.url).netloc.rsplit(":", 1)
        caplog.set_level(logging.INFO)
        for _ in range(200):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
                while s.recv(65536):
                    pass
        lines = [
            r
            for r in caplog.records
            if "GARBAGE" in r.getMessage() or "request" in r.getMessage().lower()
        ]
        assert 0 < len(lines) <= 25, len(lines)
        assert not any(r.exc_info for r in lines)  # no traceback per stranger's request
    finally:
        served.close()
