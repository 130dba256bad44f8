"""Transcripts of the Gosig core (in the style of etcd raft's ``testdata``): each file in
``tests/data/core/`` is one scenario, events in and the actions expected out, replayed by
``tests/test_core_transcripts.py`` against a real :class:`Core` with BLS keys of the demo
validators (``accord.base.crypto.bls.demo_secret("v0")`` ...), so signatures are real and
every run is identical.

A scenario file holds ``description``, ``me`` (the core's validator index), ``params``
(keyword arguments of :class:`Params` beyond ``chain_id``), and ``steps``: each step an
``event`` and the ``expect``\\ ed actions of that event, in order, each as a small dict of
its kind and key fields. Then ``status`` (a few fields of the final :class:`Status`) and
``stats`` (its non-zero counters). Events are written by hand, symbolically:

* ``{"tick": ms}``
* ``{"proposal": {"from": 1, "block": "v1r0"}}``: validator 1's proposal of its round-0
  block. Block ``vIrR`` is the empty block proposer ``I`` builds in round ``R`` at height 1
  on genesis; the core's own builds answer with the same block.
* ``{"built": "v0r0"}``: the application's answer to our ``BuildBlock``.
* ``{"validated": {"block": "v1r0", "ok": true}}``
* ``{"vote": {"from": 2, "phase": "P", "block": "v0r0"}}``: a single vote (its round is the
  block's; ``"round"`` overrides it); ``"signed_by": 3`` signs it with another key (a bad
  signature).
* ``{"ticket": {"from": 1, "round": 0}}``; ``{"garbage": {"from": 1, "hex": "c1"}}``

To add a scenario, write its ``description``, ``me``, ``params`` and the events (with empty
``expect`` lists), then regenerate::

    .venv/bin/python -m tests.support.core_transcripts            # every file
    .venv/bin/python -m tests.support.core_transcripts leader.json

Regeneration replays the events and writes what the core did into ``expect``, ``status``
and ``stats``. Read the diff before committing it: the files are the specification, so a
changed expectation is a change of consensus behaviour and needs a reason.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from accord.base.crypto import bls
from accord.base.types import Block, Header, vote_message
from accord.consensus import (
    PHASE_C,
    PHASE_P,
    Aggregate,
    BlockBuilt,
    BlockValidated,
    BlsCrypto,
    BlsSigner,
    Broadcast,
    BuildBlock,
    CancelBuild,
    Commit,
    Core,
    FetchBlock,
    MessageReceived,
    Params,
    Persist,
    Proposal,
    SafetyState,
    Send,
    Tick,
    Ticket,
    ValidateBlock,
    certificate_signers,
    decode_message,
    sortition_message,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "core"
CHAIN_ID = "transcript"
GENESIS_HASH = hashlib.sha256(b"transcript-genesis").digest()
MAX_ROUNDS = 16  # blocks vIrR are named for rounds below this
PHASES = {"P": PHASE_P, "C": PHASE_C}
PHASE_NAMES = {v: k for k, v in PHASES.items()}


class World:
    """The demo validators, their keys, and every block a scenario can name."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.secrets = [bls.demo_secret(f"v{i}") for i in range(n)]
        self.crypto = BlsCrypto([bls.public_key(s) for s in self.secrets], checked=True)
        self.blocks: dict[str, Block] = {}
        self.names: dict[bytes, str] = {}

    def ticket(self, i: int, rnd: int) -> bytes:
        # Height 1 on genesis: the seed is the genesis hash (no parent sortition).
        return bls.sign(self.secrets[i], sortition_message(CHAIN_ID, 1, rnd, GENESIS_HASH))

    def block(self, name: str) -> Block:
        b = self.blocks.get(name)
        if b is None:
            i, rnd = (int(x) for x in name[1:].split("r"))
            h = Header(
                CHAIN_ID, 1, rnd, GENESIS_HASH, bytes(32), bytes(32), 0, i, 0, self.ticket(i, rnd)
            )
            b = self.blocks[name] = Block(h, ())
            self.names[b.hash] = name
        return b

    def name(self, block_hash: bytes) -> str:
        if block_hash not in self.names:
            for i in range(self.n):
                for rnd in range(MAX_ROUNDS):
                    self.block(f"v{i}r{rnd}")
        return self.names.get(block_hash, block_hash.hex()[:16])

    def event(self, spec: dict[str, Any]) -> Any:
        ((kind, v),) = spec.items()
        if kind == "tick":
            return Tick(int(v))
        if kind == "built":
            return BlockBuilt(self.block(v))
        if kind == "validated":
            return BlockValidated(self.block(v["block"]).hash, bool(v["ok"]))
        if kind == "proposal":
            b = self.block(v["block"])
            h = b.header
            return MessageReceived(
                v["from"], Proposal(h.round, h.proposer, h.sortition, b).encode()
            )
        if kind == "vote":
            b = self.block(v["block"])
            rnd = v.get("round", b.header.round)
            phase = PHASES[v["phase"]]
            signer = v.get("signed_by", v["from"])
            sig = bls.sign(self.secrets[signer], vote_message(CHAIN_ID, 1, rnd, phase, b.hash))
            agg = Aggregate.single(self.n, 1, rnd, phase, b.hash, v["from"], sig)
            return MessageReceived(v["from"], agg.encode())
        if kind == "ticket":
            t = Ticket(1, v["round"], v["from"], self.ticket(v["from"], v["round"]))
            return MessageReceived(v["from"], t.encode())
        if kind == "garbage":
            return MessageReceived(v["from"], bytes.fromhex(v["hex"]))
        raise ValueError(f"unknown event {kind!r}")

    def summary(self, a: Any) -> dict[str, Any]:
        """An action as the transcript shows it: its kind and the fields a reader checks."""
        if isinstance(a, Persist):
            s = SafetyState.decode(a.value, self.n)
            lock = None if s.lock is None else [s.lock.round, self.name(s.lock.block_hash)]
            return {"kind": "Persist", "p_round": s.p_round, "c_round": s.c_round, "lock": lock}
        if isinstance(a, Broadcast | Send):
            out: dict[str, Any] = {"kind": type(a).__name__}
            if isinstance(a, Send):
                out["to"] = a.to_index
            m = decode_message(a.payload, self.n, 1 << 24)
            if isinstance(m, Proposal):
                out |= {"msg": "proposal", "round": m.round, "block": self.name(m.block.hash)}
            elif isinstance(m, Aggregate):
                out |= {
                    "msg": "vote",
                    "phase": PHASE_NAMES[m.phase],
                    "round": m.round,
                    "block": self.name(m.block_hash),
                    "signers": m.signers,
                }
            else:
                assert isinstance(m, Ticket)
                out |= {"msg": "ticket", "round": m.round, "from": m.proposer}
            return out
        if isinstance(a, BuildBlock):
            return {"kind": "BuildBlock", "height": a.height, "round": a.round}
        if isinstance(a, CancelBuild):
            return {"kind": "CancelBuild", "height": a.height, "round": a.round}
        if isinstance(a, ValidateBlock):
            return {"kind": "ValidateBlock", "block": self.name(a.block.hash)}
        if isinstance(a, Commit):
            return {
                "kind": "Commit",
                "height": a.block.height,
                "block": self.name(a.block.hash),
                "signers": sorted(certificate_signers(a.certificate, self.n)),
            }
        assert isinstance(a, FetchBlock)
        return {"kind": "FetchBlock", "block": self.name(a.block_hash), "from": a.from_index}


def replay(scenario: dict[str, Any]) -> dict[str, Any]:
    """Run a scenario's events through a fresh core; the scenario with what came out."""
    params = Params(chain_id=CHAIN_ID, **scenario["params"])
    world = World(params.n)
    me = scenario["me"]
    core = Core(params, BlsSigner(me, world.secrets[me]), world.crypto, head=(0, GENESIS_HASH))
    steps = []
    for step in scenario["steps"]:
        actions = core.handle(world.event(step["event"]))
        steps.append({"event": step["event"], "expect": [world.summary(a) for a in actions]})
    st = core.status()
    lock = None if st.lock is None else [st.lock.round, world.name(st.lock.block_hash)]
    return {
        **scenario,
        "steps": steps,
        "status": {
            "height": st.height,
            "round": st.round,
            "p_round": st.p_round,
            "c_round": st.c_round,
            "lock": lock,
        },
        "stats": {k: v for k, v in sorted(st.stats.items()) if v},
    }


def dump(scenario: dict[str, Any]) -> str:
    """One step per line pair and one action per line: diffs then read like a transcript."""
    lines = ["{"]
    for key in ("description", "me", "params"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(scenario[key])},")
    lines.append('  "steps": [')
    for k, step in enumerate(scenario["steps"]):
        lines.append(f'    {{"event": {json.dumps(step["event"])}, "expect": [')
        if step["expect"]:
            lines.append(",\n".join(f"      {json.dumps(a)}" for a in step["expect"]))
        lines.append("    ]}" + ("," if k < len(scenario["steps"]) - 1 else ""))
    lines.append("  ],")
    lines.append(f'  "status": {json.dumps(scenario["status"])},')
    lines.append(f'  "stats": {json.dumps(scenario["stats"])}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    paths = [DATA / a for a in argv] if argv else sorted(DATA.glob("*.json"))
    for path in paths:
        path.write_text(dump(replay(json.loads(path.read_text()))))
        print("regenerated", path.relative_to(DATA.parent.parent.parent))


if __name__ == "__main__":
    main(sys.argv[1:])
