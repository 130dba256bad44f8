"""Genesis: the consortium's founding document, identical on every member.

It fixes the chain id, the validator set (BLS keys with proofs of possession), consensus
parameters, the contracts (by name and code hash), initial token balances, the zero-knowledge
verification keys and the MPC oracle's servers and programs. Its hash is part of every
node's identity: two nodes with different genesis files never talk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.errors import GenesisError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hex(v: str, size: int | None, what: str) -> str:
    try:
        raw = bytes.fromhex(v)
    except ValueError:
        raise ValueError(f"{what} must be hex") from None
    if size is not None and len(raw) != size:
        raise ValueError(f"{what} must have {size} bytes")
    return v.lower()


LEGACY_ADDRESS_FIELDS = ("host", "port", "api_port")
"""Fields a validator entry had before addresses moved to node.json (``peers``)."""

_OPTIONAL_FIELDS = ("account", *LEGACY_ADDRESS_FIELDS)


class ValidatorInfo(_Model):
    """A validator as every member knows it: its name and public keys, never where it runs.

    Addresses are node configuration (node.json ``peers``), so a validator can move without a
    new chain. Genesis files written before that still carry ``host``/``port``/``api_port``:
    they are read, hashed exactly as written (an existing chain keeps its genesis hash) and
    used only as the address to dial when node.json names none. Absent optional fields are
    left out of the document and its hash, not written as null."""

    name: str = Field(min_length=1, max_length=64)
    bls_public_key: str
    pop: str
    account: str | None = Field(
        default=None, description="the member's account address (hex), from its member card"
    )
    host: str | None = Field(default=None, description="legacy: read from older genesis files only")
    port: int | None = Field(default=None, ge=0, le=65535, description="legacy")
    api_port: int | None = Field(default=None, ge=0, le=65535, description="legacy")

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        return {k: v for k, v in out.items() if not (k in _OPTIONAL_FIELDS and v is None)}

    @field_validator("account")
    @classmethod
    def _account(cls, v: str | None) -> str | None:
        return None if v is None else _hex(v, 20, "account")

    @field_validator("bls_public_key")
    @classmethod
    def _pk(cls, v: str) -> str:
        return _hex(v, bls.PUBLIC_KEY_SIZE, "bls_public_key")

    @field_validator("pop")
    @classmethod
    def _pop(cls, v: str) -> str:
        return _hex(v, bls.SIGNATURE_SIZE, "pop")

    @property
    def public_key_bytes(self) -> bytes:
        return bytes.fromhex(self.bls_public_key)


MAX_TIME_DRIFT_ROUNDS = 10  # the largest block time tolerance, in rounds (see below)


class ConsensusParams(_Model):
    """Gosig timing and sizing. Rounds are ``round_ms`` long; the last ``stage2_ms`` of each
    round is stage II (agreement). ``expected_leaders`` sets the sortition difficulty."""

    round_ms: int = Field(default=1000, ge=10)
    stage2_ms: int = Field(default=500, ge=5)
    expected_leaders: float = Field(default=3.0, gt=0)
    max_block_txs: int = Field(default=5000, ge=1)
    max_block_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_block_gas: int = Field(
        default=50_000_000,
        ge=1,
        description="a block's transactions may use at most this much gas in total (a "
        "consensus rule that bounds the work any proposal costs every validator: about "
        "10,000 token transfers or 240 proof checks); a transaction whose gas limit is "
        "above it is refused at submission, since no block could hold it",
    )
    gossip_fanout: int = Field(default=3, ge=1)
    ticket_wait_ms: int = Field(
        default=30,
        ge=0,
        description="leaders announce their sortition ticket and wait this long (about one "
        "network delay) before building; only the best-ticket leader then builds (0: every "
        "leader builds at once)",
    )
    max_time_drift_ms: int = Field(
        default=0,
        ge=0,
        description="how far a proposed block's time may be ahead of a validator's clock, or "
        "outside its round's slot of the schedule (genesis_time_ms + round * round_ms), for "
        "that validator to vote for it; this bounds how far one proposer can move the chain's "
        "clock (0: three rounds, 3 * round_ms; otherwise between 2 * round_ms and "
        "max(10 * round_ms, 60,000 ms))",
    )

    skip_empty_blocks: bool = Field(
        default=False,
        description="leaders propose only while their mempool holds transactions, so an idle "
        "chain makes no empty block every round (validators still advance rounds and vote); "
        "a consensus parameter, in genesis, so that every validator follows it: with only "
        "some validators skipping, the others would still make empty blocks",
    )

    @model_validator(mode="after")
    def _drift_in_range(self) -> ConsensusParams:
        # Below two rounds, ordinary skew between an honest proposer's clock and an honest
        # voter's exceeds the tolerance: a stamp may sit at the end of its round's slot, the
        # voter re-judges a block ahead of its clock for two rounds only, and a review's runs
        # with one skewed and one fast clock halted at a one-round tolerance. Above
        # MAX_TIME_DRIFT_ROUNDS rounds (and an absolute minute, for short rounds) the bound no
        # longer means anything to a contract reading ctx.time_ms.
        d = self.max_time_drift_ms
        upper = max(MAX_TIME_DRIFT_ROUNDS * self.round_ms, 60_000)
        if d and not 2 * self.round_ms <= d <= upper:
            raise ValueError(
                f"max_time_drift_ms must be 0 (three rounds) or between two rounds "
                f"({2 * self.round_ms} ms) and {upper} ms, not {d}"
            )
        if self.stage2_ms >= self.round_ms:
            raise ValueError("stage2_ms must be shorter than round_ms")
        return self

    def time_drift(self) -> int:
        """The block time tolerance in milliseconds (see ``max_time_drift_ms``)."""
        return self.max_time_drift_ms or 3 * self.round_ms

    def changed(self, changes: Mapping[str, Any]) -> ConsensusParams:
        """These parameters with ``changes`` (a governance ``set_consensus`` value: the
        parameters it may change, by name) applied; ValueError if they break a rule above."""
        full = self.model_dump()
        full.update(changes)
        return ConsensusParams(**full)


class ContractEntry(_Model):
    name: str = Field(min_length=1, max_length=64)
    code_hash: str

    @field_validator("code_hash")
    @classmethod
    def _h(cls, v: str) -> str:
        return _hex(v, 32, "code_hash")


class TokenGenesis(_Model):
    authority: str = Field(description="address (hex) allowed to mint")
    balances: dict[str, int] = Field(default_factory=dict)

    @field_validator("authority")
    @classmethod
    def _a(cls, v: str) -> str:
        return _hex(v, 20, "authority")


DEFAULT_PROPOSAL_LIFETIME = 1000
"""Blocks a governance proposal stays open when genesis sets no ``proposal_lifetime``."""


class GovernanceParams(_Model):
    """How the members decide on changes after genesis (the ``governance`` contract).

    Absent from a genesis file, the defaults apply and the file hashes exactly as before (the
    section is left out of the document, not written as null)."""

    threshold: int | None = Field(
        default=None,
        ge=1,
        description="approvals a proposal needs to pass (the proposer's own counts); default "
        "ceil(2/3 of the members in force). Must be more than half of genesis's members, so "
        "two disjoint minorities can never both pass changes; capped at the members in force "
        "when removals leave fewer",
    )
    proposal_lifetime: int = Field(
        default=DEFAULT_PROPOSAL_LIFETIME,
        ge=3,
        le=10_000_000,
        description="blocks after its proposal's block during which a proposal can be "
        "approved; after that it has expired and can never pass",
    )
    activation_delay: int = Field(
        default=2,
        ge=2,
        le=10_000_000,
        description="the default activation height is the passing block's height plus this "
        "(at least 2: a change that passes at h is in force from h+2 at the earliest, so "
        "the block after the passing one is still made under the old rules)",
    )


class Genesis(_Model):
    chain_id: str = Field(min_length=1, max_length=64)
    genesis_time_ms: int = Field(ge=0)
    validators: list[ValidatorInfo] = Field(min_length=1)
    consensus: ConsensusParams = Field(default_factory=ConsensusParams)
    contracts: list[ContractEntry] = Field(default_factory=list)
    token: TokenGenesis | None = None
    zk_circuits: dict[str, Any] = Field(
        default_factory=dict, description="circuit name -> snarkjs verification key (JSON)"
    )
    zk_params: dict[str, Any] = Field(default_factory=dict, description="e.g. the regulator key")
    mpc: dict[str, Any] = Field(default_factory=dict, description="MPC servers and programs")
    governance: GovernanceParams | None = Field(
        default=None, description="the governance contract's rules (absent: the defaults)"
    )

    @model_serializer(mode="wrap")
    def _drop_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A genesis without the section hashes as it did before the section existed.
        out: dict[str, Any] = handler(self)
        if out.get("governance") is None:
            out.pop("governance", None)
        return out

    @field_validator("validators")
    @classmethod
    def _unique(cls, v: list[ValidatorInfo]) -> list[ValidatorInfo]:
        names = [x.name for x in v]
        keys = [x.bls_public_key for x in v]
        if len(set(names)) != len(names):
            raise ValueError("validator names must be unique")
        if len(set(keys)) != len(keys):
            raise ValueError("validator keys must be unique")
        accounts = [x.account for x in v if x.account is not None]
        if len(set(accounts)) != len(accounts):
            raise ValueError("validator accounts must be unique")
        return v

    @model_validator(mode="after")
    def _token_registered(self) -> Genesis:
        # The token section is the token contract's initial state: without the contract in
        # ``contracts`` nothing would ever read it, and balances the operator meant to grant
        # would silently not exist.
        if (
            self.token is not None
            and self.token.balances
            and all(c.name != "token" for c in self.contracts)
        ):
            raise ValueError(
                "the genesis grants token balances but has no 'token' contract in contracts"
            )
        t = self.governance.threshold if self.governance is not None else None
        members = sum(1 for v in self.validators if v.account is not None)
        if t is not None and not members / 2 < t <= members:
            raise ValueError(
                f"governance.threshold must be more than half of the {members} members "
                f"(validators with an account) and at most all of them, not {t}"
            )
        return self

    @property
    def governance_params(self) -> GovernanceParams:
        """The governance rules in force (the defaults when genesis has no section)."""
        return self.governance or GovernanceParams()

    # --- derived facts -------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        """The most Byzantine validators the chain tolerates: the largest f with 3f < n."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """Votes needed for a certificate: n - f, which is 2f+1 when n = 3f+1."""
        return self.n - self.f

    def validator_keys(self) -> list[bytes]:
        return [v.public_key_bytes for v in self.validators]

    def canonical_obj(self) -> encoding.Value:
        return encoding.canonical(_jsonable_ints(self.model_dump(mode="json")))

    @property
    def hash(self) -> bytes:
        return encoding.hash_value(self.canonical_obj())

    def check(self) -> None:
        """Refuse a genesis whose validators cannot prove possession of their keys."""
        for v in self.validators:
            if not bls.pop_verify(v.public_key_bytes, bytes.fromhex(v.pop)):
                raise GenesisError(f"validator {v.name}: proof of possession does not verify")

    # --- files ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Genesis:
        try:
            g = cls.model_validate_json(Path(path).read_text())
        except (OSError, ValidationError) as e:
            raise GenesisError(f"cannot load genesis {path}: {e}") from None
        g.check()
        return g

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
        )


def vk_hash(vk: Any) -> bytes:
    """The hash that names a circuit's verification key (snarkjs vk JSON): of its canonical
    encoding, as it sits in genesis's ``zk_circuits`` (governance's genesis schedule hashes
    genesis's keys with it, ``register_circuit`` names a later key by it, and a node checks
    the vk file its node.json names against it)."""
    return encoding.hash_value(encoding.canonical(_jsonable_ints(vk)))


def _jsonable_ints(v: Any) -> Any:
    """Genesis JSON may hold floats (expected_leaders) and big integers (verification keys are
    decimal strings already); floats become decimal strings so the hash is canonical."""
    if isinstance(v, dict):
        return {k: _jsonable_ints(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable_ints(x) for x in v]
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        return str(v)
    return v
