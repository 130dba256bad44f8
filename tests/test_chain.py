"""The chain: build, validate and commit blocks; refuse proposals that do not follow the rules."""

from __future__ import annotations

import dataclasses

import pytest

from accord.base import merkle
from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import CodeMismatch, GenesisError
from accord.base.genesis import ContractEntry
from accord.base.types import Block, Certificate, Tx, bitmap_from, vote_message
from accord.contracts.runtime import Runtime
from accord.ledger.chain import Chain, InvalidProposal
from accord.node.config import builtin_contract_entries
from accord.storage import Store

from .support.genesis import make_genesis

ALICE = AccountKey.from_name("alice")
BOB = AccountKey.from_name("bob")


def _genesis(chain_id: str = "accord-test"):  # type: ignore[no-untyped-def]
    return make_genesis(
        1,
        chain_id=chain_id,
        balances={ALICE.address.hex(): 1000},
        contracts=builtin_contract_entries(),
    )


def _transfer(key: AccountKey, nonce: int, amount: int = 10, chain_id: str = "accord-test") -> Tx:
    return Tx.create(
        key,
        chain_id=chain_id,
        contract="token",
        method="transfer",
        args={"to": BOB.address, "amount": amount},
        nonce=nonce,
    )


@pytest.fixture
def chain(tmp_path):  # type: ignore[no-untyped-def]
    g = _genesis()
    store = Store(tmp_path / "db", sync=False)
    yield Chain(g, store, Runtime(g))
    store.close()


def _certificate(chain: Chain, block: Block) -> Certificate:
    sk = bls.demo_secret("v0")
    msg = vote_message(chain.chain_id, block.height, block.header.round, 2, block.hash)
    return Certificate(
        block.height, block.header.round, 2, block.hash, bitmap_from([0], 1), bls.sign(sk, msg)
    )


def _balance(chain: Chain, who: AccountKey) -> int:
    with chain.store.snapshot() as snap:
        return chain.runtime.query(snap, "token", "balance_of", {"account": who.address})  # type: ignore[no-any-return]


def test_genesis_block_and_state(chain: Chain) -> None:
    assert chain.head()[0] == 0
    assert _balance(chain, ALICE) == 1000
    assert chain.head_header().state_root == chain.store.state_root()


def test_build_commit_and_receipts(chain: Chain) -> None:
    txs = [_transfer(ALICE, 0), _transfer(ALICE, 1, amount=5000), _transfer(ALICE, 2)]
    block = chain.build(txs, time_ms=10)
    receipts = chain.commit(block, _certificate(chain, block))
    assert [r.ok for r in receipts] == [True, False, True]
    assert receipts[1].error_code == "revert"
    assert _balance(chain, BOB) == 20
    assert chain.runtime.nonce_of(chain.store, ALICE.address) == 3
    assert chain.store.get_certificate(1) is not None
    # the header's tx root covers (tx, receipt) pairs: a proof of the failed tx verifies
    leaves = [merkle.tx_leaf(t.hash, r.hash) for t, r in zip(block.txs, receipts, strict=True)]
    merkle.verify_merkle_proof(
        block.header.tx_root, leaves[1], 1, 3, merkle.merkle_proof(leaves, 1)
    )


def test_a_build_can_be_stopped_part_way_and_leaves_nothing_behind(chain: Chain) -> None:
    from accord.contracts.runtime import INTERRUPT_EVERY, ExecutionInterrupted

    txs = [_transfer(ALICE, i, amount=1) for i in range(INTERRUPT_EVERY * 2 + 3)]
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return True

    with pytest.raises(ExecutionInterrupted):
        chain.build(txs, time_ms=10, interrupt=stop)
    assert len(asked) == 1  # asked once, after the first INTERRUPT_EVERY transactions
    assert chain.head()[0] == 0 and _balance(chain, BOB) == 0
    # Never told to stop, the build is the same block as without the hook.
    block = chain.build(txs, time_ms=10, interrupt=lambda: False)
    assert block.hash == chain.build(txs, time_ms=10).hash
    chain.commit(block, _certificate(chain, block))
    assert _balance(chain, BOB) == len(txs)


def test_build_drops_txs_that_would_invalidate_the_block(chain: Chain) -> None:
    replay = _transfer(ALICE, 0)
    chain.commit(chain.build([replay], time_ms=1), None)
    forged = dataclasses.replace(_transfer(ALICE, 2), signature=b"\x00" * 64)
    block = chain.build([replay, _transfer(ALICE, 1), forged, _transfer(ALICE, 5)], time_ms=2)
    assert [t.nonce for t in block.txs] == [1]


def test_blocks_are_cut_by_gas_and_heavier_ones_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    txs = [_transfer(ALICE, i, amount=1) for i in range(10)]
    roomy = Chain(_genesis(), Store(tmp_path / "roomy", sync=False), Runtime(_genesis()))
    whole = roomy.build(list(txs), time_ms=5)
    ex = roomy.execution(whole.hash)
    assert ex is not None and len(whole.txs) == 10
    per_tx = ex.gas_used // 10
    # A builder's budget cuts the block (a prefix of what it was given); the cut block is valid.
    cut = roomy.build(list(txs), time_ms=5, gas_budget=4 * per_tx + per_tx // 2)
    assert [t.nonce for t in cut.txs] == [0, 1, 2, 3]
    assert roomy.execution(cut.hash).gas_used <= 4 * per_tx + per_tx // 2  # type: ignore[union-attr]
    # A chain whose genesis allows less gas per block refuses the heavier block as a whole,
    # and builds within its limit even when no budget is given.
    small = make_genesis(
        1,
        chain_id="accord-test",
        balances={ALICE.address.hex(): 1000},
        contracts=builtin_contract_entries(),
        max_block_gas=5 * per_tx + 10,
    )
    strict = Chain(small, Store(tmp_path / "strict", sync=False), Runtime(small))
    assert strict.head() == roomy.head()  # same genesis block: only the rule differs
    with pytest.raises(InvalidProposal, match="past the limit"):
        strict.validate(whole)
    assert strict.head()[0] == 0
    strict.validate(cut)
    assert len(strict.build(list(txs), time_ms=5).txs) == 5


def test_validate_rejects_bad_proposals(chain: Chain, tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = chain.genesis
    other = Chain(g, Store(tmp_path / "other", sync=False), Runtime(g))
    good = other.build([_transfer(ALICE, 0)], time_ms=5)
    h = good.header
    cases = {
        "wrong state root": dataclasses.replace(h, state_root=b"\x01" * 32),
        "wrong tx root": dataclasses.replace(h, tx_root=b"\x01" * 32),
        "wrong parent": dataclasses.replace(h, parent_hash=b"\x01" * 32),
        "wrong height": dataclasses.replace(h, height=2),
        "wrong chain": dataclasses.replace(h, chain_id="other"),
        "tx count": dataclasses.replace(h, tx_count=2),
    }
    head_before = chain.head()
    for name, header in cases.items():
        with pytest.raises(InvalidProposal):
            chain.validate(Block(header, good.txs))
        assert chain.head() == head_before, name
    replayed = other.build([], time_ms=6)
    with pytest.raises(InvalidProposal):  # a block with a stale-nonce tx is invalid as a whole
        chain.validate(
            Block(
                dataclasses.replace(replayed.header, tx_count=2),
                (_transfer(ALICE, 0), _transfer(ALICE, 0)),
            )
        )
    chain.validate(good)  # the honest block from an identical chain is accepted
    chain.commit(good, None)
    assert chain.head()[1] == good.hash


def test_two_nodes_agree_byte_for_byte(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = _genesis()
    a = Chain(g, Store(tmp_path / "a", sync=False), Runtime(g))
    b = Chain(g, Store(tmp_path / "b", sync=False), Runtime(g))
    for i in range(3):
        block = a.build([_transfer(ALICE, i, amount=i + 1)], time_ms=i)
        ra = a.commit(block, None)
        rb = b.commit(block, None)
        assert [r.hash for r in ra] == [r.hash for r in rb]
    assert a.head() == b.head() and a.store.state_root() == b.store.state_root()


def test_store_of_another_genesis_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = _genesis()
    store = Store(tmp_path / "db", sync=False)
    Chain(g, store, Runtime(g))
    other = _genesis(chain_id="another-chain")
    with pytest.raises(GenesisError):
        Chain(other, store, Runtime(other))


def test_contract_code_mismatch_refuses_to_start() -> None:
    entries = [ContractEntry(name="token", code_hash="00" * 32)]
    g = make_genesis(1, contracts=entries)
    with pytest.raises(CodeMismatch, match="token"):
        Runtime(g)


def test_reopen_after_commits_keeps_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = _genesis()
    store = Store(tmp_path / "db", sync=False)
    chain = Chain(g, store, Runtime(g))
    block = chain.build([_transfer(ALICE, 0)], time_ms=1)
    chain.commit(block, None)
    store.close()
    store2 = Store(tmp_path / "db", sync=False)
    chain2 = Chain(g, store2, Runtime(g))
    assert chain2.head() == (1, block.hash)
    assert _balance(chain2, BOB) == 10
    store2.close()
