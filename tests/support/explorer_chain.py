"""Chains for the explorer index tests, written straight into a Store (no consensus).

``build_chain`` commits blocks through :meth:`Store.commit_block` whose receipts carry the
events the index reads (token transfers naming a recipient, oracle requests and answers,
shielded-pool transfers). ``long_chain`` appends 100,000-block chains to a real ledger's
genesis with raw writes of the same records ``commit_block`` writes (blocks, headers, hashes,
tx locations, receipts, certificates, head), since committing them one by one would take
minutes; the result is cached under ``~/.cache/accord`` keyed by this file and its inputs.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
from pathlib import Path

from accord.base import merkle
from accord.base.crypto.ed25519 import AccountKey
from accord.base.types import ZERO_HASH, Block, Certificate, Event, Header, Receipt, Tx, body_hash
from accord.ledger.chain import GENESIS_HASH_KEY
from accord.storage import Store

SENDERS = [AccountKey.from_name(f"explorer-sender-{i}") for i in range(4)]
RECIPIENTS = [bytes([i]) * 20 for i in range(1, 6)]


def _block(
    store: Store, txs: tuple[Tx, ...], receipts: list[Receipt], chain_id: str = "t"
) -> tuple[Block, Certificate, list[Receipt]]:
    head = store.head()
    height = 0 if head is None else head[0] + 1
    parent = ZERO_HASH if head is None else head[1]
    header = Header(
        chain_id=chain_id,
        height=height,
        round=0,
        parent_hash=parent,
        tx_root=merkle.merkle_root(
            [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(txs, receipts, strict=True)]
        ),
        state_root=store.state_root(),
        tx_count=len(txs),
        proposer=0,
        time_ms=1000 * height,
        body_hash=body_hash(txs),
    )
    block = Block(header, txs)
    return block, Certificate(height, 0, 2, block.hash, b"\x0f", b"sig"), receipts


def _events(rng: random.Random, height: int, i: int) -> tuple[Event, ...]:
    roll = rng.random()
    if roll < 0.15:
        rid = hashlib.sha256(b"req%d/%d" % (height, i)).digest()
        return (
            Event(
                "mpc_oracle",
                "OracleRequest",
                {"id": rid, "program": "p", "contract": "c", "deadline": height + 5},
            ),
        )
    if roll < 0.25:
        return (
            Event(
                "shielded_pool",
                "Transfer",
                {
                    "nullifiers": [rng.randbytes(32)],
                    "commitments": [rng.randbytes(32)],
                    "root": rng.randbytes(32),
                },
            ),
        )
    return (Event("token", "Transfer", {"from": b"", "to": rng.choice(RECIPIENTS), "amount": 1}),)


def build_chain(store: Store, heights: int, seed: int = 1) -> list[Block]:
    """A genesis block and ``heights`` blocks of 0..3 transactions each, with the events the
    explorer index reads; oracle requests made earlier are answered now and then."""
    rng = random.Random(seed)
    blocks = []
    pending: list[bytes] = []
    nonce = 0
    for _ in range(heights + 1):
        head = store.head()
        height = 0 if head is None else head[0] + 1
        txs, receipts = [], []
        for i in range(rng.randint(0, 3) if height else 0):
            tx = Tx.create(
                rng.choice(SENDERS),
                chain_id="t",
                contract="token",
                method="transfer",
                args={"h": height},
                nonce=nonce,
            )
            nonce += 1
            events = _events(rng, height, i)
            if events[0].name == "OracleRequest":
                pending.append(events[0].data["id"])
            elif pending and rng.random() < 0.3:
                rid = pending.pop(0)
                events += (Event("mpc_oracle", "OracleAnswered", {"id": rid, "ok": True}),)
            txs.append(tx)
            receipts.append(Receipt(tx.hash, True, 10 + i, events=events))
        block, cert, receipts = _block(store, tuple(txs), receipts)
        store.commit_block(block, cert, receipts, {}, store.compute_state_update({}))
        blocks.append(block)
    return blocks


LONG_ACCOUNTS = [AccountKey.from_name(f"explorer-long-{i}") for i in range(40)]


def long_chain(dest: Path, genesis_dir: Path, heights: int, tx_every: int) -> None:
    """Copy into ``dest`` the store of ``genesis_dir`` (a ledger's genesis, made by the caller)
    with blocks 1..``heights`` appended: one transfer every ``tx_every`` blocks, sent by one of
    :data:`LONG_ACCOUNTS` in turn to the next. Built once per inputs, then copied from the cache."""
    src = Path(__file__).read_bytes()
    genesis = Store(genesis_dir, sync=False)
    try:
        head = genesis.head()
        assert head is not None and head[0] == 0
        # The genesis document's hash too, not only its block's: a change that leaves the
        # genesis state alone (addresses leaving genesis did) must not reuse a stale chain.
        doc = genesis.get_meta(GENESIS_HASH_KEY) or b""
        key = hashlib.sha256(
            src + struct.pack(">QQ", heights, tx_every) + head[1] + doc
        ).hexdigest()
    finally:
        genesis.close()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "accord"
    cached = cache / f"explorer-chain-{key[:20]}"
    if not (cached / "data.mdb").exists():
        tmp = cache / f"explorer-chain-{key[:20]}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(genesis_dir / "data.mdb", tmp / "data.mdb")
        _append(tmp, heights, tx_every)
        os.replace(tmp, cached) if not cached.exists() else shutil.rmtree(tmp)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached / "data.mdb", dest / "data.mdb")


def _append(path: Path, heights: int, tx_every: int) -> None:
    store = Store(path, sync=False, map_size=1 << 28)
    try:
        head = store.head()
        assert head is not None
        g = store.get_header(0)
        assert g is not None
        parent, root, chain_id = head[1], g.state_root, g.chain_id
        nonces = [0] * len(LONG_ACCOUNTS)
        pack_h = struct.Struct(">Q").pack
        for start in range(1, heights + 1, 5000):
            rows = []
            for h in range(start, min(heights, start + 4999) + 1):
                txs: tuple[Tx, ...] = ()
                receipts: list[Receipt] = []
                if h % tx_every == 0:
                    a = (h // tx_every) % len(LONG_ACCOUNTS)
                    to = LONG_ACCOUNTS[(a + 1) % len(LONG_ACCOUNTS)].address
                    sender = LONG_ACCOUNTS[a]
                    tx = Tx.create(
                        sender,
                        chain_id=chain_id,
                        contract="token",
                        method="transfer",
                        args={"to": to, "amount": 1},
                        nonce=nonces[a],
                    )
                    nonces[a] += 1
                    ev = Event("token", "Transfer", {"from": sender.address, "to": to, "amount": 1})
                    txs, receipts = (tx,), [Receipt(tx.hash, True, 100, events=(ev,))]
                header = Header(
                    chain_id=chain_id,
                    height=h,
                    round=0,
                    parent_hash=parent,
                    tx_root=merkle.merkle_root(
                        [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(txs, receipts, strict=True)]
                    ),
                    state_root=root,
                    tx_count=len(txs),
                    proposer=0,
                    time_ms=1000 * h,
                    body_hash=body_hash(txs),
                )
                block = Block(header, txs)
                cert = Certificate(h, 0, 2, block.hash, b"\x01", b"sig")
                rows.append((block, receipts, cert))
                parent = block.hash

            def write(
                txn: object, rows: list[tuple[Block, list[Receipt], Certificate]] = rows
            ) -> None:
                from accord.base import encoding

                db = store._db
                for block, receipts, cert in rows:
                    hk = pack_h(block.height)
                    txn.put(hk, block.encode(), db=db["blocks"])  # type: ignore[attr-defined]
                    txn.put(hk, block.header.encode(), db=db["headers"])  # type: ignore[attr-defined]
                    txn.put(block.hash, hk, db=db["hashes"])  # type: ignore[attr-defined]
                    for i, tx in enumerate(block.txs):
                        txn.put(tx.hash, struct.pack(">QI", block.height, i), db=db["txs"])  # type: ignore[attr-defined]
                    txn.put(  # type: ignore[attr-defined]
                        hk,
                        encoding.encode_encoded_list([r.encode() for r in receipts]),
                        db=db["receipts"],
                    )
                    txn.put(hk, cert.encode(), db=db["certs"])  # type: ignore[attr-defined]
                last = rows[-1][0]
                txn.put(b"accord/head", pack_h(last.height) + last.hash, db=db["meta"])  # type: ignore[attr-defined]

            store._write(write)
    finally:
        store.close()
