"""Members set up apart: each makes its own keys, genesis is built from public parts only.

A member runs ``accord keys new --validator`` on its own machine. Its secrets (the BLS
validator key and the account key) never leave that folder; what it sends the others is a
*member card*: its name, BLS public key, proof of possession and account address. One member
(or each, independently) builds the genesis draft from the cards, assembles it and prints its
hash; the members compare that one hash out of band before anyone starts a node.

The checks here are the ones a coordinator could get wrong or a member could try to abuse: a
proof of possession that does not verify (a rogue-key attack on BLS aggregation), a name, key
or account already taken, a card that carries a secret (the member sent the wrong file: its key
is no longer secret), and a draft changed after assembly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticError

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import GenesisError, ValidationError
from accord.base.genesis import (
    ConsensusParams,
    ContractEntry,
    Genesis,
    GovernanceParams,
    TokenGenesis,
    ValidatorInfo,
    _hex,
)
from accord.base.keys import save_validator_key

CARD_FORMAT: Literal["accord-member-card/1"] = "accord-member-card/1"
DRAFT_FORMAT: Literal["accord-genesis-draft/1"] = "accord-genesis-draft/1"

VALIDATOR_KEY = "validator.key"
ACCOUNT_KEY = "account.json"
CARD_FILE = "member.json"

MAX_CARD_BYTES = 64 * 1024
"""A card is a few hundred bytes; anything far larger is not one (and is not read whole)."""

_SECRET_FIELDS = frozenset({"secret", "seed", "private_key", "secret_key", "sk", "privkey"})


class MemberCard(BaseModel):
    """The public part of a member: what it sends the others, and all genesis learns of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["accord-member-card/1"] = CARD_FORMAT
    name: str = Field(min_length=1, max_length=64)
    bls_public_key: str
    pop: str
    account: str

    @field_validator("bls_public_key")
    @classmethod
    def _pk(cls, v: str) -> str:
        return _hex(v, bls.PUBLIC_KEY_SIZE, "bls_public_key")

    @field_validator("pop")
    @classmethod
    def _pop(cls, v: str) -> str:
        return _hex(v, bls.SIGNATURE_SIZE, "pop")

    @field_validator("account")
    @classmethod
    def _account(cls, v: str) -> str:
        return _hex(v, 20, "account")

    def check(self) -> None:
        if not bls.pop_verify(bytes.fromhex(self.bls_public_key), bytes.fromhex(self.pop)):
            raise GenesisError(
                f"member {self.name}: the proof of possession does not verify for its BLS key "
                "(a key whose owner cannot sign with it would let it forge aggregate votes)"
            )

    def validator(self) -> ValidatorInfo:
        return ValidatorInfo(
            name=self.name, bls_public_key=self.bls_public_key, pop=self.pop, account=self.account
        )


def new_member(folder: str | Path, name: str) -> MemberCard:
    """Make a member's keys in ``folder`` (secrets mode 0600) and write its card.

    Refuses a folder that already holds any of the three files: overwriting a validator key
    of a running chain would lose the member's seat for good."""
    folder = Path(folder)
    paths = [folder / VALIDATOR_KEY, folder / ACCOUNT_KEY, folder / CARD_FILE]
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise ValidationError(
            f"{', '.join(taken)} already exist: refusing to overwrite a member's keys "
            "(use another --dir)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    secret = bls.keygen()
    account = AccountKey.generate()
    save_validator_key(paths[0], secret)
    account.save(paths[1])
    card = MemberCard(
        name=name,
        bls_public_key=bls.public_key(secret).hex(),
        pop=bls.pop_prove(secret).hex(),
        account=account.address.hex(),
    )
    paths[2].write_text(card_json(card) + "\n")
    return card


def card_json(card: MemberCard) -> str:
    return json.dumps(card.model_dump(mode="json"), sort_keys=True)


def _secret_fields(v: Any, path: str = "") -> list[str]:
    if isinstance(v, dict):
        out = []
        for k, x in v.items():
            here = f"{path}.{k}" if path else str(k)
            if str(k).lower() in _SECRET_FIELDS:
                out.append(here)
            out.extend(_secret_fields(x, here))
        return out
    if isinstance(v, list):
        return [f for i, x in enumerate(v) for f in _secret_fields(x, f"{path}[{i}]")]
    return []


def _errors(e: PydanticError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'card'}: {err['msg']}" for err in e.errors()
    )


def read_card(path: str | Path) -> MemberCard:
    """A member card from a file, checked: the format, no secret, a proof that verifies."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CARD_BYTES + 1)
    except OSError as e:
        raise ValidationError(f"cannot read member card {path}: {e.strerror}") from None
    if len(raw) > MAX_CARD_BYTES:
        raise ValidationError(f"{path} is not a member card (over {MAX_CARD_BYTES} bytes)")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"{path} is not a member card (not JSON)") from None
    secrets = _secret_fields(doc)
    if secrets:
        raise ValidationError(
            f"{path} holds a secret ({', '.join(secrets)}): a member card carries public keys "
            "only. Do not pass this file on; treat the key in it as exposed and make new keys "
            "with `accord keys new --validator`"
        )
    if not isinstance(doc, dict) or doc.get("format") != CARD_FORMAT:
        raise ValidationError(
            f"{path} is not a member card (format {CARD_FORMAT!r} expected); "
            "members write theirs with `accord keys new --validator`"
        )
    try:
        card = MemberCard.model_validate(doc)
    except PydanticError as e:
        raise ValidationError(f"{path}: bad member card: {_errors(e)}") from None
    card.check()
    return card


class GenesisDraft(BaseModel):
    """A genesis being built: the same fields, members added one card at a time.

    It is a separate document (with its own ``format``) so that a draft is never mistaken for
    a chain's genesis, and an assembled genesis is never silently extended."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["accord-genesis-draft/1"] = DRAFT_FORMAT
    chain_id: str = Field(min_length=1, max_length=64)
    genesis_time_ms: int = Field(ge=0)
    validators: list[ValidatorInfo] = Field(default_factory=list)
    consensus: ConsensusParams = Field(default_factory=ConsensusParams)
    contracts: list[ContractEntry] = Field(default_factory=list)
    token: TokenGenesis | None = None
    zk_circuits: dict[str, Any] = Field(default_factory=dict)
    zk_params: dict[str, Any] = Field(default_factory=dict)
    mpc: dict[str, Any] = Field(default_factory=dict)
    governance: GovernanceParams | None = None

    @classmethod
    def load(cls, path: str | Path) -> GenesisDraft:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except OSError as e:
            raise ValidationError(f"cannot read genesis draft {path}: {e.strerror}") from None
        except ValueError:
            raise ValidationError(f"{path} is not a genesis draft (not JSON)") from None
        if not isinstance(doc, dict) or doc.get("format") != DRAFT_FORMAT:
            raise GenesisError(
                f"{path} is not a genesis draft: an assembled genesis is final (its hash is "
                "what the members agreed on); start a new draft with `accord genesis new`"
            )
        try:
            return cls.model_validate(doc)
        except PydanticError as e:
            raise ValidationError(f"{path}: bad genesis draft: {_errors(e)}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
        )

    def add(self, card: MemberCard) -> None:
        """Add a checked card; refuse a name, BLS key or account already in the draft."""
        card.check()
        for v in self.validators:
            for what, mine, theirs in (
                ("name", v.name, card.name),
                ("BLS key", v.bls_public_key, card.bls_public_key),
                ("account", v.account, card.account),
            ):
                if mine == theirs:
                    raise GenesisError(
                        f"member {card.name}: its {what} is already member {v.name}'s"
                    )
        self.validators.append(card.validator())

    def assemble(self) -> Genesis:
        """The final genesis: every rule of a chain's genesis, every proof re-checked."""
        if not self.validators:
            raise GenesisError("the draft has no members yet (accord genesis add-member)")
        doc = self.model_dump(mode="json")
        del doc["format"]
        if doc.get("governance") is None:
            doc.pop("governance", None)
        try:
            g = Genesis.model_validate(doc)
        except PydanticError as e:
            raise GenesisError(f"the draft is not a valid genesis: {_errors(e)}") from None
        g.check()
        return g
