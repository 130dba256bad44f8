"""State snapshots and pruning at the storage level: built from a store, checked against a
certified header, installed into an empty store; pruned stores keep what they must.

The chains here are synthetic (state writes without a runtime), certified by real BLS
signatures of a 4-validator genesis, so every check a joining node makes applies.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from accord.base import encoding, merkle
from accord.base.crypto import bls
from accord.base.types import ZERO_HASH, Block, Header
from accord.benches.light import certify
from accord.consensus import verify_certificate
from accord.storage import Store
from accord.storage import snapshot as snap
from accord.storage.store import Pruned
from accord.storage.verify import check_head, verify_store

from .support.chains import GENESIS, KEYS, SECRETS, make_chain


def _verify_cert(cert: object) -> None:
    verify_certificate(KEYS, GENESIS.chain_id, cert, GENESIS.quorum)  # type: ignore[arg-type]


def _served(store: Store, out: Path) -> tuple[snap.Manifest, dict[int, bytes]]:
    m = snap.build(store, out)
    return m, {i: snap.read_chunk(out, m.height, i) or b"" for i in range(len(m.cells))}


def test_snapshot_roundtrip_installs_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snap, "MAX_CHUNK_ENTRIES", 64)  # many cells, several split levels
    rng = random.Random(1)
    with Store(tmp_path / "src", sync=False) as src:
        make_chain(src, 6, 3000, rng)
        m, chunks = _served(src, tmp_path / "snaps")
        assert len(m.cells) > 16 and m.height == 6 and m.entries == len(list(src.iter_state()))
        raw = snap.read_manifest(tmp_path / "snaps", 6)
        assert raw is not None
        got = snap.Manifest.decode(raw)
        snap.verify_manifest(got, _verify_cert)
        with Store(tmp_path / "dst", sync=False) as dst:
            snap.install(dst, got, lambda i, cell: snap.verify_chunk(cell, chunks[i], got.height))
            assert dst.head() == src.head() and dst.state_root() == src.state_root()
            assert dict(dst.iter_state()) == dict(src.iter_state())
            assert dst.base() == 6 and dst.get_block(5) is None
            check_head(dst, _verify_cert)
            report = verify_store(dst, _verify_cert)
            assert report.ok, report.problems
            assert report.blocks == 1 and report.state_entries == m.entries
            key = b"k/17"
            value, proof = dst.prove_state(key)
            merkle.verify_state_proof(dst.state_root(), key, value, proof)


def test_a_one_entry_cell_promoted_to_the_root(tmp_path: Path) -> None:
    """The tree's promotion rule holds across the cut: a state of one entry is one leaf."""
    with Store(tmp_path / "src", sync=False) as src:
        w = {b"only": b"x"}
        u = src.compute_state_update(w)
        h0 = Header(GENESIS.chain_id, 0, 0, ZERO_HASH, merkle.EMPTY_TX_ROOT, u.root, 0, 0, 0)
        src.commit_block(Block(h0, ()), None, [], w, u)
        w = {b"only": b"y"}
        u = src.compute_state_update(w)
        h1 = Header(GENESIS.chain_id, 1, 0, h0.hash, merkle.EMPTY_TX_ROOT, u.root, 0, 0, 1)
        src.commit_block(Block(h1, ()), certify(h1, SECRETS, [0, 1, 3]), [], w, u)
        m, chunks = _served(src, tmp_path / "snaps")
        with Store(tmp_path / "dst", sync=False) as dst:
            snap.install(dst, m, lambda i, cell: snap.verify_chunk(cell, chunks[i], 1))
            assert dst.get_state(b"only") == b"y"
            assert verify_store(dst, _verify_cert).ok


def _tampered(raw: bytes, how: str) -> bytes:
    items = encoding.decode(raw)
    assert isinstance(items, list)
    if how == "value":
        items[3] = [items[3][0], items[3][1] + b"!"]  # type: ignore[index]
    elif how == "truncated":
        items = items[:-1]
    elif how == "swapped":
        items[1], items[2] = items[2], items[1]
    elif how == "foreign":
        items[0] = [b"not-in-this-cell-%d" % 7, b"v"]
    elif how == "bytes":
        return raw[: len(raw) // 2]
    return encoding.encode(items)


@pytest.mark.parametrize("how", ["value", "truncated", "swapped", "foreign", "bytes"])
def test_a_tampered_chunk_is_refused(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snap, "MAX_CHUNK_ENTRIES", 64)
    with Store(tmp_path / "src", sync=False) as src:
        make_chain(src, 2, 1000, random.Random(2))
        m, chunks = _served(src, tmp_path / "snaps")
    with pytest.raises(snap.SnapshotInvalid):
        snap.verify_chunk(m.cells[5], _tampered(chunks[5], how), m.height)
    with pytest.raises(snap.SnapshotInvalid):  # a genuine chunk of another cell
        snap.verify_chunk(m.cells[5], chunks[6], m.height)


def test_a_manifest_that_does_not_match_its_certified_root_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "src", sync=False) as src:
        make_chain(src, 2, 300, random.Random(3))
        m, _ = _served(src, tmp_path / "snaps")
    cells = list(m.cells)
    c = cells[0]
    lies = [
        # a cell's hash changed (as a liar would to pass off other entries)
        snap.Manifest(
            m.block,
            m.certificate,
            m.receipts,
            (snap.Cell(c.depth, c.prefix, c.count, bytes(32)), *cells[1:]),
        ),
        # a cell left out (its entries never fetched)
        snap.Manifest(m.block, m.certificate, m.receipts, tuple(cells[:-1] or [])),
        # a genuine certificate, another block's header (wrong root)
        snap.Manifest(
            Block(
                Header(
                    GENESIS.chain_id,
                    m.height,
                    0,
                    ZERO_HASH,
                    merkle.EMPTY_TX_ROOT,
                    bytes(range(32)),
                    0,
                    0,
                    0,
                ),
                (),
            ),
            m.certificate,
            m.receipts,
            m.cells,
        ),
    ]
    for lie in lies:
        with pytest.raises(snap.SnapshotInvalid):
            snap.verify_manifest(snap.Manifest.decode(lie.encode()), _verify_cert)
    forged = certify(
        m.block.header, [bls.demo_secret(f"outsider-{i}") for i in range(4)], [0, 1, 2]
    )
    with pytest.raises(snap.SnapshotInvalid):
        snap.verify_manifest(snap.Manifest(m.block, forged, m.receipts, m.cells), _verify_cert)
    snap.verify_manifest(m, _verify_cert)  # the genuine one passes


def test_an_interrupted_install_leaves_nothing_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snap, "MAX_CHUNK_ENTRIES", 64)
    with Store(tmp_path / "src", sync=False) as src:
        make_chain(src, 2, 500, random.Random(4))
        m, chunks = _served(src, tmp_path / "snaps")
    with Store(tmp_path / "dst", sync=False) as dst:
        inst = snap.Installer(dst, m)
        inst.begin()
        inst.add(0, snap.verify_chunk(m.cells[0], chunks[0], m.height))
        assert dst.installing() == m.height and dst.head() is None
        with pytest.raises(snap.SnapshotInvalid):
            inst.finish()  # chunks missing
        inst.abort()
        assert dst.installing() is None and dst.head() is None and not list(dst.iter_state())


def test_pruning_removes_old_blocks_and_tree_records(tmp_path: Path) -> None:
    rng = random.Random(5)
    with Store(tmp_path / "p", sync=False) as store:
        make_chain(store, 40, 2000, rng, churn=50)
        nodes_before = store.stats()["nodes"]
        state = dict(store.iter_state())
        root = store.state_root()
        assert store.prune(10) == 31
        assert store.base() == 31
        assert store.get_block(30) is None and store.get_certificate(30) is None
        assert store.get_block(31) is not None
        with pytest.raises(Pruned, match="height 30 is not kept"):
            store.require_height(30)
        old_root = store.get_header(31)
        assert old_root is not None
        # every kept height's state is still whole and provable; pruned ones say so
        for h in range(31, 41):
            header = store.get_header(h)
            assert header is not None
            value, proof = store.prove_state(b"k/3", header.state_root)
            merkle.verify_state_proof(header.state_root, b"k/3", value, proof)
        with pytest.raises(Exception, match="pruned"):
            store.prove_state(b"k/3", make_root_of(store, tmp_path, rng))
        nodes_after = store.stats()["nodes"]
        assert nodes_after < nodes_before
        # exactly the records reachable from kept roots remain
        assert nodes_after == _reachable(store, range(31, 41))
        assert dict(store.iter_state()) == state and store.state_root() == root
        report = verify_store(store, _verify_cert)
        assert report.ok, report.problems
        assert report.blocks == 10
        check_head(store, _verify_cert)


def make_root_of(store: Store, tmp_path: Path, rng: random.Random) -> bytes:
    """A root this store once committed but pruned (height 5's, read before it went)."""
    with Store(tmp_path / "again", sync=False) as again:
        make_chain(again, 40, 2000, random.Random(5), churn=50)
        header = again.get_header(5)
        assert header is not None
        return header.state_root


def _reachable(store: Store, heights: range) -> int:
    from accord.storage import tree

    seen: set[bytes] = set()
    for h in heights:
        header = store.get_header(h)
        assert header is not None

        def read(txn: object, root: bytes = header.state_root) -> None:
            nodes = store._db["nodes"]
            stack = [(root, store._root_version_in(txn, root), 0, 0)]
            while stack:
                hh, v, d, p = stack.pop()
                key = tree.node_key(v, d, p, hh)
                if key in seen:
                    continue
                seen.add(key)
                rec = txn.get(key, db=nodes)  # type: ignore[attr-defined]
                assert rec is not None
                if rec[0] == 3:
                    for nib, ch, cv in tree.node_children(rec):
                        stack.append(
                            (ch, int.from_bytes(cv, "big"), d + 1, p | nib << (252 - 4 * d))
                        )

        store._read(read)
    return len(seen)


def test_pruned_space_is_reused(tmp_path: Path) -> None:
    """With pruning, the file stops growing: freed pages take the new records."""
    rng = random.Random(6)
    with Store(tmp_path / "q", sync=False) as store:
        make_chain(store, 30, 3000, rng, churn=200)
        store.prune(5)
        pages = store._env.info()["last_pgno"]
        keys = [b"k/%d" % i for i in range(3000)]
        head = store.head()
        assert head is not None
        parent, start = head[1], head[0] + 1
        for h in range(start, start + 30):
            writes: dict[bytes, bytes | None] = {
                rng.choice(keys): b"w%d" % rng.randrange(10**9) for _ in range(200)
            }
            update = store.compute_state_update(writes)
            header = Header(
                GENESIS.chain_id, h, 0, parent, merkle.EMPTY_TX_ROOT, update.root, 0, 0, 1000 * h
            )
            store.commit_block(
                Block(header, ()), certify(header, SECRETS, [0, 1, 2]), [], writes, update
            )
            parent = header.hash
            store.prune(5)
        grown = store._env.info()["last_pgno"] - pages
        assert grown < pages // 4, (pages, grown)
