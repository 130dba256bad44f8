"""Background-thread mode, for synchronous hosts (Flask, Django): a node on an event loop of
its own, in a daemon thread.

Rules this module keeps:

* The node is stopped cleanly (last commit finished, LMDB closed, folder unlocked) when the
  interpreter exits, and on SIGTERM (what systemd, Docker and process managers send) when the
  host asked for it and no SIGTERM handler was installed yet. A daemon thread alone dies with
  the process without any of that (before: the Flask host died mid-write).
* After a clean stop on SIGTERM the process still ends the way SIGTERM would have ended it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger("accord.node")


class BackgroundThread:
    """Runs ``start()`` then the loop forever on a daemon thread, ``stop()`` when told to."""

    def __init__(
        self, name: str, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
    ) -> None:
        self.name = name
        self._start, self._stop = start, stop
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, timeout: float, *, handle_sigterm: bool) -> None:
        """Start and return once the node started (or raise what its start raised)."""
        started = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as e:  # reported to the caller below
                errors.append(e)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"accord-{self.name}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("node did not start in time")
        if errors:
            raise errors[0]
        atexit.register(self.stop)
        if (
            handle_sigterm
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
        ):
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        log.info("%s: SIGTERM: stopping", self.name)
        self.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop (the node stops on its way out) and wait for the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None
