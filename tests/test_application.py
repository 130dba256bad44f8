"""The line between consensus and the application: the chain implements the Application
protocol the node drives (every method, with the protocol's parameters), and a query runs at
the head's height and time (it ran at height 0 and time 0: a credit score valid for its epoch
answered as at 1970)."""

from __future__ import annotations

import inspect
from pathlib import Path

from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import ContractEntry
from accord.base.types import Tx
from accord.contracts import BUILTINS
from accord.contracts.base import Context, Contract, method
from accord.contracts.runtime import Runtime, code_hash
from accord.ledger.application import Application
from accord.ledger.chain import Chain
from accord.node.config import builtin_contract_entries
from accord.storage import Store

from .support.genesis import make_genesis

ALICE = AccountKey.from_name("app-alice")


class Clock(Contract):
    name = "clock"

    @method(readonly=True)
    def now(self, ctx: Context) -> list[int]:
        return [ctx.height, ctx.time_ms]


def _protocol_methods() -> list[str]:
    return [
        n
        for n, v in vars(Application).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, property))
    ]


def test_the_chain_implements_every_method_of_the_protocol(tmp_path: Path) -> None:
    g = make_genesis(1, contracts=builtin_contract_entries())
    chain = Chain(g, Store(tmp_path / "db", sync=False), Runtime(g))
    assert isinstance(chain, Application)
    for name in _protocol_methods():
        want = getattr(Application, name)
        have = getattr(Chain, name)
        if isinstance(want, property):
            assert isinstance(have, property), name
            continue
        wp = inspect.signature(want).parameters
        hp = inspect.signature(have).parameters
        assert list(wp) == list(hp), (name, list(wp), list(hp))
        for p in wp:
            assert wp[p].kind == hp[p].kind, (name, p)
            assert (wp[p].default is inspect.Parameter.empty) == (
                hp[p].default is inspect.Parameter.empty
            ), (name, p)


def test_a_query_runs_at_the_heads_height_and_time(tmp_path: Path) -> None:
    entries = [
        *builtin_contract_entries(),
        ContractEntry(name="clock", code_hash=code_hash(Clock).hex()),
    ]
    g = make_genesis(1, balances={ALICE.address.hex(): 10}, contracts=entries)
    runtime = Runtime(g, {**BUILTINS, "clock": Clock})
    chain = Chain(g, Store(tmp_path / "db", sync=False), runtime)
    t = g.genesis_time_ms + 5 * g.consensus.round_ms
    tx = Tx.create(
        ALICE,
        chain_id=g.chain_id,
        contract="token",
        method="transfer",
        args={"to": bytes(20), "amount": 1},
        nonce=0,
    )
    block = chain.build([tx], round=5, time_ms=t)
    chain.commit(block, None)
    assert chain.query("clock", "now", {}) == [1, t]
