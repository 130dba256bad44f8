"""Log lines with a budget: what strangers can trigger must not be able to fill a disk.

A validator and its API log what unauthenticated peers do wrong (a refused handshake, a
malformed request) because an operator needs to see it; but each such line costs the peer one
connection and costs the node a write, so a flood would turn the log into the attack. A
:class:`LogBudget` lets through ``per_window`` lines of each kind per ``window_s`` seconds and
counts the rest; the first line of the next window says how many were held back, so nothing
goes unreported and the volume stays bounded whatever the peers send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogBudget:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_window: int = 20,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_held: Callable[[str], None] | None = None,
    ) -> None:
        self.logger = logger
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock
        # kind -> (window start, lines let through, lines held back); kinds are names in the
        # code (never taken from input), so the table stays small
        self._kinds: dict[str, tuple[float, int, int]] = {}
        self.suppressed = 0  # lines held back, over the process's life
        self.on_held = on_held
        """Called with the kind of each line held back (a metric, so that a flood shows on a
        dashboard while the log stays quiet)."""

    def log(self, level: int, kind: str, msg: str, *args: object, **kw: object) -> None:
        now = self._clock()
        start, shown, held = self._kinds.get(kind, (now, 0, 0))
        if now - start >= self.window_s:
            if held:
                self.logger.log(
                    level,
                    "%d more %r lines in the last %.0f s were not logged",
                    held,
                    kind,
                    now - start,
                )
            start, shown, held = now, 0, 0
        if shown < self.per_window:
            self.logger.log(level, msg, *args, **kw)  # type: ignore[arg-type]
            shown += 1
        else:
            held += 1
            self.suppressed += 1
            if self.on_held is not None:
                self.on_held(kind)
        self._kinds[kind] = (start, shown, held)
