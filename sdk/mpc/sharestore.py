"""Stored shares and grants of one MPC server, persisted in LMDB.

A server that restarts (crash, upgrade, reboot) must come back with the share pairs it was
given: no other server holds them (each holds a different pair), and the owners may be gone.
Every store, delete and grant is written here, synced, before the server answers, and the
server loads all of it at start. The arrays also stay in memory (programs read them), so the
server's quotas bound both.

Named databases: ``inputs`` (qualified name -> record) and ``grants`` (qualified name ->
canonical list of ``[program, code hash, receiver key, params hash, [[as, qualified name,
store id], ...]]``, with a sixth item ``[[param, lo, hi], ...]`` for a grant that bounds
params by ranges). A record is ``4-byte header length || canonical {owner, frac, shape, id} || share a
|| share b`` (uint64, little-endian as in memory), ``id`` the store id (:func:`store_id`),
and ``salts``/``commit`` what this server needs to derive it again: at load a record whose
shares no longer give its id (a damaged disk) is skipped like any damaged record. Records
written before ids were hash-bound keep their 16-byte random id (or :data:`LEGACY_ID`, from
before store ids existed) and are not re-checked.
A record that does not parse is logged, counted and skipped, never fatal: one damaged entry
must not keep the server (and every other owner's data) down. Grants of the earlier
``[program, receiver]`` form bound no computation: they are dropped at load (counted in
``obsolete_grants``, logged), and their owners grant again; so are grants of the
``[program, receiver, params hash, inputs]`` form, which named the program but not its code.
"""

from __future__ import annotations

import hashlib
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

STORE_ID_BYTES = 32
SALT_BYTES = 32
RANDOM_ID_BYTES = 16  # ids a client drew at random, before ids were bound to the shares
LEGACY_ID = bytes(STORE_ID_BYTES)  # inputs stored before store ids existed

GrantInput = tuple[str, str, bytes]  # (name the program sees, qualified name, store id)
ParamRange = tuple[str, int, int]  # (param name, lowest, highest allowed value)


def component_commitment(j: int, frac: int, salt: bytes, word: Ring) -> bytes:
    """A hiding, binding commitment to component ``j`` of a replicated sharing.

    Component ``j`` is held by servers ``j`` and ``j - 1``; the third server sees only this
    hash, and the 32-byte salt (known to the owner and the two holders) keeps it from
    testing guesses of the component (a one-element share word has only 64 bits).
    """
    head = encoding.encode(["accord/mpc/share-component", j, list(word.shape), frac, salt])
    h = hashlib.sha256(head)
    h.update(np.ascontiguousarray(word, dtype="<u8").tobytes())
    return h.digest()


def store_id(commitments: list[bytes]) -> bytes:
    """The version of a stored input: the hash of its three component commitments.

    Each server derives it from the two components it holds and the commitment to the third
    the owner sent; the servers compare it before every run. Equal ids on all three mean
    every component is the same on both of its holders (each checked it against the same
    commitment), i.e. the three pairs are shares of one value: a store that reached some
    servers only, a retry that re-split the value, or an owner's inconsistent pairs all
    give ids that differ, and the run is refused instead of computing on a mix.
    """
    return encoding.sha256(encoding.encode(["accord/mpc/store-id", list(commitments)]))


def derive_store_id(
    i: int, frac: int, a: Ring, b: Ring, salts: tuple[bytes, bytes], commit: bytes
) -> bytes:
    """Server ``i``'s store id for its pair ``(a, b) = (x_i, x_{i+1})``."""
    comps = [b"", b"", b""]
    comps[i] = component_commitment(i, frac, salts[0], a)
    comps[(i + 1) % 3] = component_commitment((i + 1) % 3, frac, salts[1], b)
    comps[(i + 2) % 3] = commit
    return store_id(comps)


@dataclass(frozen=True)
class Grant:
    """One computation an owner allows: this program (its name and the SHA-256 of the code
    the server ran under that name when the grant was made), run by this receiver, with
    exactly these public params (their canonical hash) on exactly these inputs, each at the
    version (store id) it had when the grant was made. ``inputs`` is sorted by the program's
    name.

    ``ranges`` (sorted by name) lets the receiver choose some integer params within bounds
    the owner set (iterations, sizes): those params are left out of ``params_hash``, which
    then binds the others exactly, and each must be present in the run and lie in its
    range. Without ranges every param is bound exactly."""

    program: str
    code: bytes
    receiver: bytes
    params_hash: bytes
    inputs: tuple[GrantInput, ...]
    ranges: tuple[ParamRange, ...] = ()

    def same_computation(self, other: Grant) -> bool:
        """Equal but for the code and the inputs' versions: what ``revoke`` matches."""
        return (
            self.program == other.program
            and self.receiver == other.receiver
            and self.params_hash == other.params_hash
            and self.ranges == other.ranges
            and [i[:2] for i in self.inputs] == [i[:2] for i in other.inputs]
        )

    def out_of_range(self, params: dict[str, object]) -> str | None:
        """Why ``params`` break this grant's ranges (None if every ranged param is in range).
        The caller has checked the other params against ``params_hash``."""
        for name, lo, hi in self.ranges:
            if name not in params:
                return f"param {name!r} is missing (the grant bounds it to [{lo}, {hi}])"
            v = params[name]
            if type(v) is not int:
                return f"param {name!r} must be an integer in [{lo}, {hi}]"
            if not lo <= v <= hi:
                return f"param {name!r} = {v} is outside the granted range [{lo}, {hi}]"
        return None


@dataclass
class StoredInput:
    name: str
    owner: bytes
    frac: int
    a: Ring
    b: Ring
    store_id: bytes = LEGACY_ID
    # (salt of x_i, salt of x_{i+1}, commitment to the third component) and the index of the
    # server that holds the pair: what re-derives ``store_id`` (None: an unbound, older id)
    binding: tuple[bytes, bytes, bytes] | None = None
    index: int = 0


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
        self.obsolete_grants = 0  # grants of the unbound (program, receiver) form, dropped

    def close(self) -> None:
        self._env.close()

    def put_input(self, item: StoredInput) -> None:
        fields: dict[str, encoding.Value] = {
            "owner": item.owner,
            "frac": item.frac,
            "shape": list(item.a.shape),
            "id": item.store_id,
        }
        if item.binding is not None:
            fields["salts"] = [item.binding[0], item.binding[1]]
            fields["commit"] = item.binding[2]
            fields["index"] = item.index
        head = encoding.encode(fields)
        rec = b"".join(
            (
                struct.pack(">I", len(head)),
                head,
                np.ascontiguousarray(item.a).tobytes(),
                np.ascontiguousarray(item.b).tobytes(),
            )
        )

        def go(txn: lmdb.Transaction) -> None:
            txn.put(item.name.encode(), rec, db=self._inputs)
            # a new version starts without grants: they bound the content they were made for
            txn.delete(item.name.encode(), db=self._grants)

        self._write(go)

    def delete_input(self, name: str) -> None:
        def go(txn: lmdb.Transaction) -> None:
            txn.delete(name.encode(), db=self._inputs)
            txn.delete(name.encode(), db=self._grants)

        self._write(go)

    def put_grants(self, name: str, grants: set[Grant]) -> None:
        if not grants:
            self._write(lambda txn: txn.delete(name.encode(), db=self._grants))
            return
        rec = encoding.encode(
            sorted(
                [g.program, g.code, g.receiver, g.params_hash, [list(i) for i in g.inputs]]
                + ([[list(r) for r in g.ranges]] if g.ranges else [])
                for g in grants
            )
        )
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
                    kept, dropped = _parse_grants(bytes(v))
                    if kept:
                        grants[bytes(k).decode()] = kept
                    if dropped:
                        self.obsolete_grants += dropped
                        log.warning(
                            "share store %s: dropped %d grants that bind no computation "
                            "(made before grants named code, params and inputs): owners "
                            "grant again",
                            self.path,
                            dropped,
                        )
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
    sid = head.get("id", LEGACY_ID)
    if not (
        isinstance(sid, bytes)
        and len(sid) in (STORE_ID_BYTES, RANDOM_ID_BYTES)
        and isinstance(owner, bytes)
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
    if "salts" not in head and "commit" not in head:
        return StoredInput(name, owner, frac, a, b, sid)
    salts, commit, index = head.get("salts"), head.get("commit"), head.get("index")
    if not (
        isinstance(salts, list)
        and len(salts) == 2
        and all(isinstance(x, bytes) and len(x) == SALT_BYTES for x in salts)
        and isinstance(commit, bytes)
        and len(commit) == 32
        and index in (0, 1, 2)
        and type(index) is int
    ):
        raise MpcError("record binding fields are malformed")
    assert isinstance(index, int)
    if derive_store_id(index, frac, a, b, (salts[0], salts[1]), commit) != sid:
        raise MpcError("record shares do not give its store id (damaged)")
    return StoredInput(name, owner, frac, a, b, sid, (salts[0], salts[1], commit), index)


def _parse_grants(rec: bytes) -> tuple[set[Grant], int]:
    """The bound grants of one record, and how many obsolete (unbound) ones it held."""
    items = encoding.decode(rec)
    if not isinstance(items, list):
        raise MpcError("grant record is not a list")
    out: set[Grant] = set()
    obsolete = 0
    for it in items:
        if isinstance(it, list) and len(it) in (2, 4):
            # (program, receiver): any params, any co-inputs; (program, receiver, params,
            # inputs): any code under that name. Neither is honoured.
            obsolete += 1
            continue
        if not (
            isinstance(it, list)
            and len(it) in (5, 6)
            and isinstance(it[0], str)
            and all(isinstance(it[k], bytes) and len(it[k]) == 32 for k in (1, 2, 3))
            and isinstance(it[4], list)
            and all(
                isinstance(i, list)
                and len(i) == 3
                and isinstance(i[0], str)
                and isinstance(i[1], str)
                and isinstance(i[2], bytes)
                and len(i[2]) in (STORE_ID_BYTES, RANDOM_ID_BYTES)
                for i in it[4]
            )
        ):
            raise MpcError("malformed grant")
        ranges: tuple[ParamRange, ...] = ()
        if len(it) == 6:
            if not (
                isinstance(it[5], list)
                and it[5]
                and all(
                    isinstance(r, list)
                    and len(r) == 3
                    and isinstance(r[0], str)
                    and type(r[1]) is int
                    and type(r[2]) is int
                    and r[1] <= r[2]
                    for r in it[5]
                )
            ):
                raise MpcError("malformed grant ranges")
            ranges = tuple(sorted((r[0], r[1], r[2]) for r in it[5]))
        inputs = tuple((i[0], i[1], i[2]) for i in it[4])
        out.add(Grant(it[0], it[1], it[2], it[3], inputs, ranges))
    return out, obsolete
