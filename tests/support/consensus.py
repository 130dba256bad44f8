"""A controlled router around real Gosig cores, for schedules written by hand: every message
waits until the test delivers it; cores can restart from their persisted safety state at any
head (what a crash that lost block commits, or a node rebuilding its core, does). Cores listed
in ``honest`` are real; the others are played by the test."""

# mypy: ignore-errors
from __future__ import annotations

import hashlib

from accord.base.types import Block, Header, vote_message
from accord.consensus import (
    Aggregate,
    BlockBuilt,
    BlockValidated,
    Broadcast,
    BuildBlock,
    Commit,
    Core,
    CostModelCrypto,
    FetchBlock,
    MessageReceived,
    Persist,
    Proposal,
    SafetyState,
    Send,
    Tick,
    ValidateBlock,
    decode_message,
)

GENESIS_HASH = hashlib.sha256(b"g").digest()


def mkblock(height, rnd, parent, proposer, ticket, salt=b"\0" * 32):
    h = Header("c", height, rnd, parent, salt, bytes(32), 0, proposer, 0, ticket)
    return Block(h, ())


class Net:
    def __init__(self, params, n, honest, auto_validate=True):
        self.n = n
        self.params = params
        self.crypto = CostModelCrypto(n)
        self.honest = set(honest)
        self.cores = {
            i: Core(params, self.crypto.signer(i), self.crypto, head=(0, GENESIS_HASH))
            for i in honest
        }
        self.pending = []  # (frm, to, payload)
        self.commits = {i: [] for i in range(n)}
        self.persisted = {}
        self.fetches = []  # (i, FetchBlock)
        self.validations = {i: [] for i in range(n)}
        self.auto_validate = {i: auto_validate for i in range(n)}
        self.blocks = {}
        self.seen = []  # every payload ever sent (an adversary may replay them)
        self.now = 0
        self.stuck = set()
        self.signed = {}  # (i, h, r, phase) -> set of hashes (honest equivocation check)

    def run(self, i, event):
        queue = [event]
        while queue:
            for a in self.cores[i].handle(queue.pop(0)):
                if isinstance(a, Broadcast):
                    self.seen.append((i, a.payload))
                    self._note(i, a.payload)
                    self.pending += [(i, j, a.payload) for j in range(self.n) if j != i]
                elif isinstance(a, Send):
                    self.seen.append((i, a.payload))
                    self.pending.append((i, a.to_index, a.payload))
                elif isinstance(a, BuildBlock) and i in self.stuck:
                    pass  # the chain thread is busy (a commit in flight): the build waits
                elif isinstance(a, BuildBlock):
                    b = mkblock(a.height, a.round, a.parent_hash, a.proposer_index, a.sortition)
                    self.blocks[b.hash] = b
                    queue.append(BlockBuilt(b))
                elif isinstance(a, ValidateBlock):
                    self.blocks[a.block.hash] = a.block
                    if self.auto_validate[i] and i not in self.stuck:
                        queue.append(BlockValidated(a.block.hash, True))
                    else:
                        self.validations[i].append(a.block.hash)
                elif isinstance(a, Commit):
                    self.commits[i].append(a.block)
                elif isinstance(a, Persist):
                    self.persisted[i] = a.value
                elif isinstance(a, FetchBlock):
                    self.fetches.append((i, a))

    def _note(self, i, payload):
        m = decode_message(payload, self.n, 1 << 22)
        if isinstance(m, Aggregate) and m.signers == 1 and int(m.counts.nonzero()[0][0]) == i:
            s = self.signed.setdefault((i, m.height, m.round, m.phase), set())
            s.add(m.block_hash)

    def tick(self, t, who=None):
        self.now = t
        for i in who if who is not None else sorted(self.cores):
            self.run(i, Tick(t))

    def deliver(self, keep):
        done = 0
        while True:
            for k, (frm, to, payload) in enumerate(self.pending):
                if to in self.cores and keep(frm, to, decode_message(payload, self.n, 1 << 22)):
                    del self.pending[k]
                    self.run(to, MessageReceived(frm, payload))
                    done += 1
                    break
            else:
                return done

    def inject(self, frm, to, payload):
        self.run(to, MessageReceived(frm, payload))

    def vote(self, i, height, rnd, phase, bh):
        sig = self.crypto.signer(i).sign(vote_message("c", height, rnd, phase, bh))
        return Aggregate.single(self.n, height, rnd, phase, bh, i, sig)

    def quorum(self, height, rnd, phase, bh, signers):
        agg = None
        for i in signers:
            s = self.vote(i, height, rnd, phase, bh)
            if agg is None:
                agg = s
            else:
                agg.merge(s, self.crypto)
        return agg

    def restart(self, i, head, head_cert=None, head_sortition=b""):
        safety = SafetyState.decode(self.persisted[i], self.n) if i in self.persisted else None
        self.cores[i] = Core(
            self.params,
            self.crypto.signer(i),
            self.crypto,
            head=head,
            head_cert=head_cert,
            head_sortition=head_sortition,
            safety=safety,
        )
        self.pending = [p for p in self.pending if p[1] != i]  # in-flight to i lost

    def honest_equivocations(self):
        return {k: v for k, v in self.signed.items() if k[0] in self.honest and len(v) > 1}


def is_agg(phase=None, rnd=None, height=None):
    return lambda f, t, m: (
        isinstance(m, Aggregate)
        and (phase is None or m.phase == phase)
        and (rnd is None or m.round == rnd)
        and (height is None or m.height == height)
    )


def is_prop(height=None, rnd=None):
    return lambda f, t, m: (
        isinstance(m, Proposal)
        and (height is None or m.height == height)
        and (rnd is None or m.round == rnd)
    )
