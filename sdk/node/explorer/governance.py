"""The explorer's governance endpoints: proposals a page at a time, one proposal with its
approvals, and what governance has put in force at the head.

Everything is read through the governance contract's own read-only methods (``proposals``,
``proposal``, ``in_force``) on the node's committed state, so the explorer shows exactly what
``accord gov list|show|in-force`` shows, plus what only the head decides: a passed proposal
whose activation height is at or below the head is ``in_force``, and each approval says
whether its member still counts. A page costs its length (the contract walks its proposal
numbers backwards), however many proposals the chain holds.

The page does not have to believe these answers: each proposal names its record's state key,
and the browser checks the record against a certified header's state root (``/v1/state``).
"""

from __future__ import annotations

from typing import Any

from accord.base import encoding
from accord.base import wire as s
from accord.base.encoding import Value
from accord.base.errors import NotFound

CONTRACT = "governance"


def record_key(pid: bytes) -> bytes:
    """The contract-level key of a proposal's record (the contract's ``b"p" + id``)."""
    return b"p" + pid


def _hex(v: Any) -> str | None:
    return v.hex() if type(v) is bytes else None


def in_force_model(doc: dict[str, Value]) -> s.InForceModel:
    contracts = doc.get("contracts") or {}
    return s.InForceModel(
        height=int(doc["height"]),
        validators=[
            s.InForceValidator(
                name=str(v["name"]),
                bls_public_key=bytes(v["bls_public_key"]).hex(),
                account=_hex(v.get("account")),
            )
            for v in doc["validators"]
        ],
        consensus={str(k): v for k, v in dict(doc["consensus"]).items()},
        contracts=[
            s.InForceContract(
                name=str(name),
                code_hash=bytes(c["code_hash"]).hex(),
                status=c["status"],
            )
            for name, c in sorted(dict(contracts).items())
        ],
        circuits={str(k): s.value_to_json(v) for k, v in dict(doc["circuits"]).items()},
        regulator=s.value_to_json(doc["regulator"]),
        mpc_servers=s.value_to_json(doc["mpc_servers"]),
        members=[bytes(m).hex() for m in doc["members"]],
        threshold=int(doc["threshold"]),
    )


def proposal_model(
    rec: dict[str, Value], head: int, in_force: s.InForceModel, number: int | None = None
) -> s.ProposalModel:
    """One proposal as the contract shows it at the head, with the head's own verdicts."""
    names = {v.account: v.name for v in in_force.validators if v.account is not None}
    members = set(in_force.members)
    status: s.ProposalStatus
    recorded = str(rec["status"])
    effective = rec.get("effective")
    if recorded == "passed" and effective is not None and int(effective) <= head:
        status = "in_force"
    elif recorded in ("open", "passed", "expired", "failed"):
        status = recorded  # type: ignore[assignment]  # narrowed by the test above
    else:
        raise ValueError(f"the governance record has an unknown status {recorded!r}")
    approvals = [bytes(a).hex() for a in rec["approvals"]]
    action = dict(rec["action"])
    pid = bytes(rec["id"])
    return s.ProposalModel(
        number=number,
        id=pid.hex(),
        kind=str(action.get("kind", "")),
        action=s.value_to_json(action),
        proposer=bytes(rec["proposer"]).hex(),
        created=int(rec["created"]),
        expires=int(rec["expires"]),
        activation=None if rec.get("activation") is None else int(rec["activation"]),
        approvals=[
            s.ApprovalModel(member=a, validator=names.get(a), counted=a in members)
            for a in approvals
        ],
        counted=int(rec["counted"]),
        threshold=int(rec["threshold"]),
        status=status,
        passed_at=None if rec.get("passed_at") is None else int(rec["passed_at"]),
        effective=None if effective is None else int(effective),
        reason=str(rec.get("reason") or ""),
        state_key=record_key(pid).hex(),
    )


def proposal_count(store: Any) -> int:
    """How many proposals the committed state holds (the contract's ``"n"``)."""
    from accord.contracts.base import state_key

    raw = store.get_state(state_key(CONTRACT, "n"))
    return 0 if raw is None else int(encoding.decode(raw))


def page_bounds(total: int, before: int | None) -> tuple[int, int]:
    """(offset from the newest, the highest number the page may show + 1)."""
    top = total if before is None else min(before, total)
    return total - top, top


def list_page(
    result: Value, offset: int, top: int, head: int, in_force: s.InForceModel
) -> tuple[int, list[s.ProposalModel], int | None]:
    """The contract's ``proposals(offset, limit)`` answer as a page of numbered proposals.

    The count it answers with may exceed the one ``offset`` was computed from (a block
    committed in between): proposals numbered ``top`` or above are then left out, so a page
    never repeats one the previous page showed."""
    doc = dict(result)
    total = int(doc["total"])
    out: list[s.ProposalModel] = []
    for j, rec in enumerate(doc["proposals"]):
        number = total - 1 - offset - j
        if number < top:
            out.append(proposal_model(dict(rec), head, in_force, number))
    last = out[-1].number if out else None
    return total, out, last if last else None


def parse_id(text: str) -> bytes:
    return s.parse_hex(text, "proposal id", 32)


def require_present(present: bool) -> None:
    if not present:
        raise NotFound("this chain has no governance contract")
