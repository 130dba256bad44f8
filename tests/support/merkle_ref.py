"""A reference state tree (plain dicts and recursion) that the LMDB store and the proofs are checked against."""

from __future__ import annotations

import hashlib

from accord.base.merkle import EMPTY, StateProof
from accord.storage import tree


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _nib(path: bytes, d: int) -> int:
    return (path[d // 2] >> (4 if d % 2 == 0 else 0)) & 15


def _groups(entries: list[tuple[bytes, bytes]], depth: int) -> dict[int, list[tuple[bytes, bytes]]]:
    out: dict[int, list[tuple[bytes, bytes]]] = {}
    for e in entries:
        out.setdefault(_nib(e[0], depth), []).append(e)
    return out


def _ref(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
    if not entries:
        return bytes(32)
    if len(entries) == 1:
        path, vh = entries[0]
        return H(b"\x02" + path + vh)
    groups = _groups(entries, depth)
    bitmap = sum(1 << i for i in groups)
    return H(
        b"\x03"
        + bitmap.to_bytes(2, "big")
        + b"".join(_ref(groups[i], depth + 1) for i in sorted(groups))
    )


def ref_root(state: dict[bytes, bytes]) -> bytes:
    """Root of the state ``key -> value`` recomputed from scratch."""
    return _ref([(H(k), H(v)) for k, v in state.items()], 0)


def ref_prove(state: dict[bytes, bytes], key: bytes) -> StateProof:
    """The proof for ``key`` read off the reference construction."""
    path = H(key)
    entries = [(H(k), H(v)) for k, v in state.items()]
    levels = []
    depth = 0
    while True:
        if not entries:
            return StateProof(tuple(levels))
        if len(entries) == 1:
            return StateProof(tuple(levels), None if entries[0][0] == path else entries[0])
        groups = _groups(entries, depth)
        bitmap = sum(1 << i for i in groups)
        nib = _nib(path, depth)
        levels.append(
            (bitmap, tuple(_ref(groups[i], depth + 1) for i in sorted(groups) if i != nib))
        )
        if nib not in groups:
            return StateProof(tuple(levels))
        entries = groups[nib]
        depth += 1


class DictTree:
    """The production tree code over a dict of nodes (what LMDB holds in the store)."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}
        self.root = EMPTY

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        root, new = tree.compute_update(self.nodes.get, self.root, writes)
        for k, rec in new.items():
            assert tree.record_hash(rec) == k[-32:]  # keyed by version || position || hash
        assert list(new) == sorted(new)  # emitted in key order: the commit's sort is one pass
        self.nodes.update(new)
        self.root = root

    def prove(self, key: bytes, root: bytes | None = None) -> tuple[bytes | None, StateProof]:
        return tree.prove(self.nodes.get, self.root if root is None else root, key)
