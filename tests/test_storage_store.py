"""The LMDB store: commits, refusals that write nothing, reopening, map growth, threads."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from accord.base import merkle
from accord.base.errors import StorageError
from accord.base.types import Block, Certificate, Receipt
from accord.storage import Store

from .support.merkle_ref import ref_root
from .support.store import commit, make_block, snapshot_all


def test_commit_read_and_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=False)
    assert store.head() is None and store.state_root() == merkle.EMPTY
    b0 = commit(store, {b"a": b"1", b"b": b"2"})
    b1 = commit(store, {b"a": None, b"c": b"3"}, ntx=3)
    roots = [b0.header.state_root, b1.header.state_root]
    assert store.head() == (1, b1.hash)
    assert store.state_root() == roots[1] == ref_root({b"b": b"2", b"c": b"3"})
    assert store.get_block(1) == b1 and store.get_block_by_hash(b0.hash) == b0
    assert store.get_header(1) == b1.header and store.get_block(2) is None
    assert store.get_certificate(1) is not None and store.get_certificate(1).block_hash == b1.hash  # type: ignore[union-attr]
    receipts = store.get_receipts(1)
    assert [r.tx_hash for r in receipts] == [t.hash for t in b1.txs] and receipts[2].result == 2
    assert store.get_tx_location(b1.txs[1].hash) == (1, 1)
    assert store.get_tx_location(b"\x00" * 32) is None
    assert store.get_state_many([b"a", b"b", b"c"]) == {b"a": None, b"b": b"2", b"c": b"3"}
    store.close()

    store = Store(tmp_path, sync=False)
    assert store.head() == (1, b1.hash)
    assert snapshot_all(store) == {b"b": b"2", b"c": b"3"}
    # old roots stay provable, with the values they had
    v, p = store.prove_state(b"a", roots[0])
    assert v == b"1"
    merkle.verify_state_proof(roots[0], b"a", b"1", p)
    v, p = store.prove_state(b"a")
    assert v is None
    merkle.verify_state_proof(roots[1], b"a", None, p)
    with store.snapshot() as snap:
        assert snap.state_root == roots[1] and snap.get_state(b"b") == b"2"
        assert snap.head() == (1, b1.hash)
        assert dict(snap.iter_state(b"c")) == {b"c": b"3"}
        v, p = snap.prove_state(b"c")
        merkle.verify_state_proof(roots[1], b"c", v, p)
    with pytest.raises(StorageError):
        snap.get_state(b"b")
    store.close()


def _everything(store: Store) -> tuple[object, ...]:
    return (store.head(), store.state_root(), snapshot_all(store), store.stats())


def test_refused_commits_write_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=False)
    commit(store, {b"a": b"1"})
    commit(store, {b"b": b"2"}, ntx=2)
    before = _everything(store)
    block, cert, receipts, update = make_block(store, {b"c": b"3"}, ntx=2, nonce0=10)
    h = block.header

    def with_header(**changes: object) -> Block:
        return Block(replace(h, **changes), block.txs)  # type: ignore[arg-type]

    other = store.compute_state_update({b"c": b"4"})
    refused = [
        (with_header(height=h.height + 1), None, receipts, {b"c": b"3"}, update),
        (with_header(height=h.height - 1), None, receipts, {b"c": b"3"}, update),
        (with_header(parent_hash=b"\x01" * 32), None, receipts, {b"c": b"3"}, update),
        (with_header(state_root=b"\x01" * 32), None, receipts, {b"c": b"3"}, update),
        (block, cert, receipts, {b"c": b"4"}, update),  # writes differ from the update
        (block, cert, receipts, {b"c": b"4"}, other),  # root differs from the header
        (block, cert, receipts[:1], {b"c": b"3"}, update),  # receipts missing
        (block, cert, receipts[::-1], {b"c": b"3"}, update),  # receipts out of order
        (with_header(tx_root=b"\x02" * 32), None, receipts, {b"c": b"3"}, update),
        (
            block,
            Certificate(h.height, 0, 2, b"\x03" * 32, b"", b""),
            receipts,
            {b"c": b"3"},
            update,
        ),
    ]
    # a transaction committed before
    old_tx_block = Block(block.header, (store.get_block(1).txs[0], block.txs[1]))  # type: ignore[union-attr]
    old_receipts = [Receipt(t.hash, True, 1) for t in old_tx_block.txs]
    old_hdr = replace(
        h,
        tx_root=merkle.merkle_root(
            [
                merkle.tx_leaf(t.hash, r.hash)
                for t, r in zip(old_tx_block.txs, old_receipts, strict=True)
            ]
        ),
    )
    refused.append((Block(old_hdr, old_tx_block.txs), None, old_receipts, {b"c": b"3"}, update))
    for args in refused:
        with pytest.raises(StorageError):
            store.commit_block(*args)  # type: ignore[arg-type]
        assert _everything(store) == before
    # a stale update (computed before another block) is refused too
    store.commit_block(block, cert, receipts, {b"c": b"3"}, update)
    stale = make_block(store, {b"d": b"4"})
    commit(store, {b"e": b"5"})
    before = _everything(store)
    with pytest.raises(StorageError):
        store.commit_block(stale[0], None, [], {b"d": b"4"}, stale[3])
    assert _everything(store) == before
    store.close()


def test_first_block_rules(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=False)
    block, cert, receipts, update = make_block(store, {b"a": b"1"})
    bad = Block(replace(block.header, height=1))
    with pytest.raises(StorageError):
        store.commit_block(bad, None, [], {b"a": b"1"}, update)
    assert store.head() is None and store.get_state(b"a") is None
    store.commit_block(block, None, [], {b"a": b"1"}, update)
    assert store.get_certificate(0) is None
    store.set_certificate(0, cert)
    assert store.get_certificate(0) == cert
    with pytest.raises(StorageError):
        store.set_certificate(0, Certificate(0, 0, 2, b"\x01" * 32, b"", b""))
    with pytest.raises(StorageError):
        store.set_certificate(5, cert)
    with pytest.raises(StorageError):
        store.compute_state_update({b"": b"x"})
    with pytest.raises(StorageError):
        store.compute_state_update({b"k": "str"})  # type: ignore[dict-item]
    store.close()


def test_safety_and_meta(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=True)
    store.put_safety(b"lock", b"round 3")
    store.put_meta(b"genesis_hash", b"g" * 32)
    with pytest.raises(StorageError):
        store.put_meta(b"accord/head", b"x")
    store.close()
    store = Store(tmp_path)
    assert store.get_safety(b"lock") == b"round 3" and store.get_safety(b"none") is None
    assert store.get_meta(b"genesis_hash") == b"g" * 32
    store.close()
    with pytest.raises(StorageError):
        store.put_safety(b"x", b"y")


def test_map_grows(tmp_path: Path) -> None:
    store = Store(tmp_path, map_size=128 * 1024, sync=False)
    start = store.map_size
    state: dict[bytes, bytes] = {}
    for b in range(6):
        writes: dict[bytes, bytes | None] = {
            b"key %d %d" % (b, i): bytes(200) + b"%d" % i for i in range(400)
        }
        state.update(writes)  # type: ignore[arg-type]
        commit(store, writes)
    assert store.map_size > start
    assert store.head()[0] == 5  # type: ignore[index]
    assert store.state_root() == ref_root(state)
    assert snapshot_all(store) == state
    # safety writes grow the map as well
    store.put_safety(b"big", bytes(store.map_size))
    assert store.get_safety(b"big") == bytes(len(store.get_safety(b"big") or b""))
    store.close()


def test_iter_state_chunks_and_prefix(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=False)
    writes: dict[bytes, bytes | None] = {b"p/%05d" % i: b"%d" % i for i in range(2500)}
    writes.update({b"q/%d" % i: b"x" for i in range(10)})
    commit(store, writes)
    items = list(store.iter_state(b"p/"))
    assert [k for k, _ in items] == sorted(k for k in writes if k.startswith(b"p/"))
    assert len(list(store.iter_state())) == 2510
    assert list(store.iter_state(b"z")) == []
    store.close()


def test_reads_from_other_threads_while_writing(tmp_path: Path) -> None:
    store = Store(tmp_path, map_size=256 * 1024, sync=False)
    commit(store, {b"counter": b"0"})
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                with store.snapshot() as snap:
                    head = snap.head()
                    assert head is not None
                    # the state in one snapshot is the state of its head block
                    assert snap.get_state(b"counter") == b"%d" % head[0]
                    seen.append(head[0])
                h = store.head()
                assert h is not None and store.get_block(h[0]) is not None
                # Pause like a real reader (an API request): three threads spinning on the GIL
                # would starve the writer of the interpreter, which tests nothing of ours.
                time.sleep(0.0005)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(1, 60):
        writes: dict[bytes, bytes | None] = {b"counter": b"%d" % i}
        writes.update(
            {b"fill %d %d" % (i, j): bytes(100) for j in range(50)}
        )  # forces map growth too
        commit(store, writes)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert seen and max(seen) > 0
    assert store.map_size > 256 * 1024
    store.close()


def test_proofs_against_unknown_root_and_deep_history(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=False)
    states: list[tuple[bytes, dict[bytes, bytes]]] = []
    state: dict[bytes, bytes] = {}
    for h in range(8):
        writes: dict[bytes, bytes | None] = {
            b"k%d" % i: b"%d/%d" % (h, i) for i in range(h, h + 30)
        }
        writes.update({b"k%d" % i: None for i in range(h)})  # deletes move leaves up the tree
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        commit(store, writes)
        states.append((store.state_root(), dict(state)))
    for root, snap in states:
        assert root == ref_root(snap)
        for k in [b"k%d" % i for i in range(40)]:
            v, p = store.prove_state(k, root)
            assert v == snap.get(k)
            merkle.verify_state_proof(root, k, v, p)
    with pytest.raises(StorageError):
        store.prove_state(b"k1", b"\x05" * 32)
    store.close()


def test_older_schema_is_refused(tmp_path: Path) -> None:
    """A folder written with the binary state tree (schema 2) is refused with a clear message,
    and left as it was."""
    import struct

    import lmdb

    from accord.storage.store import SCHEMA_VERSION

    store = Store(tmp_path, sync=False)
    commit(store, {b"a": b"1"})
    store.close()
    env = lmdb.open(str(tmp_path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        assert txn.get(b"accord/schema", db=meta) == struct.pack(">Q", SCHEMA_VERSION)
        txn.put(b"accord/schema", struct.pack(">Q", 2), db=meta)
    env.close()
    with pytest.raises(StorageError, match=f"schema 2, this version reads schema {SCHEMA_VERSION}"):
        Store(tmp_path, sync=False)
    env = lmdb.open(str(tmp_path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin() as txn:
        assert txn.get(b"accord/schema", db=meta) == struct.pack(">Q", 2)
    env.close()
