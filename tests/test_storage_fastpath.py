"""Fast paths of the state tree and the block commit against their references.

The tree's one-path walk (``_Updater.update_one``) must give the root of the naive reference
and store exactly the records a from-scratch build of the same state stores (positions
included: a promoted leaf must land at its new position). Commit's batched writes must keep
refusing repeated transactions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base import merkle
from accord.base.errors import StorageError
from accord.base.merkle import EMPTY, verify_state_proof
from accord.base.types import Block, Receipt
from accord.storage import Store, tree

from .support.merkle_ref import DictTree, ref_root
from .support.store import KEY, make_block


def reachable(nodes: dict[bytes, bytes], root: bytes, version: int = 0) -> set[bytes]:
    """Storage keys of every record of the tree at ``root`` (stored at ``version``), checking
    the shape rules on the way: no node without children or over a lone leaf."""
    out: set[bytes] = set()
    todo = [(root, tree.version_bytes(version), 0, 0)]
    while todo:
        h, v, depth, path = todo.pop()
        if h == EMPTY:
            continue
        k = tree.node_key(v, depth, path, h)
        rec = nodes[k]
        out.add(k)
        assert tree.record_hash(rec) == h
        if rec[0] == merkle.STATE_NODE_PREFIX[0]:
            kids = tree.node_children(rec)
            if len(kids) == 1:
                nib, ch, cv = kids[0]
                only = nodes[tree.node_key(cv, depth + 1, path | nib << (252 - 4 * depth), ch)]
                assert only[0] == merkle.STATE_NODE_PREFIX[0], "a lone leaf was not promoted"
            for nib, ch, cv in kids:
                todo.append((ch, cv, depth + 1, path | nib << (252 - 4 * depth)))
    return out


base_keys = st.integers(0, 400)
ops = st.lists(
    st.lists(
        st.tuples(st.integers(0, 600), st.one_of(st.none(), st.binary(max_size=6))),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 400), ops)
def test_small_batches_over_a_big_tree(
    n: int, batches: list[list[tuple[int, bytes | None]]]
) -> None:
    """Batches of 1-4 writes (each mostly alone in its subtree) over a tree of n entries.

    Single-version (the DictTree keeps version 0): the records reachable from the root
    are exactly those of a fresh build of the same state.
    """
    state = {b"k%d" % i: b"v%d" % i for i in range(n)}
    t = DictTree()
    t.apply(dict(state))
    for batch in batches:
        writes = {b"k%d" % i: v for i, v in batch}
        t.apply(writes)
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        assert t.root == ref_root(state)
    fresh = DictTree()
    fresh.apply(dict(state))
    assert fresh.root == t.root
    live = reachable(t.nodes, t.root)
    assert live == reachable(fresh.nodes, fresh.root)
    assert all(t.nodes[k] == fresh.nodes[k] for k in live)
    for k in [*state, *(b"k%d" % i for b in batches for i, _ in b)][:60]:
        v, proof = t.prove(k)
        assert v == state.get(k)
        verify_state_proof(t.root, k, v, proof)


def _keys_sharing(prefix_nibbles: int, count: int, start: bytes) -> list[bytes]:
    """``count`` keys whose paths share their first ``prefix_nibbles`` nibbles with ``start``'s."""
    want = hashlib.sha256(start).hexdigest()[:prefix_nibbles]
    out = [start]
    i = 0
    while len(out) < count:
        k = b"%s/%d" % (start, i)
        if hashlib.sha256(k).hexdigest()[:prefix_nibbles] == want:
            out.append(k)
        i += 1
    return out


@pytest.mark.parametrize("one_by_one", [False, True])
def test_chains_of_single_inner_children(one_by_one: bool) -> None:
    """Paths sharing a long prefix make nodes whose only child is an inner node; deletes
    must collapse such chains (promoting the leaf left over) in every update path."""
    deep = _keys_sharing(4, 2, b"deep")  # two paths sharing 4 nibbles: a chain of 3 one-child nodes
    near = _keys_sharing(2, 2, deep[0])[1:]  # shares 2 nibbles with them
    keys = [*deep, *near, b"far"]
    state = {k: k + b"!" for k in keys}
    t = DictTree()
    t.apply(dict(state))
    assert t.root == ref_root(state)
    for gone in [[deep[1]], [near[0], b"far"], [deep[0]]]:
        writes: dict[bytes, bytes | None] = dict.fromkeys(gone)
        if one_by_one:
            for k in gone:
                t.apply({k: None})
        else:
            t.apply(writes)
        for k in gone:
            del state[k]
        assert t.root == ref_root(state)
        fresh = DictTree()
        fresh.apply(dict(state))
        assert reachable(t.nodes, t.root) == reachable(fresh.nodes, fresh.root)
        for k in keys:
            v, proof = t.prove(k)
            assert v == state.get(k)
            verify_state_proof(t.root, k, v, proof)
    assert t.root == EMPTY


def test_missing_node_is_reported() -> None:
    t = DictTree()
    t.apply({b"k%d" % i: b"v" for i in range(50)})
    some = next(
        k
        for k, r in t.nodes.items()
        if r[0] == merkle.STATE_NODE_PREFIX[0] and tree.record_hash(r) != t.root
    )
    del t.nodes[some]
    with pytest.raises(StorageError):
        for i in range(50):
            t.apply({b"k%d" % i: b"w"})


def test_repeated_transactions_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=False)
    block, cert, receipts, update = make_block(store, {b"a": b"1"}, ntx=2)
    store.commit_block(block, cert, receipts, {b"a": b"1"}, update)
    # the same transaction twice in one block
    nb, _, _, up = make_block(store, {b"b": b"2"}, ntx=1, nonce0=5)
    twice = (nb.txs[0], nb.txs[0])
    rs = [Receipt(t.hash, True, 1) for t in twice]
    from dataclasses import replace

    hdr = replace(
        nb.header,
        tx_count=2,
        tx_root=merkle.merkle_root(
            [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(twice, rs, strict=True)]
        ),
    )
    before = dict(store.iter_state()), store.head(), store.stats()
    with pytest.raises(StorageError, match="committed before"):
        store.commit_block(Block(hdr, twice), None, rs, {b"b": b"2"}, up)
    assert (dict(store.iter_state()), store.head(), store.stats()) == before
    # a transaction of an earlier block, named in the error
    old = block.txs[1]
    rs = [Receipt(old.hash, True, 1)]
    hdr = replace(nb.header, tx_root=merkle.merkle_root([merkle.tx_leaf(old.hash, rs[0].hash)]))
    with pytest.raises(StorageError, match=old.hash.hex()[:16]):
        store.commit_block(Block(hdr, (old,)), None, rs, {b"b": b"2"}, up)
    assert (dict(store.iter_state()), store.head(), store.stats()) == before
    # and the block itself, unchanged, still commits with its receipts readable
    store.commit_block(nb, None, [Receipt(nb.txs[0].hash, True, 10, result=0)], {b"b": b"2"}, up)
    assert store.get_receipts(1) == [Receipt(nb.txs[0].hash, True, 10, result=0)]
    assert store.get_tx_location(nb.txs[0].hash) == (1, 0)
    assert KEY.public_key == nb.txs[0].public_key
    store.close()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), ops, st.integers(0, 3))
def test_versioned_updates_and_history(
    n: int, batches: list[list[tuple[int, bytes | None]]], gap: int
) -> None:
    """One version per batch (as the store does per block): roots match the reference,
    every new record is keyed at its batch's version, and proofs work under every old root
    from the version its root is stored at."""
    nodes: dict[bytes, bytes] = {}
    state = {b"k%d" % i: b"v%d" % i for i in range(n)}
    root, new = tree.compute_update(nodes.get, EMPTY, dict(state), version=0)
    nodes.update(new)
    history = [(root, 0, dict(state))]
    version = 0
    for batch in batches:
        writes = {b"k%d" % i: v for i, v in batch}
        base_version = version
        version += 1 + gap  # versions only grow; heights without writes leave gaps
        root, new = tree.compute_update(
            nodes.get, root, writes, version=version, root_version=history[-1][1]
        )
        assert all(k[:8] == tree.version_bytes(version) for k in new)
        assert list(new) == sorted(new)  # post-order emission is key order
        assert not set(new) & set(nodes)  # append-only: nothing overwritten
        nodes.update(new)
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        assert root == ref_root(state)
        history.append((root, version if root != EMPTY else base_version, dict(state)))
    for root, ver, snap in history:
        assert root == EMPTY or reachable(nodes, root, ver)  # readable from its version
        for k in [*snap, *(b"k%d" % i for b in batches for i, _ in b)][:40]:
            v, proof = tree.prove(nodes.get, root, k, ver)
            assert v == snap.get(k)
            verify_state_proof(root, k, v, proof)


def test_store_keys_nodes_by_height_and_proves_history(tmp_path: Path) -> None:
    """Each block's tree records are keyed at its height, after all older ones; an update
    computed for another height is refused; old roots stay provable after a reopen."""
    from .support.store import commit

    store = Store(tmp_path, sync=False)
    roots = []
    state: dict[bytes, bytes] = {}
    for h in range(5):
        writes: dict[bytes, bytes | None] = {b"k%d" % i: b"%d" % h for i in range(h, h + 20)}
        writes[b"k%d" % h] = None  # a delete each block: leaves move up
        commit(store, writes)
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        roots.append((store.state_root(), dict(state)))
        with store._env.begin() as txn:
            keys = [bytes(k) for k in txn.cursor(db=store._db["nodes"]).iternext(values=False)]
        assert [int.from_bytes(k[:8], "big") for k in keys][-1] == h  # the newest run is last
        assert {int.from_bytes(k[:8], "big") for k in keys} == set(range(h + 1))
    # an update computed on this state but committed at another height
    block, cert, receipts, update = make_block(store, {b"z": b"1"})
    from dataclasses import replace

    wrong = replace(update, version=update.version + 1)
    with pytest.raises(StorageError, match="another height"):
        store.commit_block(block, cert, receipts, {b"z": b"1"}, wrong)
    store.close()
    store = Store(tmp_path, sync=False)
    for root, snap in roots:
        assert root == ref_root(snap)
        for k in [b"k%d" % i for i in range(26)]:
            v, proof = store.prove_state(k, root)
            assert v == snap.get(k)
            verify_state_proof(root, k, v, proof)
    with store.snapshot() as snap_:
        v, proof = snap_.prove_state(b"k10")
        verify_state_proof(roots[-1][0], b"k10", v, proof)
    store.close()


def test_paths_sharing_more_than_16_nibbles() -> None:
    """Paths sharing more than the 16 nibbles a key's position holds (about 2**64 work to find
    with real keys, so crafted here below the key hashing): still one record per node, the
    reference root, readable records; only the emission order is no longer key order."""
    from .support.merkle_ref import _ref

    base = bytes.fromhex("ab" * 10) + bytes(22)  # 20 shared nibbles, then they differ
    paths = sorted(
        [base, base[:10] + b"\x01" + base[11:], base[:10] + b"\xf0" + base[11:], bytes(32)]
    )
    vhs = [hashlib.sha256(b"%d" % i).digest() for i in range(len(paths))]
    recs: list[bytes | None] = [
        merkle.STATE_LEAF_PREFIX + p + vh + b"v" for p, vh in zip(paths, vhs, strict=True)
    ]
    up = tree._Updater({}.get, paths, recs, tree.version_bytes(7))
    root, ver = up.build(0, 0, len(paths))
    assert root == _ref(list(zip(paths, vhs, strict=True)), 0)
    assert reachable(up.nodes, root, 7) == set(up.nodes)
    assert list(up.nodes) != sorted(up.nodes)  # deeper than 16 nibbles: order by depth only


def test_commit_sorts_records_out_of_order(tmp_path: Path) -> None:
    """The commit relies on the tree's key order only as a fast path: an update whose records
    come in another order (appended as far as in order, the rest inserted) commits the same."""
    from dataclasses import replace

    store = Store(tmp_path, sync=False)
    writes: dict[bytes, bytes | None] = {b"k%d" % i: b"v" for i in range(200)}
    block, cert, receipts, update = make_block(store, writes)
    shuffled = replace(update, nodes=dict(reversed(list(update.nodes.items()))))
    store.commit_block(block, cert, receipts, writes, shuffled)
    for k in list(writes)[:20]:
        v, proof = store.prove_state(k)
        assert v == b"v"
        verify_state_proof(store.state_root(), k, v, proof)
    store.close()


# --- the one-pass walk (tree._walk) against the recursive reference (tree._Updater) --------

walk_batches = st.lists(
    st.dictionaries(
        st.integers(0, 700),
        st.one_of(st.none(), st.binary(max_size=5)),
        min_size=1,
        max_size=60,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 500), walk_batches, st.booleans())
def test_walk_gives_the_reference_root_and_records(
    n: int, batches: list[dict[int, bytes | None]], deletes: bool
) -> None:
    """compute_update (the walk whenever a batch has no deletes) and the reference give the
    same root and the same records in the same order, batch after batch, one version per
    batch: replaced values, values written again unchanged, new keys in empty slots and on
    another key's leaf, several new keys in one slot, and (with ``deletes``) batches that
    delete, which go to the reference."""
    nodes: dict[bytes, bytes] = {}
    root, new = tree.compute_update(
        nodes.get, EMPTY, {b"k%d" % i: b"v" for i in range(n)}, walk=False
    )
    nodes.update(new)
    root_version = 0
    for version, batch in enumerate(batches, start=1):
        writes = {
            b"k%d" % i: (b"v" if i % 3 == 0 else v) if deletes or v is not None else b"w"
            for i, v in batch.items()
        }
        fast = tree.compute_update(
            nodes.get, root, writes, version=version, root_version=root_version
        )
        ref = tree.compute_update(
            nodes.get, root, writes, version=version, root_version=root_version, walk=False
        )
        assert fast[0] == ref[0]
        assert list(fast[1].items()) == list(ref[1].items())
        nodes.update(fast[1])
        root = fast[0]
        if root != EMPTY:
            root_version = version


def _crafted(paths: list[bytes]) -> tuple[list[bytes], list[bytes | None]]:
    """Sorted paths and leaf records for them (paths chosen below the key hashing)."""
    paths = sorted(paths)
    return paths, [merkle.STATE_LEAF_PREFIX + p + hashlib.sha256(p).digest() + b"x" for p in paths]


def _tree_of(paths: list[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    ps, recs = _crafted(paths)
    up = tree._Updater({}.get, ps, recs, tree.version_bytes(0))
    root, _ = up.build(0, 0, len(ps))
    return root, up.nodes


def _reference(
    nodes: dict[bytes, bytes], root: bytes, paths: list[bytes], recs: list[bytes | None]
) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    up = tree._Updater(nodes.get, paths, recs, tree.version_bytes(1))
    h, v = up.update(root, tree.version_bytes(0), 0, 0, len(paths))
    return h, v, list(up.nodes.items())


def test_walk_declines_what_it_does_not_take() -> None:
    """The walk's limits: a leaf at the root, an inner node deeper than 15 nibbles on a
    written path (its children's nibbles lie past the 64 bits the walk reads) are declined,
    and the batch goes to the reference; paths sharing their first 64 bits are written by
    the reference inside the walk (they always reach one slot together). Each gives the
    reference's root and records through ``_update``, the function compute_update calls.
    (Stored paths sharing 64 bits put inner nodes below depth 15: declined.)"""
    v0, v1 = tree.version_bytes(0), tree.version_bytes(1)
    base = [bytes([16 * i]) + bytes(31) for i in range(4)]
    deep = [b"\xcd" * 8 + b"\x10" + bytes(23), b"\xcd" * 8 + b"\x1f" + bytes(23)]
    twins = [b"\xab" * 8 + b"\x00" * 24, b"\xab" * 8 + b"\x01" * 24]
    cases = [
        ([bytes([7]) * 32], [bytes(32)], True),  # a leaf at the root
        ([*base, *deep], [b"\xcd" * 8 + b"\x15" + bytes(23)], True),  # below an inner node at 16
        ([*base, *deep], [deep[0], base[1]], True),  # replacing a leaf at depth 17
        (base, twins, False),  # new paths sharing 64 bits
        ([*base, *twins], [twins[1], base[0]], True),  # ... replaced: inner nodes below 16
    ]
    for stored, written, declined in cases:
        root, nodes = _tree_of(stored)
        ps, recs = _crafted(written)
        want = _reference(nodes, root, ps, recs)
        if declined:
            with pytest.raises(tree._NotFast):
                tree._walk(nodes.get, root, v0, ps, recs, v1)  # type: ignore[arg-type]
        else:
            h, v, new = tree._walk(nodes.get, root, v0, ps, recs, v1)  # type: ignore[arg-type]
            assert (h, v, list(new.items())) == want
        h, v, new = tree._update(nodes.get, root, v0, ps, recs, v1, False)
        assert (h, v, list(new.items())) == want
