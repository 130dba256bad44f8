"""One process per validator folder: an exclusive lock on the data folder, and a lifeline.

Two processes running one validator would both sign with its key: two votes for different
blocks in one round (equivocation), the one thing a validator must never do, and two writers
racing on one LMDB environment. Flask's debug reloader did exactly that (it imports the host
application twice). So a node holds an exclusive ``flock`` on ``<data>/node.lock`` for as long
as it runs, and writes its process id into it; a second start on the same folder is refused
with a one-line message naming that process. The kernel drops the lock when the holder dies
(SIGKILL included), so a crash never leaves a stale lock behind.

The lock cannot see a *copy* of the folder on another machine: a copied validator key signs
twice all the same. Operators must never run a validator key in two places (README).

The lifeline ends a child validator when its supervisor dies (``accord devnet`` killed by
SIGKILL, the OOM killer or a closed terminal): the supervisor keeps the write end of a pipe
and passes the read end to each child; when the supervisor exits, however it exits, the kernel
closes the write end, the child's read returns end-of-file, and the child stops cleanly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path

from accord.base.errors import AccordError

LOCK_NAME = "node.lock"


class FolderInUse(AccordError):
    """Another process runs the validator of this folder."""

    code = "folder_in_use"


class FolderLock:
    """An exclusive, process-lifetime lock on a validator's data folder (see module doc)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`FolderInUse` naming the process that holds it."""
        if self._fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # Not truncated on open: the holder's pid must stay readable for the message below.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder is not None else "another process"
            raise FolderInUse(
                f"{self.folder} is in use by {who} (lock {self.path}); a validator runs in one "
                f"process only: stop that one first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(
                fd, 0
            )  # no stale pid for the next reader (the lock itself goes with close)
        os.close(fd)

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def watch_lifeline(fd: int, on_eof: Callable[[], None]) -> threading.Thread:
    """Call ``on_eof`` (from a daemon thread) once the pipe ``fd`` reaches end-of-file, that
    is once every writer (the supervisor) has gone, however it went."""

    def run() -> None:
        try:
            while os.read(fd, 512):
                pass  # the supervisor never writes; anything read is ignored
        except OSError:
            pass
        on_eof()

    t = threading.Thread(target=run, name="accord-lifeline", daemon=True)
    t.start()
    return t
