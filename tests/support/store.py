"""Blocks with state writes committed straight to a Store, for storage tests."""

from __future__ import annotations

from accord.base import merkle
from accord.base.crypto.ed25519 import AccountKey
from accord.base.types import ZERO_HASH, Block, Certificate, Header, Receipt, Tx, body_hash
from accord.storage import Store

KEY = AccountKey.from_name("storage-test")


def make_block(store: Store, writes: dict[bytes, bytes | None], ntx: int = 0, *, nonce0: int = 0):  # type: ignore[no-untyped-def]
    """A block on the store's head with ``ntx`` transactions, its receipts, cert and update."""
    head = store.head()
    height = 0 if head is None else head[0] + 1
    parent = ZERO_HASH if head is None else head[1]
    txs = tuple(
        Tx.create(
            KEY,
            chain_id="t",
            contract="token",
            method="transfer",
            args={"n": height},
            nonce=nonce0 + i,
        )
        for i in range(ntx)
    )
    receipts = [Receipt(t.hash, True, 10, result=i) for i, t in enumerate(txs)]
    update = store.compute_state_update(writes)
    header = Header(
        chain_id="t",
        height=height,
        round=0,
        parent_hash=parent,
        tx_root=merkle.merkle_root(
            [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(txs, receipts, strict=True)]
        ),
        state_root=update.root,
        tx_count=ntx,
        proposer=0,
        time_ms=height,
        body_hash=body_hash(txs),
    )
    block = Block(header, txs)
    cert = Certificate(height, 0, 2, block.hash, b"\x0f", b"sig")
    return block, cert, receipts, update


def commit(store: Store, writes: dict[bytes, bytes | None], ntx: int = 0, nonce0: int = 0) -> Block:
    block, cert, receipts, update = make_block(store, writes, ntx, nonce0=nonce0)
    store.commit_block(block, cert, receipts, writes, update)
    return block


def snapshot_all(store: Store) -> dict[bytes, bytes]:
    return dict(store.iter_state())
