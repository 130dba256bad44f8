"""Token contract: genesis, mint authority, transfer rules, allowances, supply conservation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import GenesisError, Revert
from accord.base.genesis import Genesis
from accord.base.types import Tx
from accord.contracts import Runtime, contract_address
from accord.contracts.memory import MemoryState
from accord.contracts.runtime import BlockResult
from accord.contracts.token import MAX_AMOUNT
from accord.node.config import builtin_contract_entries

from .support.genesis import make_genesis

KEYS = [AccountKey.from_name(f"holder-{i}") for i in range(4)]
AUTH = AccountKey.from_name("authority")  # conftest's genesis authority
START = [1_000, 500, 0, 7]


DictState = MemoryState


def genesis(balances: list[int] = START) -> Genesis:
    return make_genesis(
        1,
        balances={k.address.hex(): b for k, b in zip(KEYS, balances, strict=False)},
        contracts=builtin_contract_entries(),
    )


G = genesis()


class Ledger:
    """Runtime + state + nonces: executes one-transaction blocks."""

    def __init__(self, g: Genesis = G) -> None:
        self.g = g
        self.rt = Runtime(g)
        self.st = DictState(self.rt.genesis_writes())
        self.nonces: dict[bytes, int] = {}
        self.height = 0

    def send(self, key: AccountKey, method: str, **args: Any) -> BlockResult:
        n = self.nonces.get(key.address, 0)
        t = Tx.create(
            key, chain_id=self.g.chain_id, contract="token", method=method, args=args, nonce=n
        )
        self.height += 1
        r = self.rt.execute_block(self.st, [t], height=self.height, time_ms=0)
        self.st.apply(r.writes)
        self.nonces[key.address] = n + 1
        return r

    def balance(self, who: bytes) -> int:
        return self.rt.query(self.st, "token", "balance_of", {"account": who})  # type: ignore[no-any-return]

    def supply(self) -> int:
        return self.rt.query(self.st, "token", "total_supply", {})  # type: ignore[no-any-return]

    def balances(self) -> list[int]:
        return [self.balance(k.address) for k in KEYS]


def test_genesis_state() -> None:
    led = Ledger()
    assert led.balances() == START
    assert led.supply() == sum(START)
    assert led.rt.query(led.st, "token", "authority", {}) == AUTH.address


def test_transfer_moves_and_emits() -> None:
    led = Ledger()
    r = led.send(KEYS[0], "transfer", to=KEYS[2].address, amount=300)
    rc = r.receipts[0]
    assert rc.ok
    assert [(e.name, e.data) for e in rc.events] == [
        ("Transfer", {"from": KEYS[0].address, "to": KEYS[2].address, "amount": 300})
    ]
    assert led.balances() == [700, 500, 300, 7]
    # Sending the whole balance deletes the entry (absent = 0).
    led.send(KEYS[3], "transfer", to=KEYS[2].address, amount=7)
    assert led.balances() == [700, 500, 307, 0]
    # A transfer to oneself changes nothing but is allowed.
    assert led.send(KEYS[1], "transfer", to=KEYS[1].address, amount=500).receipts[0].ok
    assert led.balances() == [700, 500, 307, 0]


def test_remit_is_a_transfer_with_its_reference_in_the_event() -> None:
    from accord.contracts.token import MAX_REFERENCE

    led = Ledger()
    ref = b"INV-2026-12-0042/loan 7731"
    rc = led.send(KEYS[0], "remit", to=KEYS[2].address, amount=300, reference=ref).receipts[0]
    assert rc.ok
    assert [(e.name, e.data) for e in rc.events] == [
        (
            "Transfer",
            {"from": KEYS[0].address, "to": KEYS[2].address, "amount": 300, "reference": ref},
        )
    ]
    assert led.balances() == [700, 500, 300, 7]
    assert led.send(KEYS[0], "remit", to=KEYS[2].address, amount=1, reference=b"").receipts[0].ok
    before = dict(led.st.data)
    for bad in [
        dict(reference=b"x" * (MAX_REFERENCE + 1)),
        dict(amount=10_000),
        dict(to=bytes(20)),
    ]:
        args = {"to": KEYS[2].address, "amount": 1, "reference": b"r", **bad}
        rc = led.send(KEYS[0], "remit", **args).receipts[0]
        assert not rc.ok and rc.error_code == Revert.code
    changed = {k for k in led.st.data if before.get(k) != led.st.data[k]}
    assert changed == {b"n/" + KEYS[0].address}  # only the nonce moved
    assert (
        led.send(KEYS[0], "remit", to=KEYS[2].address, amount=1, reference=b"r" * MAX_REFERENCE)
        .receipts[0]
        .ok
    )


@pytest.mark.parametrize(
    ("to", "amount", "msg"),
    [
        (KEYS[1].address, 0, "amount must be between 1"),
        (KEYS[1].address, -5, "amount must be between 1"),
        (KEYS[1].address, MAX_AMOUNT + 1, "amount must be between 1"),
        (KEYS[1].address, 1_001, "insufficient balance: 1000 < 1001"),
        (KEYS[1].address[:19], 1, "20-byte address"),
        (KEYS[1].address + b"\x00", 1, "20-byte address"),
        (b"", 1, "20-byte address"),
        (bytes(20), 1, "zero address"),
    ],
)
def test_transfer_rejections_change_nothing(to: bytes, amount: int, msg: str) -> None:
    led = Ledger()
    before = dict(led.st.data)
    r = led.send(KEYS[0], "transfer", to=to, amount=amount)
    rc = r.receipts[0]
    assert not rc.ok and rc.error_code == Revert.code and msg in rc.error
    # Only the nonce moved.
    changed = {k for k in led.st.data if before.get(k) != led.st.data[k]}
    assert changed == {b"n/" + KEYS[0].address}
    assert led.balances() == START


def test_bool_amount_is_bad_arguments() -> None:
    led = Ledger()
    rc = led.send(KEYS[0], "transfer", to=KEYS[1].address, amount=True).receipts[0]
    assert not rc.ok and rc.error_code == "bad_arguments"


def test_mint_authority_only() -> None:
    led = Ledger()
    rc = led.send(KEYS[0], "mint", to=KEYS[0].address, amount=10).receipts[0]
    assert not rc.ok and "only the token authority" in rc.error
    assert led.supply() == sum(START)
    rc = led.send(AUTH, "mint", to=KEYS[2].address, amount=10).receipts[0]
    assert rc.ok and [(e.name, e.data) for e in rc.events] == [
        ("Mint", {"to": KEYS[2].address, "amount": 10})
    ]
    assert led.balance(KEYS[2].address) == 10 and led.supply() == sum(START) + 10


def test_mint_supply_cap() -> None:
    led = Ledger()
    room = MAX_AMOUNT - led.supply()
    rc = led.send(AUTH, "mint", to=KEYS[2].address, amount=room + 1).receipts[0]
    assert not rc.ok and "above" in rc.error
    assert led.send(AUTH, "mint", to=KEYS[2].address, amount=room).receipts[0].ok
    assert led.supply() == MAX_AMOUNT
    assert not led.send(AUTH, "mint", to=KEYS[2].address, amount=1).receipts[0].ok


def test_mint_rejects_bad_recipient_and_amount() -> None:
    led = Ledger()
    for to, amount in [(b"\x01" * 5, 1), (bytes(20), 1), (KEYS[0].address, 0)]:
        assert not led.send(AUTH, "mint", to=to, amount=amount).receipts[0].ok
    assert led.supply() == sum(START)


def test_allowances() -> None:
    led = Ledger()
    spender = KEYS[1]
    rc = led.send(
        spender, "transfer_from", owner=KEYS[0].address, to=KEYS[2].address, amount=5
    ).receipts[0]
    assert not rc.ok and "allowance too small: 0 < 5" in rc.error
    assert led.send(KEYS[0], "approve", spender=spender.address, amount=8).receipts[0].ok
    assert (
        led.rt.query(
            led.st, "token", "allowance", {"owner": KEYS[0].address, "spender": spender.address}
        )
        == 8
    )
    assert (
        led.send(spender, "transfer_from", owner=KEYS[0].address, to=KEYS[2].address, amount=5)
        .receipts[0]
        .ok
    )
    assert (
        not led.send(spender, "transfer_from", owner=KEYS[0].address, to=KEYS[2].address, amount=4)
        .receipts[0]
        .ok
    )
    assert (
        led.send(spender, "transfer_from", owner=KEYS[0].address, to=KEYS[2].address, amount=3)
        .receipts[0]
        .ok
    )
    assert (
        led.rt.query(
            led.st, "token", "allowance", {"owner": KEYS[0].address, "spender": spender.address}
        )
        == 0
    )
    assert led.balances() == [992, 500, 8, 7]


def test_balance_of_short_address_is_refused() -> None:
    led = Ledger()
    with pytest.raises(Revert, match="20-byte"):
        led.rt.query(led.st, "token", "balance_of", {"account": b"\x01"})


def test_bad_genesis_balances() -> None:
    for balances, msg in [
        ({"zz": 1}, "not hex"),
        ({"01" * 19: 1}, "20-byte"),
        ({"00" * 20: 1}, "20-byte"),
        ({"01" * 20: -1}, "non-negative"),
        ({"01" * 20: MAX_AMOUNT, "02" * 20: 1}, "exceeds"),
    ]:
        g = make_genesis(1, balances=balances, contracts=builtin_contract_entries())
        with pytest.raises(GenesisError, match=msg):
            Runtime(g).genesis_writes()


def test_contract_address_is_documented_hash() -> None:
    import hashlib

    assert contract_address("token") == hashlib.sha256(b"contract/token").digest()[:20]


# Random sequences of transfers and mints, including failing ones, in multi-tx blocks.
op = st.tuples(
    st.sampled_from(["transfer", "transfer", "transfer", "mint"]),
    st.integers(0, 3),  # sender index
    st.integers(0, 3),  # recipient index
    st.one_of(st.integers(-3, 1_200), st.just(MAX_AMOUNT + 1)),
)


@given(st.lists(st.lists(op, min_size=1, max_size=6), min_size=1, max_size=6))
def test_supply_is_conserved(blocks: list[list[tuple[str, int, int, int]]]) -> None:
    led = Ledger()
    minted = 0
    for height, ops in enumerate(blocks, start=1):
        txs = []
        for kind, s, r, amount in ops:
            key = AUTH if kind == "mint" else KEYS[s]
            n = led.nonces.get(key.address, 0)
            led.nonces[key.address] = n + 1
            txs.append(
                Tx.create(
                    key,
                    chain_id=G.chain_id,
                    contract="token",
                    method=kind,
                    args={"to": KEYS[r].address, "amount": amount},
                    nonce=n,
                )
            )
        result = led.rt.execute_block(led.st, txs, height=height, time_ms=0)
        led.st.apply(result.writes)
        for (kind, _, _, amount), rc in zip(ops, result.receipts, strict=True):
            if kind == "mint" and rc.ok:
                minted += amount
        assert all(b >= 0 for b in led.balances())
        assert sum(led.balances()) == led.supply() == sum(START) + minted
