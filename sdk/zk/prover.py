"""Proving and fast verification through a long-lived snarkjs worker (``worker.js``).

Starting Node and snarkjs costs most of a second per command; one worker process per Python
process proves in ~2 s and verifies in a few milliseconds (see the README's figures). The worker reads each
proving key once and keeps it in memory.

:class:`SnarkjsWorker` is thread-safe (one request at a time) and restarts itself if the Node
process dies; :func:`shared_worker` returns one per Python process (a forked child starts its
own Node process instead of sharing the parent's pipes).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

from accord.base.errors import ProofError
from accord.zk import tools
from accord.zk.groth16 import SUBGROUP_ERROR
from accord.zk.tools import ZkToolError

WORKER_JS = Path(__file__).with_name("worker.js")
log = logging.getLogger(__name__)
MAX_REPLY = 4 << 20  # bytes in one reply line: a proof or a verdict is a few kB
VERIFY_TIMEOUT = 30.0  # seconds; a verification takes milliseconds, a first key ~1 s
PROVE_TIMEOUT = 600.0  # seconds; a 2^15 proof takes a few


def _pump(out: Any, lines: queue.Queue[str | None]) -> None:
    """Hand the worker's reply lines to the requester (which waits with a timeout) until the
    pipe closes; None marks the end."""
    try:
        while True:
            line = out.readline(MAX_REPLY)
            if not line:
                break
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)


class SnarkjsWorker:
    """Every fault of the Node process (no answer in time, a line that is not its JSON reply,
    an exit) ends that process and raises :class:`ZkToolError`: the next request starts a
    fresh one, and the caller decides the request another way. ``faults`` counts them."""

    def __init__(
        self, verify_timeout: float = VERIFY_TIMEOUT, prove_timeout: float = PROVE_TIMEOUT
    ) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.verify_timeout = verify_timeout
        self.prove_timeout = prove_timeout
        self.faults = 0
        self._lock = threading.Lock()
        self._next_id = 0
        self._pid = os.getpid()
        #: vk ids the running Node process holds prepared (emptied when it is replaced).
        self._vks: set[str] = set()

    def _ensure(self) -> subprocess.Popen[str]:
        if self._pid != os.getpid():
            # A forked child inherits the parent's pipes and request counter: if both used the
            # same Node process, their replies would interleave and, with equal ids, one could
            # take the other's answer (say, another proof's "B not in G2"). The child leaves the
            # parent's process alone and starts its own. (Popen.poll() in the child happens to
            # report the parent's Node process as ended, ECHILD, which had the same effect; this
            # says it on purpose, and keeps close() in the child away from the parent's process.)
            self._pid = os.getpid()
            self._proc = None
        if self._proc is None or self._proc.poll() is not None:
            self._vks = set()
            try:
                self._proc = subprocess.Popen(
                    [tools.node_bin(), str(WORKER_JS)],
                    cwd=str(tools.project_root()),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    bufsize=1,
                )
            except OSError as e:
                raise ZkToolError(f"cannot start the snarkjs worker: {e}") from None
            # A fresh queue per process: a late line of a replaced process never reaches a
            # request to its successor.
            self._lines = queue.Queue()
            threading.Thread(
                target=_pump,
                args=(self._proc.stdout, self._lines),
                name="snarkjs-worker-reader",
                daemon=True,
            ).start()
        return self._proc

    def _fault(self, what: str) -> ZkToolError:
        """End the Node process (its replies can no longer be matched to requests)."""
        self.faults += 1
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        log.warning(
            "snarkjs worker fault (%d so far): %s; it restarts on the next request",
            self.faults,
            what,
        )
        return ZkToolError(f"snarkjs worker: {what}")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            proc = self._ensure()
            self._next_id += 1
            rid = self._next_id
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps({"id": rid, "op": op, **fields}) + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                raise self._fault(f"died ({e})") from None
            timeout = self.prove_timeout if op == "prove" else self.verify_timeout
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise self._fault(f"no answer in {timeout:g} s") from None
            if line is None:
                raise self._fault("exited")
            try:
                reply = json.loads(line)
            except ValueError:
                raise self._fault(f"answered a line that is not JSON: {line[:80]!r}") from None
            if not isinstance(reply, dict) or reply.get("id") != rid:
                raise self._fault("answered out of order or not with an object")
            return reply

    def prove(
        self, wasm: Path, zkey: Path, inputs: dict[str, Any]
    ) -> tuple[dict[str, Any], list[int]]:
        """Witness + Groth16 proof. Returns (snarkjs proof JSON, public signals as ints)."""
        reply = self.request("prove", wasm=str(wasm), zkey=str(zkey), input=_jsonable(inputs))
        if not reply.get("ok"):
            raise ProofError(f"proving failed: {reply.get('error', '')[:500]}")
        return reply["proof"], [int(x) for x in reply["publicSignals"]]

    def verify(
        self, vk: dict[str, Any], proof: dict[str, Any], public: list[int], vk_id: str | None = None
    ) -> bool:
        """Groth16 check in the worker. ``vk_id`` names ``vk`` (see :func:`vk_id`): the key is
        sent and prepared once per worker process, later requests carry only its id."""
        vid = vk_id or key_id(vk)
        signals = [str(x) for x in public]
        # If the Node process was replaced since, the worker answers "unknown_vk" and the key
        # goes again (request() restarts the process and forgets the sent keys).
        known = vid in self._vks
        reply = self.request(
            "verify", vk_id=vid, **({} if known else {"vk": vk}), proof=proof, publicSignals=signals
        )
        if reply.get("unknown_vk"):
            reply = self.request("verify", vk_id=vid, vk=vk, proof=proof, publicSignals=signals)
        if reply.get("vk_ready"):
            with self._lock:
                self._vks.add(vid)
        if not reply.get("ok"):
            raise ProofError(f"verification failed: {reply.get('error', '')[:500]}")
        if reply.get("reason") == "B not in G2":
            # The Python verifier refuses this point at the same step: same answer, same error.
            raise ProofError(SUBGROUP_ERROR)
        valid = reply.get("valid")
        if not isinstance(valid, bool):
            with self._lock:
                raise self._fault(f"a verdict that is not true/false: {valid!r}")
        return valid

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._pid == os.getpid():
                try:
                    assert self._proc.stdin is not None
                    self._proc.stdin.close()
                    self._proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    self._proc.kill()
                self._proc = None


def key_id(vk: dict[str, Any]) -> str:
    """A verification key's name for the worker: SHA-256 of its sorted JSON."""
    return hashlib.sha256(
        json.dumps(vk, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _jsonable(v: Any) -> Any:
    """Circuit inputs: big integers go as decimal strings (JSON numbers lose precision)."""
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return str(v)
    return v


_shared: SnarkjsWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> SnarkjsWorker:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SnarkjsWorker()
            atexit.register(_shared.close)
        return _shared
