"""The explorer's persistent index, attacked where it could go wrong: killed mid-pass (it must
resume with no gap and no duplicate), damaged on disk (a flipped or truncated record is never
served: re-derived from its block, or the index rebuilt), its bounds (newest N per subject,
oracle and pool records in total) and pruning (its records go with the blocks, in the prune's
transaction, or on the next pass if another process pruned)."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accord.node.explorer import ExplorerIndex, IndexLimits
from accord.node.explorer.index import SIDE, derive
from accord.storage import Store
from accord.storage.store import SideTxn

from .support.explorer_chain import RECIPIENTS, SENDERS, build_chain

INDEXER = Path(__file__).parent / "support" / "explorer_indexer.py"


def dump(store: Store) -> dict[bytes, bytes]:
    return store.read_side(SIDE, lambda t: {bytes(k): bytes(v) for k, v in t.cursor()})


def full(index: ExplorerIndex) -> None:
    while index.catch_up():
        pass


def expected_refs(store: Store, subject: bytes, keep: int) -> list[tuple[int, int, bytes]]:
    """The newest ``keep`` (height, index, tx hash) naming ``subject``, from the blocks."""
    head = store.head()
    assert head is not None
    out = []
    for h in range(max(store.base(), 1), head[0] + 1):
        block = store.get_block(h)
        assert block is not None
        for _, i, tx_hash, subjects in derive(block, store.get_receipts(h)).txs:
            if subject in subjects:
                out.append((h, i, tx_hash))
    return list(reversed(out))[:keep]


def page_all(index: ExplorerIndex, subject: str, limit: int) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    before: tuple[int, int | None] | None = None
    while True:
        refs, cursor, _ = index.page(subject, limit, before)
        assert len(refs) <= limit
        seen += [(r.height, r.index, r.tx_hash) for r in refs]
        if cursor is None:
            return seen
        before = cursor


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("explorer-chain") / "db"
    store = Store(path, sync=False)
    build_chain(store, 240)
    store.close()
    return path


@pytest.fixture
def store(chain_dir: Path, tmp_path: Path) -> Store:
    (tmp_path / "db").mkdir()
    shutil.copyfile(chain_dir / "data.mdb", tmp_path / "db" / "data.mdb")
    s = Store(tmp_path / "db", sync=False)
    yield s  # type: ignore[misc]
    s.close()


def test_killed_indexer_resumes_without_gap_or_duplicate(chain_dir: Path, tmp_path: Path) -> None:
    ref_dir, kill_dir = tmp_path / "ref", tmp_path / "kill"
    for d in (ref_dir, kill_dir):
        d.mkdir()
        shutil.copyfile(chain_dir / "data.mdb", d / "data.mdb")
    ref = Store(ref_dir, sync=False)
    full(ExplorerIndex(ref))
    want = dump(ref)
    head = ref.head()
    ref.close()
    assert head is not None
    rng = random.Random(7)
    last = -1
    kills = 0
    while last < head[0]:
        proc = subprocess.Popen(
            [sys.executable, str(INDEXER), str(kill_dir), "12"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for _ in range(rng.randint(1, 6)):  # a few passes of 12 blocks, then a kill in the next
            line = proc.stdout.readline()
            if not line:
                break
            reported = int(line)
            assert reported >= last, "the index went backwards after a restart"
            last = reported
        time.sleep(rng.random() * 0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 3
    store = Store(kill_dir, sync=False)
    try:
        index = ExplorerIndex(store)
        full(index)
        assert index.coverage() == (1, head[0])
        assert dump(store) == want  # every record once, none missing, none twice
    finally:
        store.close()


def test_bounds_hold_and_pages_walk_each_subject_once(store: Store) -> None:
    limits = IndexLimits(per_subject=5, oracle_requests=3, shielded_recent=2, per_pass=17)
    index = ExplorerIndex(store, limits)
    passes = 0
    while index.catch_up():
        passes += 1
    head = store.head()
    assert head is not None and passes == -(-head[0] // 17)  # bounded passes, each <= per_pass
    subjects = [b"a\x14" + k.address for k in SENDERS] + [b"a\x14" + r for r in RECIPIENTS]
    subjects.append(b"c\x05token")
    records = dump(store)
    for subj in subjects:
        kept = [k for k in records if k.startswith(b"t" + subj)]
        assert len(kept) == 5
        want = expected_refs(store, subj, 5)
        name = ("a:" + subj[2:].hex()) if subj[:1] == b"a" else "c:token"
        got = page_all(index, name, 2)
        assert [(h, i) for h, i, _ in got] == [(h, i) for h, i, _ in want]
        assert [t for _, _, t in got] == [t.hex() for _, _, t in want]
        count = records[b"n" + subj][16:]
        assert int.from_bytes(count, "big") == 5
    assert sum(k[:1] == b"o" for k in records) == 3 and len(index.oracle(10)) == 3
    assert sum(k[:1] == b"s" for k in records) == 2 and len(index.shielded(10)) == 2
    # newest first, and the oracle index recorded answers
    oracle = index.oracle(10)
    assert [r.height for r in oracle] == sorted((r.height for r in oracle), reverse=True)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_tx_record_is_rederived_not_served(store: Store, damage: str) -> None:
    index = ExplorerIndex(store)
    full(index)
    subject = "a:" + RECIPIENTS[0].hex()
    want = page_all(index, subject, 100)
    before = dump(store)
    victim = next(k for k in before if k.startswith(b"ta\x14" + RECIPIENTS[0]))

    def spoil(t: SideTxn) -> None:
        raw = bytearray(before[victim])
        if damage == "flip":
            raw[-3] ^= 0x04  # inside the gas or the sender: still decodes, wrong content
        else:
            del raw[len(raw) // 2 :]
        t.put(victim, bytes(raw))

    store.write_side(SIDE, spoil)
    assert page_all(index, subject, 100) == want  # served from the block, not from the record
    assert index.m_damaged.total() >= 1
    index.catch_up()  # the pass rewrites it
    assert dump(store) == before


def test_damaged_state_record_rebuilds_the_index(store: Store) -> None:
    index = ExplorerIndex(store, IndexLimits(per_pass=50))
    full(index)
    before = dump(store)
    store.write_side(SIDE, lambda t: t.put(b"m/state", before[b"m/state"][:-2]))
    assert index.coverage() == (0, -1)  # nothing claimed from a record that fails its seal
    full(index)
    assert index.m_rebuilds.total() == 1
    assert dump(store) == before


def test_damaged_oracle_record_rebuilds_the_index(store: Store) -> None:
    index = ExplorerIndex(store, IndexLimits(per_pass=50))
    full(index)
    before = dump(store)
    victim = max(k for k in before if k[:1] == b"o")
    rec = bytearray(before[victim])
    rec[-1] ^= 1
    store.write_side(SIDE, lambda t: t.put(victim, bytes(rec)))
    listed = index.oracle(100)
    assert victim not in {bytes.fromhex(r.id) for r in listed}
    assert len(listed) == sum(k[:1] == b"o" for k in before) - 1
    full(index)
    assert dump(store) == before


def test_a_garbage_record_under_a_foreign_key_is_dropped(store: Store) -> None:
    index = ExplorerIndex(store)
    full(index)
    before = dump(store)
    subj = b"ta\x14" + RECIPIENTS[1]
    fake = subj + (10**6).to_bytes(8, "big") + (0).to_bytes(4, "big")  # no such block
    store.write_side(SIDE, lambda t: t.put(fake, b"\x00" * 40))
    refs = index.txs("a:" + RECIPIENTS[1].hex(), 100)
    assert all(r.height <= 240 for r in refs)
    index.catch_up()
    assert dump(store) == before


def test_prune_takes_the_index_with_the_blocks(store: Store) -> None:
    index = ExplorerIndex(store)
    full(index)
    base = store.prune(100)
    assert base > 100
    records = dump(store)
    heights = [int.from_bytes(k[-12:-4], "big") for k in records if k[:1] == b"t"]
    heights += [int.from_bytes(k[1:9], "big") for k in records if k[:1] in b"hos"]
    assert heights and min(heights) >= base  # deleted in the prune's own transaction
    for k, v in records.items():
        if k[:1] == b"n":
            assert int.from_bytes(v[16:], "big") == sum(
                1 for r in records if r.startswith(b"t" + k[1:])
            )
    assert index.coverage() == (base, 240)
    # another process prunes while no index is open: the next pass drops what is left behind
    index.close()
    base2 = store.prune(40)
    assert any(int.from_bytes(k[1:9], "big") < base2 for k in dump(store) if k[:1] == b"h")
    again = ExplorerIndex(store)
    again.catch_up()
    left = [int.from_bytes(k[1:9], "big") for k in dump(store) if k[:1] == b"h"]
    assert min(left) >= base2 and again.coverage() == (base2, 240)
    expect = expected_refs(store, b"c\x05token", 100)
    assert [(r.height, r.index) for r in again.txs("c:token", 100)] == [
        (h, i) for h, i, _ in expect
    ]


def test_another_chain_under_the_index_is_reindexed(store: Store, tmp_path: Path) -> None:
    index = ExplorerIndex(store)
    full(index)
    old = dump(store)
    other = Store(tmp_path / "other", sync=False)
    try:
        build_chain(other, 240, seed=2)  # same heights, other blocks

        def plant(t: SideTxn) -> None:
            for k, v in old.items():
                t.put(k, v)

        other.write_side(SIDE, plant)  # an index of the first chain left in the folder
        idx = ExplorerIndex(other)
        full(idx)
        refs = idx.txs("c:token", 100)
        assert refs
        for ref in refs:
            block = other.get_block(ref.height)
            assert block is not None and block.txs[ref.index].hash.hex() == ref.tx_hash
        assert dump(other) != old and idx.m_rebuilds.total() == 1
    finally:
        other.close()


def test_prune_with_a_damaged_height_record_still_takes_its_records(store: Store) -> None:
    index = ExplorerIndex(store)
    full(index)
    records = dump(store)
    hk = min(k for k in records if k[:1] == b"h" and int.from_bytes(k[1:9], "big") > 5)
    height = int.from_bytes(hk[1:9], "big")
    store.write_side(SIDE, lambda t: t.put(hk, records[hk][:-7]))  # truncated
    store.prune(store.head()[0] - height)  # type: ignore[index]
    assert store.base() == height + 1
    left = dump(store)
    assert not [k for k in left if k[:1] == b"t" and int.from_bytes(k[-12:-4], "big") <= height]
    assert index.m_damaged.total() == 1  # found from the block, which the prune still had


def test_indexing_while_blocks_commit_matches_indexing_after(tmp_path: Path) -> None:
    import threading

    live = Store(tmp_path / "live", sync=False)
    after = Store(tmp_path / "after", sync=False)
    try:
        build_chain(after, 150, seed=5)
        full(ExplorerIndex(after))
        index = ExplorerIndex(live, IndexLimits(per_pass=4))
        writer = threading.Thread(target=build_chain, args=(live, 150, 5))
        writer.start()
        while writer.is_alive():
            index.catch_up()  # races the commits: each pass takes what is committed so far
        writer.join()
        full(index)
        assert dump(live) == dump(after)
    finally:
        live.close()
        after.close()


def test_offered_blocks_index_as_the_store_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks handed over in memory after their commit (what the node's explorer does) give
    the same records as blocks read back from the store, and are not read back."""
    offered = Store(tmp_path / "offered", sync=False)
    read = Store(tmp_path / "read", sync=False)
    try:
        index = ExplorerIndex(offered, IndexLimits(per_pass=4))
        reads: list[int] = []
        real = offered.get_blocks
        monkeypatch.setattr(
            offered,
            "get_blocks",
            lambda s, n: reads.append(n) or real(s, n),  # type: ignore[func-returns-value]
        )
        first = build_chain(offered, 0, seed=7)  # genesis: indexed from the store
        full(index)
        reads.clear()
        blocks = build_chain(read, 60, seed=7)
        assert blocks[0].hash == first[0].hash
        for block in blocks[1:]:
            receipts = read.get_receipts(block.height)
            cert = read.get_certificate(block.height)
            head = read.get_block(block.height)
            assert head is not None
            # the same block committed to the second store, then offered, as the node does
            offered.commit_block(block, cert, receipts, {}, offered.compute_state_update({}))
            index.offer(block, receipts)
            index.catch_up()
        assert reads == []  # every block came from the offers
        full(ExplorerIndex(read))
        assert dump(offered) == dump(read)
    finally:
        offered.close()
        read.close()


def test_an_offered_block_the_store_does_not_hold_is_not_indexed(
    store: Store, tmp_path: Path
) -> None:
    """An offer for a height whose stored block has another hash (another chain, a snapshot
    installed meanwhile) is ignored: the pass reads the store's block instead."""
    other = Store(tmp_path / "other", sync=False)
    try:
        foreign = build_chain(other, 20, seed=9)
    finally:
        other.close()
    from accord.node.explorer.index import OFFERED_BLOCKS

    index = ExplorerIndex(store)
    for block in foreign[1 : OFFERED_BLOCKS + 1]:  # exactly the heights the first pass reads
        assert store.get_header(block.height).hash != block.hash  # type: ignore[union-attr]
        index.offer(block, [])
    assert sorted(index._offered) == list(range(1, OFFERED_BLOCKS + 1))
    full(index)
    reference = Store(tmp_path / "reference", sync=False)
    try:
        build_chain(reference, 240)  # the fixture's chain, indexed without offers
        full(ExplorerIndex(reference))
        assert dump(store) == dump(reference)
    finally:
        reference.close()


def test_offers_are_bounded(store: Store) -> None:
    from accord.node.explorer.index import OFFERED_BLOCKS

    index = ExplorerIndex(store)
    for h in range(1, 200):
        block = store.get_block(h)
        assert block is not None
        index.offer(block, store.get_receipts(h))
    assert len(index._offered) == OFFERED_BLOCKS
    assert min(index._offered) == 199 - OFFERED_BLOCKS + 1
