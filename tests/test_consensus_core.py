"""Unit tests of the sans-I/O Gosig core: genesis checks, ordering of persist and send,
determinism, strict decoding, certificates and aggregates."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.errors import GenesisError, InvalidSignature, ValidationError
from accord.base.types import Block, Certificate, Header, vote_message
from accord.consensus import (
    PHASE_C,
    PHASE_P,
    SAFETY_KEY,
    Aggregate,
    BlockBuilt,
    BlockValidated,
    BlsCrypto,
    BlsSigner,
    Broadcast,
    BuildBlock,
    Commit,
    Core,
    CostModelCrypto,
    MessageReceived,
    Params,
    Persist,
    Proposal,
    SafetyState,
    Tick,
    Ticket,
    ValidateBlock,
    certificate_signers,
    decode_message,
    verify_certificate,
)

from .support.genesis import make_genesis

GENESIS_HASH = hashlib.sha256(b"g").digest()


def _block_for(a: BuildBlock, chain_id: str) -> Block:
    h = Header(
        chain_id,
        a.height,
        a.round,
        a.parent_hash,
        bytes(32),
        bytes(32),
        0,
        a.proposer_index,
        0,
        a.sortition,
    )
    return Block(h, ())


def _drive_single(core: Core, chain_id: str, until_ms: int, step: int = 10) -> list[object]:
    """Drive a one-validator core through time, answering the application actions."""
    log: list[object] = []
    t = 0
    while t <= until_ms:
        queue: list[object] = [Tick(t)]
        while queue:
            for a in core.handle(queue.pop(0)):  # type: ignore[arg-type]
                log.append(a)
                if isinstance(a, BuildBlock):
                    queue.append(BlockBuilt(_block_for(a, chain_id)))
                elif isinstance(a, ValidateBlock):
                    raise AssertionError("a single validator never validates its own block")
        t += step
    return log


def test_genesis_with_bad_proof_of_possession_is_refused() -> None:
    g = make_genesis(4)
    bad = g.validators[1].model_copy(update={"pop": g.validators[2].pop})
    g2 = g.model_copy(update={"validators": [g.validators[0], bad, *g.validators[2:]]})
    with pytest.raises(GenesisError):
        Core.from_genesis(g2, BlsSigner(0, bls.demo_secret("v0")), head=(0, GENESIS_HASH))
    with pytest.raises(GenesisError):
        BlsCrypto(g2.validator_keys(), pops=[bytes.fromhex(v.pop) for v in g2.validators])
    with pytest.raises(GenesisError):
        BlsCrypto(g.validator_keys(), pops=[])  # a missing proof is refused too


def test_single_validator_commits_and_persists_before_sending() -> None:
    g = make_genesis(1, round_ms=200, stage2_ms=100)
    core = Core.from_genesis(g, BlsSigner(0, bls.demo_secret("v0")), head=(0, GENESIS_HASH))
    log = _drive_single(core, g.chain_id, 1000)
    commits = [a for a in log if isinstance(a, Commit)]
    assert [c.block.height for c in commits] == [1, 2, 3, 4, 5]
    for c in commits:
        verify_certificate(g, g.chain_id, c.certificate, g.quorum)
        assert certificate_signers(c.certificate, 1) == [0]
    # Rule 2: every own vote that leaves is preceded by a Persist holding that vote.
    persisted: SafetyState | None = None
    for a in log:
        if isinstance(a, Persist):
            assert a.key == SAFETY_KEY
            persisted = SafetyState.decode(a.value, 1)
        elif isinstance(a, Broadcast):
            msg = decode_message(a.payload, 1, 1 << 20)
            if isinstance(msg, Aggregate) and msg.counts[0]:
                assert persisted is not None
                if msg.phase == PHASE_P:
                    assert (persisted.p_round, persisted.p_hash) == (msg.round, msg.block_hash)
                else:
                    assert persisted.c_round >= msg.round


def test_persisted_lock_is_dropped_once_its_height_commits() -> None:
    """A lock binds only at its height: after the commit the next safety states no longer
    carry the locked block (they were rewritten with it on every vote). The encoding with the
    block's cached bytes is the generic canonical encoding."""
    g = make_genesis(1, round_ms=200, stage2_ms=100)
    core = Core.from_genesis(g, BlsSigner(0, bls.demo_secret("v0")), head=(0, GENESIS_HASH))
    log = _drive_single(core, g.chain_id, 1000)
    height = 1
    saw_lock = 0
    for a in log:
        if isinstance(a, Commit):
            height = a.block.height + 1
        elif isinstance(a, Persist):
            st = SafetyState.decode(a.value, 1)
            assert a.value == encoding.encode(
                [
                    st.p_round,
                    st.p_height,
                    st.p_hash,
                    st.c_round,
                    st.c_height,
                    st.c_hash,
                    None if st.lock is None else st.lock.to_obj(),
                    None if st.lock_block is None else st.lock_block.to_obj(),
                ]
            )
            if st.lock is not None:
                saw_lock += 1
                assert st.lock.height == height and st.lock_block is not None
                assert st.lock_block.hash == st.lock.block_hash
    assert saw_lock >= 5
    assert core._safety.lock is None or core._safety.lock.height == core.status().height


def test_same_events_same_actions() -> None:
    g = make_genesis(1, round_ms=200, stage2_ms=100)

    def run() -> list[object]:
        core = Core.from_genesis(g, BlsSigner(0, bls.demo_secret("v0")), head=(0, GENESIS_HASH))
        return _drive_single(core, g.chain_id, 600)

    assert run() == run()


def test_restart_never_signs_a_second_prepare_in_the_same_round() -> None:
    n = 4
    crypto = CostModelCrypto(n)
    params = Params(chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=4.0)
    safety = SafetyState(p_round=0, p_height=1, p_hash=b"\x01" * 32)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH), safety=safety)
    out: list[object] = []
    queue: list[object] = [Tick(10)]
    while queue:
        for a in core.handle(queue.pop(0)):  # type: ignore[arg-type]
            out.append(a)
            if isinstance(a, BuildBlock):
                queue.append(BlockBuilt(_block_for(a, "c")))
    out += core.handle(Tick(60))  # stage II of round 0: already voted before the crash
    assert not any(isinstance(a, Persist) for a in out)
    assert core.status().p_hash == b"\x01" * 32


def test_garbage_and_bad_tickets_change_nothing() -> None:
    n = 4
    crypto = CostModelCrypto(n)
    params = Params(chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=0.5)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    core.handle(Tick(1))
    for junk in (b"", b"\x00", b"\x97\x02", bytes(range(256)), b"\x91\x05"):
        assert core.handle(MessageReceived(1, junk)) == []
    assert core.status().stats["garbage"] == 5
    # A proposal whose ticket is a valid signature on another round's message.
    from accord.consensus import sortition_message

    ticket = crypto.signer(1).sign(sortition_message("c", 1, 9, GENESIS_HASH))
    h = Header("c", 1, 0, GENESIS_HASH, bytes(32), bytes(32), 0, 1, 0, ticket)
    prop = Proposal(0, 1, ticket, Block(h, ()))
    assert core.handle(MessageReceived(1, prop.encode())) == []
    assert core.status().stats["bad_proposal"] == 1
    # A vote aggregate claiming everyone signed, with one validator's signature.
    sig = crypto.signer(1).sign(vote_message("c", 1, 0, PHASE_P, b"\x02" * 32))
    agg = Aggregate(1, 0, PHASE_P, b"\x02" * 32, np.ones(n, dtype=np.uint16), sig)
    assert core.handle(MessageReceived(1, agg.encode())) == []
    assert core.status().stats["bad_signature"] == 1
    assert core._safety == SafetyState()


def test_tickets_first_and_bad_tickets() -> None:
    """A leader announces its ticket and builds only after ``ticket_wait_ms``; a better valid
    ticket holds its build back until the fallback time; forged, stale and malformed tickets
    are counted and change nothing."""
    from accord.consensus import sortition_message, sortition_value

    n = 4
    crypto = CostModelCrypto(n)
    params = Params(
        chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=4.0, ticket_wait_ms=20
    )

    def fresh() -> tuple[Core, list[object]]:
        core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
        return core, core.handle(Tick(1))

    core, out = fresh()
    sent = [decode_message(a.payload, n, 1 << 20) for a in out if isinstance(a, Broadcast)]
    own = [t for t in sent if isinstance(t, Ticket)]
    assert len(own) == 1 and own[0].proposer == 0 and (own[0].height, own[0].round) == (1, 0)
    assert not any(isinstance(a, BuildBlock) for a in out)
    mine = sortition_value(own[0].sortition)

    def ticket(i: int, height: int = 1, rnd: int = 0) -> Ticket:
        return Ticket(
            height, rnd, i, crypto.signer(i).sign(sortition_message("c", height, rnd, GENESIS_HASH))
        )

    k = 0
    while sortition_value(fake := hashlib.sha256(b"forged%d" % k).digest() * 3) >= mine:
        k += 1
    forged = Ticket(1, 0, 1, fake)  # better than ours, but not validator 1's signature
    st = core.status().stats
    before = st["bad_signature"], st["stale"], st["garbage"]
    core.handle(MessageReceived(1, forged.encode()))
    core.handle(MessageReceived(2, ticket(2, height=5).encode()))
    core.handle(
        MessageReceived(3, b"\x95\x03\x01\x00\x09" + b"\xc4\x60" + bytes(96))
    )  # proposer 9 of 4
    st = core.status().stats
    assert (st["bad_signature"], st["stale"], st["garbage"]) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 1,
    )
    assert core._tickets == {0: mine}
    assert any(isinstance(a, BuildBlock) for a in core.handle(Tick(21)))  # nothing held us back

    others = sorted((sortition_value(ticket(i).sortition), i) for i in (1, 2, 3))
    better = [i for v, i in others if v < mine]
    worse = [i for v, i in others if v > mine]
    if worse:  # a worse ticket changes nothing: we build when the wait ends
        core, _ = fresh()
        core.handle(MessageReceived(worse[0], ticket(worse[0]).encode()))
        assert any(isinstance(a, BuildBlock) for a in core.handle(Tick(21)))
    if better:  # a better one holds us back until the fallback time, then we build
        core, _ = fresh()
        core.handle(MessageReceived(better[0], ticket(better[0]).encode()))
        assert not any(isinstance(a, BuildBlock) for a in core.handle(Tick(21)))
        fallback = 21 + (50 - 21) // 2  # half of the rest of stage I (no late proposals seen)
        assert core.next_wakeup_ms() <= fallback
        assert not any(isinstance(a, BuildBlock) for a in core.handle(Tick(fallback - 1)))
        assert any(isinstance(a, BuildBlock) for a in core.handle(Tick(fallback)))


def test_validation_waits_for_an_announced_better_leader() -> None:
    """A proposal from a worse leader is not validated while a better leader of the round has
    announced its ticket: the better proposal is validated when it arrives; if it never does,
    the worse one is validated when stage II starts."""
    from accord.consensus import sortition_message, sortition_value

    n = 4
    crypto = CostModelCrypto(n)
    params = Params(
        chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=4.0, ticket_wait_ms=20
    )
    sigs = {i: crypto.signer(i).sign(sortition_message("c", 1, 0, GENESIS_HASH)) for i in range(n)}
    order = sorted(range(n), key=lambda i: sortition_value(sigs[i]))
    best, worse, me = order[0], order[1], order[-1]

    def proposal(i: int) -> Proposal:
        h = Header("c", 1, 0, GENESIS_HASH, bytes(32), bytes(32), 0, i, 0, sigs[i])
        return Proposal(0, i, sigs[i], Block(h, ()))

    def validated(out: list[object]) -> list[int]:
        return [a.block.header.proposer for a in out if isinstance(a, ValidateBlock)]

    for better_arrives in (True, False):
        core = Core(params, crypto.signer(me), crypto, head=(0, GENESIS_HASH))
        core.handle(Tick(1))
        core.handle(MessageReceived(best, Ticket(1, 0, best, sigs[best]).encode()))
        assert validated(core.handle(MessageReceived(worse, proposal(worse).encode()))) == []
        assert validated(core.handle(Tick(30))) == []
        if better_arrives:
            assert validated(core.handle(MessageReceived(best, proposal(best).encode()))) == [best]
            assert validated(core.handle(Tick(50))) == []  # the worse one is not needed
        else:
            assert validated(core.handle(Tick(50))) == [worse]  # stage II: validate what we hold
        assert core.status().stats["validation_held"] == 1
        # The best ticket held for the round (white-box: drivers no longer poll it; the core
        # emits CancelBuild, see test_consensus_cancel_build.py).
        held = [best, worse] if better_arrives else [worse]
        best_held = core._best(0)
        assert best_held is not None
        assert best_held.value == min(sortition_value(sigs[i]) for i in held)
        assert core._best(1) is None


def _p_votes(out: list[object], n: int) -> list[tuple[int, bytes]]:
    """(round, block hash) of the P votes this batch of actions reveals (resends included)."""
    votes = []
    for a in out:
        if isinstance(a, Broadcast):
            msg = decode_message(a.payload, n, 1 << 20)
            if isinstance(msg, Aggregate) and msg.phase == PHASE_P:
                votes.append((msg.round, msg.block_hash))
    return votes


def test_a_block_validated_after_its_round_still_gets_a_late_prepare() -> None:
    """A block that takes longer to validate than its round is prepared in the next round,
    unless the validator already prepared that round (votes stay monotone); a leader's build
    that ends up to LATE_ROUNDS rounds late is still proposed, and a later one is not."""
    from accord.consensus import sortition_message, sortition_value

    n = 4
    crypto = CostModelCrypto(n)
    params = Params(
        chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=4.0, ticket_wait_ms=0
    )

    def proposal(i: int, r: int) -> Proposal:
        sig = crypto.signer(i).sign(sortition_message("c", 1, r, GENESIS_HASH))
        h = Header("c", 1, r, GENESIS_HASH, bytes(32), bytes(32), 0, i, 0, sig)
        return Proposal(r, i, sig, Block(h, ()))

    sig0 = {i: crypto.signer(i).sign(sortition_message("c", 1, 0, GENESIS_HASH)) for i in range(n)}
    me = max(range(n), key=lambda i: sortition_value(sig0[i]))  # the worst ticket: it leads last
    leader = min(range(n), key=lambda i: sortition_value(sig0[i]))
    for already_voted_next_round in (False, True):
        core = Core(params, crypto.signer(me), crypto, head=(0, GENESIS_HASH))
        core.handle(Tick(1))
        late = proposal(leader, 0)
        out = core.handle(MessageReceived(leader, late.encode()))
        assert any(isinstance(a, ValidateBlock) for a in out)
        assert _p_votes(core.handle(Tick(60)), n) == []  # stage II of round 0: still validating
        core.handle(Tick(110))  # round 1 starts; the verdict has not come
        if already_voted_next_round:
            nxt = proposal(leader, 1)
            core.handle(MessageReceived(leader, nxt.encode()))
            core.handle(BlockValidated(nxt.block.hash, True))
            assert set(_p_votes(core.handle(Tick(160)), n)) == {
                (1, nxt.block.hash)
            }  # (and its resend)
        out = core.handle(BlockValidated(late.block.hash, True))
        if already_voted_next_round:
            assert _p_votes(out, n) == []  # P in round 1 already: round 0 is closed for good
        else:
            assert _p_votes(out, n) == [(0, late.block.hash)]
            assert core.status().stats["late_prepare"] == 1
            assert isinstance(out[0], Persist)  # persisted before it is revealed (rule 2)
    # A leader whose build ends up to LATE_ROUNDS rounds late still proposes it; later, not.
    from accord.consensus.state import LATE_ROUNDS

    for rounds_late, proposed in ((1, True), (LATE_ROUNDS, True), (LATE_ROUNDS + 1, False)):
        core = Core(params, crypto.signer(leader), crypto, head=(0, GENESIS_HASH))
        build = [a for a in core.handle(Tick(1)) if isinstance(a, BuildBlock)]
        assert len(build) == 1 and build[0].round == 0
        core.handle(Tick(1 + 100 * rounds_late))
        out = core.handle(BlockBuilt(_block_for(build[0], "c")))
        assert (
            any(
                isinstance(a, Broadcast)
                and isinstance(decode_message(a.payload, n, 1 << 20), Proposal)
                for a in out
            )
            is proposed
        )


def test_fallback_build_waits_longer_when_proposals_arrive_late() -> None:
    """A leader that stood back for a better ticket builds at half of the rest of stage I, or
    as late as fresh proposals have lately been arriving, but never past three quarters."""
    from accord.consensus import sortition_message

    n = 4
    crypto = CostModelCrypto(n)
    params = Params(
        chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=4.0, ticket_wait_ms=20
    )
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    core.handle(Tick(1))
    until = 21
    assert core._fallback_ms(0, until) == 21 + 29 // 2  # nothing seen yet: half-way
    sig = crypto.signer(1).sign(sortition_message("c", 1, 0, GENESIS_HASH))
    h = Header("c", 1, 0, GENESIS_HASH, bytes(32), bytes(32), 0, 1, 0, sig)
    core.handle(Tick(40))
    core.handle(MessageReceived(1, Proposal(0, 1, sig, Block(h, ())).encode()))
    assert core._lag_ms == 40  # the proposal came 40 ms into its round
    assert core._fallback_ms(0, until) == 40
    core._note_proposal_lag(70)
    assert core._fallback_ms(0, until) == 21 + 3 * 29 // 4  # capped at three quarters
    for _ in range(40):  # early proposals bring it back down, slowly
        core._note_proposal_lag(5)
    assert core._fallback_ms(0, until) == 21 + 29 // 2


def _bls_cert(n: int, signers: list[int], block_hash: bytes, phase: int = PHASE_C) -> Certificate:
    from accord.base.types import bitmap_from

    msg = vote_message("accord-test", 3, 2, phase, block_hash)
    sig = bls.aggregate([bls.sign(bls.demo_secret(f"v{i}"), msg) for i in signers])
    return Certificate(3, 2, phase, block_hash, bitmap_from(signers, n), sig)


def test_verify_certificate_accepts_good_and_rejects_tampered() -> None:
    g = make_genesis(4)
    bh = b"\x07" * 32
    good = _bls_cert(4, [0, 1, 3], bh)
    verify_certificate(g, g.chain_id, good, g.quorum)
    verify_certificate(g.validator_keys(), g.chain_id, good, g.quorum)
    cases = [
        (Certificate(3, 2, PHASE_C, b"\x08" * 32, good.signers, good.signature), InvalidSignature),
        (Certificate(3, 3, PHASE_C, bh, good.signers, good.signature), InvalidSignature),
        (Certificate(3, 2, PHASE_C, bh, bytes([0b1111]), good.signature), InvalidSignature),
        (Certificate(3, 2, PHASE_C, bh, bytes([0b0011]), good.signature), ValidationError),
        (Certificate(3, 2, PHASE_P, bh, good.signers, good.signature), ValidationError),
        (Certificate(3, 2, PHASE_C, bh, b"\x0b\x00", good.signature), ValidationError),
        (
            Certificate(3, 2, PHASE_C, bh, good.signers, good.signature[:-1] + b"\x00"),
            InvalidSignature,
        ),
        (Certificate(3, 2, PHASE_C, bh, good.signers, b"\x00" * 96), InvalidSignature),
        (_bls_cert(4, [0, 1, 3], bh, PHASE_P), ValidationError),
    ]
    for cert, err in cases:
        with pytest.raises(err):
            verify_certificate(g, g.chain_id, cert, g.quorum)
    with pytest.raises(InvalidSignature):
        verify_certificate(g, "another-chain", good, g.quorum)


def test_weighted_certificate_form_verifies_with_real_bls() -> None:
    g = make_genesis(4)
    bh = b"\x05" * 32
    msg = vote_message(g.chain_id, 3, 2, PHASE_C, bh)
    sigs = [bls.sign(bls.demo_secret(f"v{i}"), msg) for i in range(4)]
    crypto = BlsCrypto(g.validator_keys(), checked=True)
    a = Aggregate.single(4, 3, 2, PHASE_C, bh, 0, sigs[0])
    for i in (1, 2):
        a.merge(Aggregate.single(4, 3, 2, PHASE_C, bh, i, sigs[i]), crypto)
    b = Aggregate.single(4, 3, 2, PHASE_C, bh, 0, sigs[0])
    b.merge(Aggregate.single(4, 3, 2, PHASE_C, bh, 3, sigs[3]), crypto)
    assert a.merge(b, crypto)  # overlapping: signer 0 is now counted twice
    assert a.counts.tolist() == [2, 1, 1, 1] and a.verify(crypto, g.chain_id)
    weighted = a.to_certificate({}, crypto, g.quorum)
    assert len(weighted.signers) == 8
    verify_certificate(g, g.chain_id, weighted, g.quorum)
    reduced = a.to_certificate(dict(enumerate(sigs)), crypto, g.quorum)
    assert certificate_signers(reduced, 4) == [0, 1, 2, 3] and len(reduced.signers) == 1
    verify_certificate(g, g.chain_id, reduced, g.quorum)
    forged = Certificate(
        3, 2, PHASE_C, bh, np.array([1, 1, 1, 1], dtype="<u2").tobytes(), a.signature
    )
    with pytest.raises(InvalidSignature):
        verify_certificate(g, g.chain_id, forged, g.quorum)


@settings(max_examples=60)
@given(st.lists(st.sets(st.integers(0, 15), min_size=1), min_size=1, max_size=12))
def test_gossip_merges_stay_verifiable_and_cover_the_union(parts: list[set[int]]) -> None:
    n = 16
    crypto = CostModelCrypto(n)
    bh = b"\x09" * 32
    msg = vote_message("c", 1, 0, PHASE_P, bh)
    sig = {i: crypto.signer(i).sign(msg) for i in range(n)}
    aggs = []
    for part in parts:
        idx = sorted(part)
        a = Aggregate.single(n, 1, 0, PHASE_P, bh, idx[0], sig[idx[0]])
        for i in idx[1:]:
            a.merge(Aggregate.single(n, 1, 0, PHASE_P, bh, i, sig[i]), crypto)
        aggs.append(a)
    acc = aggs[0].copy()
    for a in aggs[1:]:
        acc.merge(a, crypto)
        acc.merge(acc.copy(), crypto)  # merging a subset is a no-op
    assert set(np.nonzero(acc.counts)[0].tolist()) == set().union(*parts)
    assert acc.verify(crypto, "c")
    decoded = decode_message(acc.encode(), n, 1 << 20)
    assert isinstance(decoded, Aggregate) and decoded.verify(crypto, "c")
    tampered = Aggregate(1, 0, PHASE_P, bh, acc.counts.copy(), acc.signature)
    tampered.counts[int(np.argmax(acc.counts == 0)) if (acc.counts == 0).any() else 0] += 1
    assert not tampered.verify(crypto, "c")


def test_votes_for_many_blocks_from_one_validator_are_capped() -> None:
    """An equivocating validator gets one block per (height, round, phase) slot, and its junk
    never pushes out an honest singleton (the old cap of 16 blocks per slot dropped every
    aggregate of <= f signers once 16 junk blocks were in: one Byzantine validator voting
    ahead cut commits to a fraction)."""
    n = 4
    crypto = CostModelCrypto(n)
    params = Params(chain_id="c", n=n, round_ms=100, stage2_ms=50, expected_leaders=0.01)
    core = Core(params, crypto.signer(0), crypto, head=(0, GENESIS_HASH))
    core.handle(Tick(1))
    for rnd in (0, 1, 2):  # the current round and rounds ahead
        for k in range(40):
            bh = hashlib.sha256(k.to_bytes(2, "big")).digest()
            sig = crypto.signer(1).sign(vote_message("c", 1, rnd, PHASE_P, bh))
            core.handle(
                MessageReceived(1, Aggregate.single(n, 1, rnd, PHASE_P, bh, 1, sig).encode())
            )
    assert len(core._aggs) == 3
    assert core.status().stats["dropped_votes"] == 3 * 39
    # Honest singletons for a block of their own are still counted, in every flooded slot:
    # with validator 0's own vote they make a quorum.
    good = hashlib.sha256(b"good").digest()
    for rnd in (0, 1, 2):
        for i in (2, 3):
            sig = crypto.signer(i).sign(vote_message("c", 1, rnd, PHASE_P, good))
            core.handle(
                MessageReceived(i, Aggregate.single(n, 1, rnd, PHASE_P, good, i, sig).encode())
            )
        assert core._aggs[(1, rnd, PHASE_P, good)].signers == 2
    assert core.status().stats["dropped_votes"] == 3 * 39
