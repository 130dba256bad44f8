"""accord.ledger.validatorsets checkpoints: how a validator that joins by state sync learns the
set of the snapshot's height from genesis alone, and the lies it refuses (issue 19).

A governed chain on the real runtime and store, each block certified by the set in force at
its height (signed with the demo secrets of its members): validator v4 is added, then the
genesis validator v0 removed. The honest checkpoints an up-to-date node serves prove the set
of the head; a peer that hides a change, forges one, or certifies with a set that is not in
force is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.types import Block, Certificate, Receipt, Tx, bitmap_from, vote_message
from accord.consensus import PHASE_C
from accord.ledger.validatorsets import (
    Checkpoint,
    SetProofInvalid,
    ValidatorSets,
    check_checkpoint,
    checkpoint_heights,
)
from accord.node.sets import checkpoint_at, checkpoints, verify_with

from .support.gov import GovChain, governed_genesis, member_key, validator_info


def _certify(chain_id: str, block: Block, names: list[str], signers: list[int]) -> Certificate:
    """A commit certificate of ``block`` by ``signers`` (indices into ``names``, the set)."""
    msg = vote_message(chain_id, block.header.height, 0, PHASE_C, block.hash)
    sig = bls.aggregate([bls.sign(bls.demo_secret(names[i]), msg) for i in signers])
    return Certificate(
        block.header.height, 0, PHASE_C, block.hash, bitmap_from(signers, len(names)), sig
    )


class CertifiedChain(GovChain):
    """Every block committed with a certificate of the set in force at its height."""

    def block(self, *txs: Tx) -> list[Receipt]:
        height = self.height + 1
        b = self.chain.build(list(txs), time_ms=height * 1000)
        assert len(b.txs) == len(txs), "a transaction was left out of the block"
        names = [v.name for v in self.chain.scheduled(height).validators]
        cert = _certify(self.genesis.chain_id, b, names, list(range(len(names))))
        return self.chain.commit(b, cert)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertifiedChain, int, int]:
    """v4 added (in force from ``added``), v0 removed (from ``removed``), a few blocks on."""
    gov = CertifiedChain(Path(tmp_path_factory.mktemp("setproof")), governed_genesis(4))
    v4 = validator_info("v4", member_key(4))
    r = gov.propose(
        member_key(0),
        {
            "kind": "add_validator",
            "name": "v4",
            "bls_public_key": bytes.fromhex(v4.bls_public_key),
            "pop": bytes.fromhex(v4.pop),
            "account": member_key(4).address,
        },
    )
    for i in (1, 2):
        last = gov.call(member_key(i), "approve", proposal=r.result)
    assert last.result == "passed", last.error
    added = gov.height + 2
    gov.empty(4)
    r = gov.propose(member_key(1), {"kind": "remove_validator", "name": "v0"})
    for i in (2, 3, 4):  # five members now: four approvals pass
        last = gov.call(member_key(i), "approve", proposal=r.result)
    assert last.result == "passed", last.error
    removed = gov.height + 2
    gov.empty(5)
    assert [v.name for v in gov.chain.scheduled(gov.height).validators] == ["v1", "v2", "v3", "v4"]
    return gov, added, removed


def _walk(gov: GovChain, cps: list[Checkpoint]) -> ValidatorSets:
    sets = ValidatorSets(gov.genesis)
    verify = verify_with(gov.genesis.chain_id)
    after = 0
    for cp in cps:
        check_checkpoint(sets, gov.genesis.chain_id, after, cp, verify)
        after = cp.header.height
    return sets


def _at(gov: GovChain, heights: list[int]) -> list[Checkpoint]:
    """Checkpoints at ``heights`` with valid proofs against their own headers: what a peer
    that leaves out the others serves (it cannot prove anything else)."""
    out: list[Checkpoint] = []
    for h in heights:
        cp = checkpoint_at(gov.chain.store, h, sum(len(c.changes) for c in out))
        assert cp is not None
        out.append(cp)
    return out


def _keys(*names: str) -> list[bytes]:
    return [bls.public_key(bls.demo_secret(n)) for n in names]


def test_the_honest_checkpoints_prove_the_set_of_the_head(
    chain: tuple[CertifiedChain, int, int],
) -> None:
    gov, added, removed = chain
    head = gov.height
    cps = checkpoints(gov.chain, gov.chain.store, head, 0)
    assert [cp.header.height for cp in cps] == [added - 1, removed - 1, head]
    sets = _walk(gov, cps)
    assert sets.in_force(head) == _keys("v1", "v2", "v3", "v4")
    assert sets.in_force(added) == _keys("v0", "v1", "v2", "v3", "v4")
    assert sets.in_force(added - 1) == _keys("v0", "v1", "v2", "v3")
    # Asked from a checkpoint on, only what follows it is served.
    assert [
        cp.header.height for cp in checkpoints(gov.chain, gov.chain.store, head, added - 1)
    ] == [
        removed - 1,
        head,
    ]


def test_a_peer_that_hides_a_change_is_refused(chain: tuple[CertifiedChain, int, int]) -> None:
    """Without the checkpoint before the removal, the head's certificate (by v1-v4) is checked
    against the set of five; leaving out the addition too, against genesis's: it does not
    verify. And a certificate that does verify against the set the peer left in force (one
    its old members made after their term) comes with a state that shows the hidden change."""
    gov, added, removed = chain
    head_h = gov.height
    assert _walk(gov, _at(gov, [added - 1, removed - 1, head_h]))  # the honest ones
    for hidden in ([added - 1, head_h], [removed - 1, head_h], [head_h], [added, head_h]):
        with pytest.raises(SetProofInvalid):
            _walk(gov, _at(gov, hidden))
    cps = checkpoints(gov.chain, gov.chain.store, head_h, 0)
    # The head's block certified again by a quorum of genesis's set (the removed v0 with two
    # others, after its term), offered with no checkpoint before it: the count at the head
    # proves two changes in force there, so the old set's certificate is not believed.
    head = cps[2]
    block = gov.chain.store.get_block(head.header.height)
    old = _certify(gov.genesis.chain_id, block, ["v0", "v1", "v2", "v3"], [0, 1, 2])
    alone = _at(gov, [head_h])[0]
    with pytest.raises(SetProofInvalid, match="not shown before"):
        _walk(gov, [dataclasses.replace(alone, certificate=old)])


def test_a_forged_change_or_a_fake_set_is_refused(chain: tuple[CertifiedChain, int, int]) -> None:
    gov, added, removed = chain
    cps = checkpoints(gov.chain, gov.chain.store, gov.height, 0)
    # The addition rewritten to name the attacker's key instead of v4's: the proof fails.
    first = cps[0]
    entry = encoding.decode(first.changes[0].value)  # type: ignore[arg-type]
    assert isinstance(entry, list)
    evil = bls.public_key(bls.demo_secret("evil"))
    entry[1][-1]["bls_public_key"] = evil  # type: ignore[index]
    forged = dataclasses.replace(
        first.changes[0],
        value=encoding.encode(entry),  # type: ignore[arg-type]
    )
    with pytest.raises(SetProofInvalid, match="validator-set proof"):
        _walk(gov, [dataclasses.replace(first, changes=(forged,)), *cps[1:]])
    # A change left out of a checkpoint's list: the proved count disagrees.
    with pytest.raises(SetProofInvalid, match="change count"):
        _walk(gov, [dataclasses.replace(first, changes=()), *cps[1:]])
    # The head certified by a set of the attacker's own keys: not the set in force.
    head = cps[2]
    block = gov.chain.store.get_block(head.header.height)
    fake = _certify(gov.genesis.chain_id, block, ["evil0", "evil1", "evil2", "evil3"], [0, 1, 2])
    with pytest.raises(SetProofInvalid, match="does not verify"):
        _walk(gov, [*cps[:2], dataclasses.replace(head, certificate=fake)])
    # A checkpoint's certificate for another block than its header.
    other = dataclasses.replace(head.certificate, block_hash=bytes(32))
    with pytest.raises(SetProofInvalid, match="not for the checkpoint"):
        _walk(gov, [*cps[:2], dataclasses.replace(head, certificate=other)])
    # Nothing was learnt from a refused checkpoint: the honest walk still goes through.
    assert _walk(gov, cps).in_force(gov.height) == _keys("v1", "v2", "v3", "v4")


def test_checkpoints_sit_at_the_last_height_of_each_set_and_at_the_target() -> None:
    assert checkpoint_heights([7, 12, 40], 0, 30) == [6, 11, 30]
    assert checkpoint_heights([12, 7], 6, 30) == [11, 30]  # activations in any order
    assert checkpoint_heights([7], 0, 7) == [6, 7]
    assert checkpoint_heights([], 0, 5) == [5]
    assert checkpoint_heights([7], 30, 30) == []
