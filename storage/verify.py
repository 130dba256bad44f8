"""Damage detection: what the store reads is checked against hashes it can trust.

LMDB keeps no checksums: a flipped byte in ``data.mdb`` (a failing disk, a bad copy) is read
back as if it were data. Measured before this module: of 11 single-byte flips in a stopped
validator's file, 10 went unnoticed; a flipped balance was served by ``/v1/query`` while the
Merkle proof of the same key disagreed, and a flipped head header served a hash its
certificate does not cover. The chain of trust used here:

* the head's **certificate** (BLS signatures of a quorum, checked by the caller against the
  validator set) covers the head block's hash;
* the head **header** must hash to exactly that, and its ``state_root`` must be the root the
  store says it holds (and whose tree record exists and hashes to it);
* every **state value** read for a client is checked by a Merkle proof against that root
  (:class:`VerifiedSnapshot`), so a damaged value or tree node is an error, not an answer;
* :func:`verify_store` (``accord node DIR --verify``) checks everything: each block against its
  header, index, certificate, receipts (tx root) and parent, and every state entry by proof.

Damage found raises :class:`StorageDamaged` (``storage_damaged``): the node must stop serving
and voting (it cannot tell what else is wrong), and the operator restores the folder from a
backup or lets it catch up again from an empty one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from accord.base import encoding, merkle
from accord.base.errors import AccordError, ProofError, StorageError
from accord.base.types import Block, Certificate, Header, Receipt
from accord.storage import tree
from accord.storage.store import Snapshot, Store, _h


class StorageDamaged(StorageError):
    """The store holds bytes that do not match the hashes that vouch for them."""

    code = "storage_damaged"


def _decode(what: str, fn: Callable[[bytes], Any], raw: bytes) -> Any:
    try:
        return fn(raw)
    except AccordError as e:
        raise StorageDamaged(f"{what} does not decode: {e.message}") from None
    except Exception as e:  # damaged bytes can fail a decoder in any way
        raise StorageDamaged(f"{what} does not decode: {type(e).__name__}") from None


def check_head(
    store: Store, verify_cert: Callable[[Certificate], None] | None = None
) -> tuple[int, bytes]:
    """The start-up check: head header, its certificate, block body and state root agree.

    ``verify_cert`` checks a certificate's signatures (the node passes the validator set's);
    without it only that the certificate names the head's hash is checked. Returns the head.
    Cost: a few reads and one BLS check, whatever the chain's length.
    """

    def read(
        txn: Any,
    ) -> tuple[
        tuple[int, bytes] | None, bytes | None, bytes | None, bytes | None, bytes | None, bytes
    ]:
        head = store._head_in(txn)
        if head is None:
            return None, None, None, None, None, store._root_in(txn)
        key = _h(head[0])
        return (
            head,
            txn.get(key, db=store._db["headers"]),
            txn.get(key, db=store._db["blocks"]),
            txn.get(key, db=store._db["certs"]),
            txn.get(head[1], db=store._db["hashes"]),
            store._root_in(txn),
        )

    head, raw_header, raw_block, raw_cert, indexed, root = store._read(read)
    if head is None:
        return 0, b""
    height, head_hash = head
    if raw_header is None or raw_block is None:
        raise StorageDamaged(f"the head block {height} or its header is missing")
    header: Header = _decode(f"the header at height {height}", Header.decode, raw_header)
    if header.hash != head_hash or header.height != height:
        raise StorageDamaged(
            f"the header stored at height {height} hashes to {header.hash.hex()[:16]}, "
            f"not to the head's {head_hash.hex()[:16]}"
        )
    block: Block = _decode(f"the block at height {height}", Block.decode, raw_block)
    if block.hash != head_hash:
        raise StorageDamaged(f"the block stored at height {height} is not the head block")
    if indexed != _h(height):
        raise StorageDamaged(f"the hash index does not point the head block to height {height}")
    if height > 0:
        if raw_cert is None:
            raise StorageDamaged(f"the certificate of the head block {height} is missing")
        cert: Certificate = _decode(
            f"the certificate at height {height}", Certificate.decode, raw_cert
        )
        if cert.block_hash != head_hash or cert.height != height:
            raise StorageDamaged(
                f"the certificate at height {height} does not cover the head block"
            )
        if verify_cert is not None:
            try:
                verify_cert(cert)
            except AccordError as e:
                raise StorageDamaged(
                    f"the certificate at height {height} does not verify: {e.message}"
                ) from None
    if root != header.state_root:
        raise StorageDamaged(
            f"the stored state root {root.hex()[:16]} is not the head header's "
            f"{header.state_root.hex()[:16]}"
        )
    _check_root_record(store, root)
    return height, head_hash


def _check_root_record(store: Store, root: bytes) -> None:
    if root == merkle.EMPTY:
        return

    def read(txn: Any) -> bytes | None:
        try:
            version = store._root_version_in(txn, root)
        except StorageError:
            return None
        return txn.get(tree.node_key(version, 0, 0, root), db=store._db["nodes"])

    rec = store._read(read)
    if rec is None:
        raise StorageDamaged(f"the state tree's root record {root.hex()[:16]} is missing")
    if tree.record_hash(rec) != root:
        raise StorageDamaged(f"the state tree's root record does not hash to {root.hex()[:16]}")


class VerifiedSnapshot(Snapshot):
    """A snapshot whose state reads are each checked by a Merkle proof against its root.

    For what a node serves to clients (queries): one tree descent per key read, so not for
    block execution, where a wrong value shows up anyway as a state root that does not match.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        try:
            self._root = store._root_in(self._txn)
            self._root_version = store._root_version_in(self._txn, self._root)
        except StorageError as e:
            self.close()
            raise StorageDamaged(f"the state root is unusable: {e.message}") from None
        self._nodes = store._db["nodes"]

    def _checked(self, key: bytes, value: bytes | None) -> bytes | None:
        txn, nodes = self._txn, self._nodes
        try:
            _, proof = tree.prove(
                lambda k: txn.get(k, db=nodes), self._root, key, self._root_version
            )
            merkle.verify_state_proof(self._root, key, value, proof)
        except (ProofError, StorageError) as e:
            raise StorageDamaged(
                f"state entry {key.hex()[:32]} does not match the state root "
                f"{self._root.hex()[:16]}: {e.message}"
            ) from None
        except Exception as e:  # a damaged tree record can break the descent in any way
            raise StorageDamaged(
                f"state entry {key.hex()[:32]}: the state tree is unreadable ({type(e).__name__})"
            ) from None
        return value

    def get_state(self, key: bytes) -> bytes | None:
        return self._checked(key, super().get_state(key))

    def get_state_many(self, keys: Iterable[bytes]) -> dict[bytes, bytes | None]:
        return {k: self._checked(k, v) for k, v in super().get_state_many(keys).items()}

    def iter_state(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        for k, v in super().iter_state(prefix):
            yield k, self._checked(k, v)  # type: ignore[misc]  # a present value stays present


@dataclass
class VerifyReport:
    """What :func:`verify_store` checked and what it found (``problems`` empty: all good)."""

    height: int = 0
    base: int = 0
    blocks: int = 0
    state_entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "height": self.height,
            "base": self.base,
            "blocks": self.blocks,
            "state_entries": self.state_entries,
            "problems": self.problems[:50],
            "problem_count": len(self.problems),
        }


def verify_store(
    store: Store,
    verify_cert: Callable[[Certificate], None] | None = None,
    *,
    max_problems: int = 1000,
) -> VerifyReport:
    """Check the whole store (see the module docstring); never raises for damage, reports it."""
    report = VerifyReport()

    def problem(text: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(text)

    try:
        report.height, _ = check_head(store, verify_cert)
    except StorageError as e:
        problem(f"head: {e.message}")
        head = store.head()
        report.height = head[0] if head is not None else 0
    parent: bytes | None = None
    # Below the base nothing is kept (pruned, or the node started from a state snapshot): the
    # base block is checked by its certificate, as the head is.
    try:
        report.base = min(store.base(), report.height)
    except Exception as e:  # a damaged meta record
        problem(f"base: unreadable ({type(e).__name__})")
    for height in range(report.base, report.height + 1):
        report.blocks += 1
        try:
            parent = _check_block(store, height, parent, verify_cert)
        except StorageError as e:
            problem(f"height {height}: {e.message}")
            parent = None
        except Exception as e:  # damaged bytes can break any reader: report, go on
            problem(f"height {height}: unreadable ({type(e).__name__})")
            parent = None
    from accord.storage.store import open_safety

    try:
        for key, record in store.iter_safety():
            try:
                open_safety(key, record)
            except StorageError as e:
                problem(f"safety: {e.message}")
    except Exception as e:
        problem(f"safety: unreadable ({type(e).__name__})")
    try:
        snap = VerifiedSnapshot(store)
    except StorageError as e:
        problem(f"state: {e.message}")
        return report
    with snap:
        cur = snap._txn.cursor(db=store._db["state"])
        for key, value in cur:
            report.state_entries += 1
            try:
                snap._checked(key, value)
            except StorageDamaged as e:
                problem(e.message)
            except Exception as e:  # a damaged tree node can break the descent itself
                problem(f"state entry {key.hex()[:32]}: unreadable ({type(e).__name__})")
    return report


def _check_block(
    store: Store,
    height: int,
    parent: bytes | None,
    verify_cert: Callable[[Certificate], None] | None,
) -> bytes:
    """One height's block, header, index, certificate and receipts; returns its hash."""
    key = _h(height)

    def read(txn: Any) -> tuple[bytes | None, ...]:
        return tuple(
            txn.get(key, db=store._db[db]) for db in ("blocks", "headers", "certs", "receipts")
        )

    raw_block, raw_header, raw_cert, raw_receipts = store._read(read)
    if raw_block is None or raw_header is None:
        raise StorageDamaged("block or header missing")
    block: Block = _decode("the block", Block.decode, raw_block)
    header: Header = _decode("the header", Header.decode, raw_header)
    if header != block.header or header.height != height:
        raise StorageDamaged("the header differs from the block's")
    if parent is not None and header.parent_hash != parent:
        raise StorageDamaged("the block does not name the block below as its parent")
    if store.get_height_by_hash(block.hash) != height:
        raise StorageDamaged("the hash index does not point to this height")
    if height > 0:
        if raw_cert is None:
            raise StorageDamaged("certificate missing")
        cert: Certificate = _decode("the certificate", Certificate.decode, raw_cert)
        if cert.block_hash != block.hash or cert.height != height:
            raise StorageDamaged("the certificate does not cover this block")
        if verify_cert is not None:
            try:
                verify_cert(cert)
            except AccordError as e:
                raise StorageDamaged(f"the certificate does not verify: {e.message}") from None
        receipts: list[Receipt] = _decode(
            "the receipts",
            lambda raw: [Receipt.from_obj(r) for r in encoding.decode(raw)],
            raw_receipts or b"",
        )
        if len(receipts) != len(block.txs):
            raise StorageDamaged("receipts missing")
        leaves = [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(block.txs, receipts, strict=True)]
        if merkle.merkle_root(leaves) != header.tx_root:
            raise StorageDamaged("the transactions and receipts do not match the header's tx root")
        for i, t in enumerate(block.txs):
            loc = store.get_tx_location(t.hash)
            if loc != (height, i):
                raise StorageDamaged(f"the transaction index of tx {i} is wrong")
    return block.hash


__all__ = ["StorageDamaged", "VerifiedSnapshot", "VerifyReport", "check_head", "verify_store"]
