"""What governance has put in force at a height, typed for the core, the runtime and clients.

The ``governance`` contract keeps the schedule in its state (see
:mod:`accord.contracts.governance`); :meth:`accord.ledger.chain.Chain.scheduled` reads it from
committed state and returns a :class:`Schedule`. A change that passes in block h takes effect
at h+2 at the earliest, so ``scheduled(height)`` is final for every height up to the head + 2:
what the next block's validators and parameters are never depends on that block itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from accord.base.genesis import ConsensusParams, Genesis, ValidatorInfo


@dataclass(frozen=True, slots=True)
class Circuit:
    vk_hash: bytes
    transcript_hash: bytes | None  # None for genesis's circuits (genesis pins the transcript)


@dataclass(frozen=True, slots=True)
class MpcServer:
    host: str
    port: int
    public_key: bytes  # its channel key (the cluster file's ``public_key``)
    address: bytes  # its account: it signs the server's oracle answers


@dataclass(frozen=True, slots=True)
class Schedule:
    """Everything governance decides, as in force for the block at ``height``."""

    height: int
    validators: tuple[ValidatorInfo, ...]
    """The validator set, in order (a validator's index is its position here)."""
    consensus: ConsensusParams
    contracts: Mapping[str, bytes]
    """Active contracts: name -> code hash (SHA-256, see ``accord.contracts.runtime.code_hash``)."""
    retired: frozenset[str]
    circuits: Mapping[str, Circuit]
    regulator: tuple[str, str] | None
    mpc_servers: tuple[MpcServer, ...]
    members: tuple[bytes, ...]
    """Member accounts (20-byte addresses): who may propose and approve."""
    threshold: int
    """Approvals a proposal needs at this height."""
    round_anchor_ms: int
    """Rounds of this height are counted from it: round r starts at ``round_anchor_ms + r *
    consensus.round_ms`` (genesis time until governance changes ``round_ms``; final once
    the block below ``height`` is executed, see
    :meth:`accord.contracts.runtime.Runtime.round_anchor`)."""

    def validator_keys(self) -> list[bytes]:
        return [v.public_key_bytes for v in self.validators]

    @property
    def quorum(self) -> int:
        """Votes a certificate needs with this set: n - f, f the largest with 3f < n."""
        n = len(self.validators)
        return n - (n - 1) // 3


def schedule_from(
    genesis: Genesis, doc: Mapping[str, Any], *, round_anchor_ms: int | None = None
) -> Schedule:
    """A :class:`Schedule` from the governance contract's ``in_force`` answer (and the round
    anchor the runtime keeps; genesis time if not given)."""
    validators = tuple(
        ValidatorInfo(
            name=v["name"],
            bls_public_key=v["bls_public_key"].hex(),
            pop=v["pop"].hex(),
            account=None if v["account"] is None else v["account"].hex(),
        )
        for v in doc["validators"]
    )
    contracts = doc["contracts"]
    reg = doc["regulator"]
    return Schedule(
        height=int(doc["height"]),
        validators=validators,
        consensus=genesis.consensus.changed(doc["consensus"]),
        contracts={
            n: e["code_hash"] for n, e in sorted(contracts.items()) if e["status"] == "active"
        },
        retired=frozenset(n for n, e in contracts.items() if e["status"] == "retired"),
        circuits={
            n: Circuit(e["vk_hash"], e["transcript_hash"])
            for n, e in sorted(doc["circuits"].items())
        },
        regulator=None if reg is None else (str(reg[0]), str(reg[1])),
        mpc_servers=tuple(
            MpcServer(s["host"], s["port"], s["public_key"], s["address"])
            for s in doc["mpc_servers"]
        ),
        members=tuple(doc["members"]),
        threshold=int(doc["threshold"]),
        round_anchor_ms=genesis.genesis_time_ms if round_anchor_ms is None else round_anchor_ms,
    )


def genesis_only(genesis: Genesis, height: int) -> Schedule:
    """The schedule of a chain without the governance contract: genesis, at every height."""
    from accord.contracts.governance import genesis_schedule, threshold_of

    doc: dict[str, Any] = dict(genesis_schedule(genesis))
    doc["height"] = height
    doc["members"] = [v["account"] for v in doc["validators"] if v["account"] is not None]
    doc["threshold"] = threshold_of(genesis, len(doc["members"]))
    return schedule_from(genesis, doc)
