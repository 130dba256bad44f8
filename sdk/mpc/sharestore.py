"""Stored shares and grants of one MPC server, persisted in LMDB.

A server that restarts (crash, upgrade, reboot) must come back with the share pairs it was
given: no other server holds them (each holds a different pair), and the owners may be gone.
Every store, delete and grant is written here, synced, before the server answers, and the
server loads all of it at start. The arrays also stay in memory (programs read them), so the
server's quotas bound both.

Named databases: ``inputs`` (qualified name -> record) and ``grants`` (qualified name ->
canonical list of ``[program, receiver key]``). A record is ``4-byte header length ||
canonical {owner, frac, shape} || share a || share b`` (uint64, little-endian as in memory).
A record that does not parse is logged, counted and skipped, never fatal: one damaged entry
must not keep the server (and every other owner's data) down.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lmdb
import numpy as np

from accord.base import encoding
from accord.base.errors import AccordError, MpcError
from accord.mpc.ring import Ring

log = logging.getLogger("accord.mpc.sharestore")

Grant = tuple[str, bytes]  # (program, receiver key)


@dataclass
class StoredInput:
    name: str
    owner: bytes
    frac: int
    a: Ring
    b: Ring


class ShareStore:
    def __init__(self, path: str | Path, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        # Copy-on-write needs room for old and new pages of a replaced input until the commit,
        # so the map is twice the quota (a sparse file: unused space costs nothing).
        self._env = lmdb.open(
            str(self.path),
            map_size=2 * max_bytes + (256 << 20),
            max_dbs=4,
            sync=True,
            metasync=True,
            readahead=False,
        )
        self._inputs = self._env.open_db(b"inputs")
        self._grants = self._env.open_db(b"grants")
        self._lock = threading.Lock()
        self.damaged = 0  # records skipped at load

    def close(self) -> None:
        self._env.close()

    def put_input(self, item: StoredInput) -> None:
        head = encoding.encode(
            {"owner": item.owner, "frac": item.frac, "shape": list(item.a.shape)}
        )
        rec = b"".join(
            (
                struct.pack(">I", len(head)),
                head,
                np.ascontiguousarray(item.a).tobytes(),
                np.ascontiguousarray(item.b).tobytes(),
            )
        )
        self._write(lambda txn: txn.put(item.name.encode(), rec, db=self._inputs))

    def delete_input(self, name: str) -> None:
        def go(txn: lmdb.Transaction) -> None:
            txn.delete(name.encode(), db=self._inputs)
            txn.delete(name.encode(), db=self._grants)

        self._write(go)

    def put_grants(self, name: str, grants: set[Grant]) -> None:
        if not grants:
            self._write(lambda txn: txn.delete(name.encode(), db=self._grants))
            return
        rec = encoding.encode([[p, r] for p, r in sorted(grants)])
        self._write(lambda txn: txn.put(name.encode(), rec, db=self._grants))

    def _write(self, fn: Callable[[lmdb.Transaction], object]) -> None:
        with self._lock:
            try:
                with self._env.begin(write=True) as txn:
                    fn(txn)
            except lmdb.MapFullError:
                raise MpcError("the server's share store is full") from None
            except lmdb.Error as e:
                raise MpcError(f"the server's share store failed: {e}") from None

    def load(self) -> tuple[list[StoredInput], dict[str, set[Grant]]]:
        inputs: list[StoredInput] = []
        grants: dict[str, set[Grant]] = {}
        with self._env.begin() as txn:
            for k, v in txn.cursor(db=self._inputs):
                try:
                    inputs.append(_parse_input(bytes(k).decode(), bytes(v)))
                except (AccordError, UnicodeDecodeError, ValueError) as e:
                    self.damaged += 1
                    log.warning("share store %s: skipping a damaged input record: %s", self.path, e)
            for k, v in txn.cursor(db=self._grants):
                try:
                    grants[bytes(k).decode()] = _parse_grants(bytes(v))
                except (AccordError, UnicodeDecodeError, ValueError) as e:
                    self.damaged += 1
                    log.warning("share store %s: skipping a damaged grant record: %s", self.path, e)
        return inputs, grants


def _parse_input(name: str, rec: bytes) -> StoredInput:
    if len(rec) < 4:
        raise MpcError("short record")
    (n,) = struct.unpack(">I", rec[:4])
    head = encoding.decode(rec[4 : 4 + n])
    if not isinstance(head, dict):
        raise MpcError("record header is not a map")
    owner, frac, shape = head.get("owner"), head.get("frac"), head.get("shape")
    if not (
        isinstance(owner, bytes)
        and len(owner) == 32
        and type(frac) is int
        and isinstance(shape, list)
        and all(type(d) is int and d >= 0 for d in shape)
    ):
        raise MpcError("record header fields are malformed")
    count = math.prod(shape)
    body = rec[4 + n :]
    if len(body) != 16 * count:
        raise MpcError(f"record holds {len(body)} bytes for {count} share pairs")
    a = np.frombuffer(body, dtype=np.uint64, count=count).reshape(shape).copy()
    b = np.frombuffer(body, dtype=np.uint64, count=count, offset=8 * count).reshape(shape).copy()
    return StoredInput(name, owner, frac, a, b)


def _parse_grants(rec: bytes) -> set[Grant]:
    items = encoding.decode(rec)
    if not isinstance(items, list):
        raise MpcError("grant record is not a list")
    out: set[Grant] = set()
    for it in items:
        if not (
            isinstance(it, list)
            and len(it) == 2
            and isinstance(it[0], str)
            and isinstance(it[1], bytes)
            and len(it[1]) == 32
        ):
            raise MpcError("malformed grant")
        out.add((it[0], it[1]))
    return out
