"""Whole blocks through the light client (``verify_block``): a node that hides, adds, alters or
reorders a transaction or receipt is caught against the certified tx root; an honest node next
to a liar is believed. The regulator's audit reads blocks this way when it trusts no node."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from accord.base import encoding
from accord.base.errors import NodeLied
from accord.base.types import Receipt
from accord.light import LightClient

from .support import light
from .support.light import Doc, Ledger, Mutator, Proxy

# The honest single-validator ledger and the tampering proxy of the lying-node tests.
ledger = light.ledger
proxy = light.proxy


def on_block(height: int, fn: Callable[[Doc], None]) -> Mutator:
    def mutate(path: str, doc: Doc) -> Doc:
        if path == f"/v1/blocks/{height}":
            fn(doc)
        return doc

    return mutate


def _receipt_gas(d: Doc) -> None:
    r = Receipt.from_obj(encoding.decode(bytes.fromhex(d["receipts"][1]["raw"])))
    d["receipts"][1]["raw"] = encoding.encode(dataclasses.replace(r, gas_used=1).to_obj()).hex()


def _swap(d: Doc) -> None:
    d["txs"][0], d["txs"][1] = d["txs"][1], d["txs"][0]
    d["receipts"][0], d["receipts"][1] = d["receipts"][1], d["receipts"][0]


def _hide_last(d: Doc) -> None:
    d["receipts"].pop()


def _other_header(ledger: Ledger) -> Callable[[Doc], None]:
    def fn(d: Doc) -> None:
        d["header"]["raw"] = ledger.served.node.store.get_header(2).encode().hex()

    return fn


CASES: list[tuple[str, Callable[[Ledger], Mutator], str]] = [
    ("a receipt altered", lambda lg: on_block(1, _receipt_gas), "block_tx_root"),
    ("two transactions swapped", lambda lg: on_block(1, _swap), "block_body"),
    ("a receipt hidden", lambda lg: on_block(1, _hide_last), "block_receipts"),
    (
        "a transfer hidden with its receipt",
        lambda lg: on_block(1, lambda d: (d["txs"].pop(), d["receipts"].pop())),
        "block_body",
    ),
    ("another block's header", lambda lg: on_block(1, _other_header(lg)), "block_header"),
]


@pytest.mark.parametrize(("name", "make", "check"), CASES, ids=[c[0] for c in CASES])
def test_every_block_tampering_is_caught(
    ledger: Ledger,
    proxy: Proxy,
    tmp_path: Path,
    name: str,
    make: Callable[[Ledger], Mutator],
    check: str,
) -> None:
    proxy.mutate = make(ledger)
    try:
        with LightClient(ledger.genesis, [proxy.url], store=tmp_path / "l.json") as lc:
            lc.sync()
            with pytest.raises(NodeLied) as info:
                lc.verify_block(1)
            assert info.value.check == check, info.value.message
    finally:
        proxy.mutate = lambda p, d: d


def test_verified_block_equals_the_stored_one_and_skips_a_liar(
    ledger: Ledger, proxy: Proxy, tmp_path: Path
) -> None:
    proxy.mutate = on_block(1, _receipt_gas)
    try:
        with LightClient(
            ledger.genesis, [proxy.url, ledger.served.url], store=tmp_path / "l.json"
        ) as lc:
            lc.sync()
            vb = lc.verify_block(1)
            store = ledger.served.node.store
            assert vb.block == store.get_block(1) and list(vb.receipts) == store.get_receipts(1)
            assert vb.node == ledger.served.url and len(vb.block.txs) == 3
            assert [(f.node, f.check) for f in lc.faults] == [(proxy.url, "block_tx_root")]
    finally:
        proxy.mutate = lambda p, d: d


def test_a_forgotten_light_client_stops_its_thread(ledger: Ledger) -> None:
    """Not closing a blocking light client must not leak its loop thread."""
    import gc
    import threading

    def alive() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "accord-light")

    before = alive()
    lc = LightClient(ledger.genesis, [ledger.served.url])
    lc.sync()
    assert alive() == before + 1
    del lc
    gc.collect()
    assert alive() == before
    with LightClient(ledger.genesis, [ledger.served.url]) as lc2:
        lc2.sync()
    lc2.close()  # closing twice is harmless
    assert alive() == before
