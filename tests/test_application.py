"""The line between consensus and the application: the chain implements the Application
protocol the node drives (every method, with the protocol's parameters), and a query runs at
the head's height and time (it ran at height 0 and time 0: a credit score valid for its epoch
answered as at 1970)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

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


def test_a_ledger_that_is_not_a_chain_implements_the_whole_protocol() -> None:
    """The notary of tests/support/notary.py (which the state sync tests run nodes on) is held
    to the same signatures as the Chain, so it is a second implementation, not a lookalike."""
    from .support.notary import Notary

    for name in _protocol_methods():
        want, have = getattr(Application, name), getattr(Notary, name)
        if isinstance(want, property):
            assert isinstance(have, property), name
            continue
        assert list(inspect.signature(want).parameters) == list(
            inspect.signature(have).parameters
        ), name


def _certified_chain(tmp_path: Path, name: str) -> tuple[Chain, list[Tx]]:
    from accord.base.crypto import bls
    from accord.benches.light import certify

    g = make_genesis(1, balances={ALICE.address.hex(): 100}, contracts=builtin_contract_entries())
    chain = Chain(g, Store(tmp_path / name, sync=False), Runtime(g))
    txs = []
    for nonce in range(3):
        tx = Tx.create(
            ALICE,
            chain_id=g.chain_id,
            contract="token",
            method="transfer",
            args={"to": bytes(20), "amount": 1 + nonce},
            nonce=nonce,
        )
        block = chain.build([tx], round=nonce, time_ms=g.genesis_time_ms + nonce)
        chain.commit(block, certify(block.header, [bls.demo_secret("v0")], [0], round=nonce))
        txs.append(tx)
    return chain, txs


def test_the_chain_exports_a_snapshot_another_chain_imports(tmp_path: Path) -> None:
    """Through the protocol's calls only: the importer ends at the exporter's head with its
    state (queries and nonces answer as there), its base at the snapshot; an import abandoned
    part-way leaves no head until genesis is recommitted, which a chain with blocks refuses."""
    from accord.base.errors import AccordError, Unavailable
    from accord.storage import snapshot

    source, _ = _certified_chain(tmp_path, "source")
    app: Application = source
    manifest = app.export_snapshot(tmp_path / "snaps")
    assert manifest.height == 3 and snapshot.available(tmp_path / "snaps") == [3]

    g = source.genesis
    target: Application = Chain(g, Store(tmp_path / "target", sync=False), Runtime(g))
    chunks = [
        snapshot.verify_chunk(cell, snapshot.read_chunk(tmp_path / "snaps", 3, i) or b"", 3)
        for i, cell in enumerate(manifest.cells)
    ]
    abandoned = target.import_snapshot(manifest)
    abandoned.begin()
    abandoned.add(0, chunks[0])
    abandoned.abort()
    with pytest.raises(Unavailable):
        target.head()
    target.recommit_genesis()
    assert target.head()[0] == 0
    with pytest.raises(AccordError):
        target.recommit_genesis()  # never over blocks

    imp = target.import_snapshot(manifest)
    imp.begin()
    for i, chunk in reversed(list(enumerate(chunks))):
        imp.add(i, chunk)
    imp.finish()
    assert target.head() == source.head() and target.base() == 3
    assert target.head_header().state_root == source.head_header().state_root
    assert target.nonce_of(ALICE.address) == 3
    args = {"account": ALICE.address}
    assert target.query("token", "balance_of", args) == source.query("token", "balance_of", args)
