"""Waiting in tests on a network that runs on its own threads."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(
    cond: Callable[[], bool], timeout: float, what: str, detail: Callable[[], object] | None = None
) -> None:
    """Poll ``cond`` until it holds; else fail naming ``what`` (and ``detail()``, the state
    that explains it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out: {what}" + (f": {detail()}" if detail else ""))
