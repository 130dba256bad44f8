"""Transactions and nonce views for mempool tests."""

from __future__ import annotations

from accord.base.crypto.ed25519 import AccountKey
from accord.base.types import Tx
from accord.ledger.mempool import Mempool

CHAIN = "accord-test"


KEYS = {name: AccountKey.from_name(name) for name in ["a", "b", "c", "d"]}


class Nonces:
    """Committed nonces, as the chain would report them."""

    def __init__(self) -> None:
        self.n: dict[bytes, int] = {}

    def __call__(self, address: bytes) -> int:
        return self.n.get(address, 0)


def tx(
    name: str, nonce: int, *, chain_id: str = CHAIN, pad: int = 0, gas_limit: int = 1_000_000
) -> Tx:
    return Tx.create(
        KEYS[name],
        chain_id=chain_id,
        contract="token",
        method="transfer",
        args={"to": b"\x01" * 20, "amount": 1, "memo": "x" * pad},
        nonce=nonce,
        gas_limit=gas_limit,
    )


def pool(**kw: int) -> tuple[Mempool, Nonces]:
    nonces = Nonces()
    return Mempool(CHAIN, nonces, **kw), nonces


def snapshot(mp: Mempool) -> tuple[int, list[bytes]]:
    return len(mp), sorted(mp.verified)
