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
from collections.abc import Iterator, Sequence
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


def key_for(
    keys: Sequence[RegulatorKey], height: int, tx_hash: bytes, data: dict[str, Any]
) -> RegulatorKey:
    """The secret key of the regulator key a transfer is encrypted to: the key in force at its
    height, which the pool checked and its event names (``regulator``). An event from before
    events named it (no rotation could happen then) takes the first key: genesis's."""
    named = data.get("regulator")
    if named is None:
        return keys[0]
    if not isinstance(named, list) or len(named) != 2:
        raise ValidationError(
            f"the Transfer event of {tx_hash.hex()} names a malformed regulator key"
        )
    public = (fe_from_bytes(named[0]), fe_from_bytes(named[1]))
    for key in keys:
        if key.public == public:
            return key
    raise ValidationError(
        f"the transfer {tx_hash.hex()} at height {height} is encrypted to the regulator key "
        f"[{public[0]}, {public[1]}] (the one in force there), and no key given holds its "
        "secret: pass every key the regulator has used (--key, repeated; keep retired keys)"
    )


def audit(
    key: RegulatorKey | Sequence[RegulatorKey], source: ChainSource, start: int = 0
) -> list[AuditRow]:
    """Decrypt every shielded transfer from ``start`` on. ``key``: the regulator's secret
    key, or every key it has held (governance's ``rotate_regulator`` puts a new one in force
    from its activation height: each transfer is read with the key in force at its height)."""
    keys = [key] if isinstance(key, RegulatorKey) else list(key)
    if not keys:
        raise ValidationError("the audit needs at least one regulator key")
    rows = []
    for height, tx_hash, ev in transfer_events(source, start):
        sender, receivers, values = decrypt_event(key_for(keys, height, tx_hash, ev.data), ev.data)
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
