"""The regulator's audit: read the chain, decrypt every shielded transfer.

Every ``shielded_pool`` ``Transfer`` event carries the in-circuit ciphertext (ephemeral key E
and five field elements); the proof already showed validators it encrypts the real sender,
receivers and values to the regulator's key. The regulator needs nothing but the chain and its
secret: no validator, no wallet and no user takes part.

Sources: a node's LMDB folder (:class:`accord.storage.Store`: ``head()``, ``get_receipts(h)``),
or any nodes' client APIs through a light client (:class:`VerifiedSource`: every block and its
receipts checked against a certified header, so a regulator with no validator of its own needs
to trust no node), or anything with those two methods.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from accord.base.errors import ValidationError
from accord.zk.notes import RegulatorKey, fe_from_bytes

POOL = "shielded_pool"


class ChainSource(Protocol):
    def head(self) -> tuple[int, bytes] | None: ...

    def get_receipts(self, height: int) -> list[Any]: ...


class VerifiedSource:
    """The chain as untrusted nodes serve it, checked by a light client.

    ``head()`` syncs the light client and returns its certified head; ``get_receipts(h)``
    returns block ``h``'s receipts only after the block's transactions and receipts were shown
    to give the certified header's tx root (a node that hides, adds or alters a transfer is
    caught as lying, and another node is asked).
    """

    def __init__(self, light: Any) -> None:
        self.light = light  # accord.light.LightClient (blocking)

    def head(self) -> tuple[int, bytes] | None:
        self.light.sync()
        head = self.light.head
        return None if head is None else (head.height, head.hash)

    def get_receipts(self, height: int) -> list[Any]:
        if height == 0:
            return []  # the genesis block holds no transactions
        return list(self.light.verify_block(height).receipts)


@dataclass(frozen=True)
class AuditRow:
    height: int
    tx_hash: str
    sender: str
    receiver_1: str
    value_1: int
    receiver_2: str
    value_2: int
    deposit: int
    withdrawal: int
    nullifiers: str


def transfer_events(source: ChainSource, start: int = 0) -> Iterator[tuple[int, bytes, Any]]:
    """(height, tx hash, event) for each shielded transfer, in chain order."""
    head = source.head()
    if head is None:
        return
    for h in range(start, head[0] + 1):
        for receipt in source.get_receipts(h):
            if not receipt.ok:
                continue
            for ev in receipt.events:
                if ev.contract == POOL and ev.name == "Transfer":
                    yield h, receipt.tx_hash, ev


def decrypt_event(
    key: RegulatorKey, data: dict[str, Any]
) -> tuple[int, tuple[int, int], tuple[int, int]]:
    eph = data.get("ephemeral")
    cipher = data.get("ciphertext")
    if not isinstance(eph, list) or len(eph) != 2 or not isinstance(cipher, list):
        raise ValidationError("a Transfer event without a regulator ciphertext")
    point = (fe_from_bytes(eph[0]), fe_from_bytes(eph[1]))
    rec = key.decrypt(point, [fe_from_bytes(c) for c in cipher])
    return rec.sender, rec.receivers, rec.values


def audit(key: RegulatorKey, source: ChainSource, start: int = 0) -> list[AuditRow]:
    rows = []
    for height, tx_hash, ev in transfer_events(source, start):
        sender, receivers, values = decrypt_event(key, ev.data)
        rows.append(
            AuditRow(
                height=height,
                tx_hash=tx_hash.hex(),
                sender=f"{sender:064x}",
                receiver_1=f"{receivers[0]:064x}",
                value_1=values[0],
                receiver_2=f"{receivers[1]:064x}",
                value_2=values[1],
                deposit=int(ev.data.get("deposit", 0)),
                withdrawal=int(ev.data.get("withdrawal", 0)),
                nullifiers=",".join(bytes(n).hex() for n in ev.data.get("nullifiers", [])),
            )
        )
    return rows


def to_csv(rows: list[AuditRow]) -> str:
    out = io.StringIO()
    fields = list(AuditRow.__dataclass_fields__)
    w = csv.DictWriter(out, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow(asdict(r))
    return out.getvalue()


def to_json(rows: list[AuditRow]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)
