"""The governance contract: the members change the consortium after genesis, by vote.

Members are the accounts of the validators in force (genesis's ``account`` of each validator,
then whatever governance changed). A member ``propose``s an action; members ``approve`` it,
each at most once (the proposer's proposal is its approval); it passes when the approvals of
members in force reach the threshold (genesis ``governance.threshold``, default ceil(2/3 of
the members)) and takes effect at its *activation height*: at least the passing block's
height + 2, so the block right after the passing one is still made under the rules that
were known when it was proposed (the core and the runtime learn a change one full block
ahead). A proposal that does not pass within ``governance.proposal_lifetime`` blocks of its
own has expired and can never pass.

Every action is a dict in one canonical shape (checked field by field, no extra field), and
its canonical encoding is hashed into the proposal id, so a member approves exactly the bytes
it read. Changes of one kind take effect in the order they passed: an activation height
below the last one scheduled for the kind is moved up to it (the schedule of a kind never
goes back in time, so "what is in force at h" is one lookup).

State (this contract's namespace):

* ``"n"`` -> number of proposals; ``"i/<k>"`` -> the id of the k-th (0-based)
* ``b"p" + id`` -> the proposal record (see :func:`_record`)
* ``"s/<kind>/n"`` -> number of scheduled changes of ``kind``; ``"s/<kind>/<k>"`` ->
  ``[activation height, the whole value of kind in force from then on, proposal id]``

Kinds and their value: ``validators`` (list of {name, bls_public_key, pop, account}),
``consensus`` (the int/bool consensus parameters), ``contracts`` (name -> {code_hash, status:
active|retired}), ``circuits`` (name -> {vk_hash, transcript_hash}), ``regulator``
([x, y] decimal strings, or None), ``mpc_servers`` (list of {address: the server's account,
which signs its answers; host, port, public_key: its channel key, as in the cluster file}).
Before any change, each is what genesis says (:func:`genesis_schedule`).

Events: ``Proposed``, ``Approved``, ``Passed`` (with the activation height), ``Failed`` (a
proposal that reached the threshold but no longer applies, e.g. its validator was removed by
an earlier change).
"""

from __future__ import annotations

from typing import Any

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import Revert
from accord.base.genesis import MAX_TIME_DRIFT_ROUNDS as MAX_DRIFT_ROUNDS
from accord.base.genesis import ConsensusParams, Genesis, vk_hash
from accord.contracts.base import Context, Contract, method
from accord.zk.babyjub import check_key

NAME = "governance"
KINDS = ("validators", "consensus", "contracts", "circuits", "regulator", "mpc_servers")

ACTION_KIND: dict[str, str] = {
    "add_validator": "validators",
    "remove_validator": "validators",
    "rotate_validator_key": "validators",
    "set_consensus": "consensus",
    "register_contract": "contracts",
    "upgrade_contract": "contracts",
    "retire_contract": "contracts",
    "register_circuit": "circuits",
    "rotate_regulator": "regulator",
    "set_mpc_servers": "mpc_servers",
}
"""Every action a proposal can carry, and the kind of what it changes."""

CONSENSUS_RANGES: dict[str, tuple[int, int]] = {
    "round_ms": (50, 600_000),
    "stage2_ms": (5, 599_000),
    "max_block_txs": (1, 1_000_000),
    "max_block_bytes": (1024, 64 * 1024 * 1024),
    "max_block_gas": (1_000_000, 10_000_000_000),
    "gossip_fanout": (1, 64),
    "ticket_wait_ms": (0, 10_000),
    "max_time_drift_ms": (0, 6_000_000),
}
"""The consensus parameters governance may change, with the range each must stay in (on top
of the genesis rules, e.g. ``stage2_ms < round_ms``). Outside these the chain stops working
(a gas limit below a token transfer's) or a change is surely a typo (a ten-minute round)."""

BOOL_PARAMS = ("skip_empty_blocks",)

ADDRESS_SIZE = 20
BLS_KEY_SIZE = 48
BLS_POP_SIZE = 96
MAX_NAME = 64
MAX_HOST = 253
MAX_PAGE = 100
MAX_VALIDATORS = 256
CONTRACT_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _s(ctx: Context, v: Any, what: str, max_len: int = MAX_NAME) -> str:
    ctx.require(type(v) is str and 0 < len(v) <= max_len, f"{what} must be text of 1 to {max_len}")
    return str(v)


def _b(ctx: Context, v: Any, what: str, size: int) -> bytes:
    ctx.require(type(v) is bytes and len(v) == size, f"{what} must be {size} bytes")
    return bytes(v)


def _fields(ctx: Context, action: dict[str, Any], names: tuple[str, ...]) -> None:
    extra = sorted(k for k in action if k not in names and k != "kind")
    missing = [n for n in names if n not in action]
    ctx.require(not extra, f"action {action['kind']}: unexpected field(s) {', '.join(extra)}")
    ctx.require(not missing, f"action {action['kind']}: missing field(s) {', '.join(missing)}")


def _contract_name(ctx: Context, v: Any) -> str:
    name = _s(ctx, v, "contract name")
    ctx.require(
        all(c in CONTRACT_NAME_CHARS for c in name), "a contract name must match [a-z0-9_]{1,64}"
    )
    return name


def check_action(ctx: Context, action: dict[str, Any]) -> dict[str, Value]:
    """The action in its canonical shape, or Revert naming what is wrong with it.

    Only the shape and what needs no state are checked here (a proof of possession, a
    regulator key on the curve, parameter ranges); :func:`apply` checks it against what is
    in force."""
    kind = action.get("kind")
    ctx.require(type(kind) is str and kind in ACTION_KIND, f"unknown action kind {kind!r}")
    out: dict[str, Value] = {"kind": kind}
    if kind == "add_validator":
        _fields(ctx, action, ("name", "bls_public_key", "pop", "account"))
        out["name"] = _s(ctx, action["name"], "validator name")
        out["bls_public_key"] = _b(ctx, action["bls_public_key"], "bls_public_key", BLS_KEY_SIZE)
        out["pop"] = _b(ctx, action["pop"], "pop", BLS_POP_SIZE)
        out["account"] = _b(ctx, action["account"], "account", ADDRESS_SIZE)
        ctx.require(out["account"] != bytes(ADDRESS_SIZE), "account must not be the zero address")
    elif kind == "remove_validator":
        _fields(ctx, action, ("name",))
        out["name"] = _s(ctx, action["name"], "validator name")
    elif kind == "rotate_validator_key":
        _fields(ctx, action, ("name", "bls_public_key", "pop"))
        out["name"] = _s(ctx, action["name"], "validator name")
        out["bls_public_key"] = _b(ctx, action["bls_public_key"], "bls_public_key", BLS_KEY_SIZE)
        out["pop"] = _b(ctx, action["pop"], "pop", BLS_POP_SIZE)
    elif kind == "set_consensus":
        _fields(ctx, action, ("params",))
        params = action["params"]
        ctx.require(type(params) is dict and params, "params must be a non-empty dict")
        checked: dict[str, Value] = {}
        for key in sorted(params):
            v = params[key]
            if key in BOOL_PARAMS:
                ctx.require(type(v) is bool, f"consensus parameter {key} must be true or false")
            else:
                ctx.require(
                    key in CONSENSUS_RANGES,
                    f"consensus parameter {key!r} cannot be changed by governance (changeable: "
                    f"{', '.join(sorted([*CONSENSUS_RANGES, *BOOL_PARAMS]))})",
                )
                lo, hi = CONSENSUS_RANGES[key]
                ctx.require(
                    type(v) is int and lo <= v <= hi,
                    f"consensus parameter {key} must be an integer between {lo} and {hi}, "
                    f"not {v!r}",
                )
            checked[key] = v
        out["params"] = checked
    elif kind in ("register_contract", "upgrade_contract"):
        _fields(ctx, action, ("name", "code_hash"))
        out["name"] = _contract_name(ctx, action["name"])
        out["code_hash"] = _b(ctx, action["code_hash"], "code_hash", 32)
        ctx.require(out["name"] != NAME, "the governance contract itself is part of the node")
    elif kind == "retire_contract":
        _fields(ctx, action, ("name",))
        out["name"] = _contract_name(ctx, action["name"])
        ctx.require(out["name"] != NAME, "the governance contract itself is part of the node")
    elif kind == "register_circuit":
        _fields(ctx, action, ("name", "vk_hash", "transcript_hash"))
        out["name"] = _s(ctx, action["name"], "circuit name")
        out["vk_hash"] = _b(ctx, action["vk_hash"], "vk_hash", 32)
        out["transcript_hash"] = _b(ctx, action["transcript_hash"], "transcript_hash", 32)
    elif kind == "rotate_regulator":
        _fields(ctx, action, ("public_key",))
        key = action["public_key"]
        ctx.require(
            type(key) is list
            and len(key) == 2
            and all(type(c) is str and c.isdigit() and len(c) <= 80 for c in key),
            "public_key must be [x, y], two decimal strings",
        )
        try:
            check_key((int(key[0]), int(key[1])), "the regulator key")
        except Exception as e:  # ValidationError: off the curve or outside the subgroup
            raise Revert(str(e)) from None
        out["public_key"] = [str(int(key[0])), str(int(key[1]))]
    elif kind == "set_mpc_servers":
        _fields(ctx, action, ("servers",))
        servers = action["servers"]
        ctx.require(type(servers) is list and len(servers) == 3, "servers must list 3 servers")
        norm: list[Value] = []
        for i, srv in enumerate(servers):
            ctx.require(
                type(srv) is dict and sorted(srv) == ["address", "host", "port", "public_key"],
                f"server {i} must be {{address, host, port, public_key}}",
            )
            port = srv["port"]
            ctx.require(type(port) is int and 0 < port < 65536, f"server {i}: bad port")
            norm.append(
                {
                    "address": _b(ctx, srv["address"], f"server {i} address", ADDRESS_SIZE),
                    "host": _s(ctx, srv["host"], f"server {i} host", MAX_HOST),
                    "port": port,
                    "public_key": _b(ctx, srv["public_key"], f"server {i} public_key", 32),
                }
            )
        keys = [s["public_key"] for s in norm]
        ctx.require(len(keys) == len(dict.fromkeys(keys)), "the servers' keys must differ")
        addresses = [s["address"] for s in norm]
        ctx.require(
            len(addresses) == len(dict.fromkeys(addresses)), "the servers' addresses must differ"
        )
        out["servers"] = norm
    if "bls_public_key" in out:
        ctx.require(
            ctx.verify_bls_pop(out["bls_public_key"], out["pop"]),
            "the proof of possession does not verify for this BLS key (a key its owner "
            "cannot sign with would let it forge aggregate votes)",
        )
    return out


def _consensus_value(params: ConsensusParams) -> dict[str, Value]:
    dump = params.model_dump()
    return {k: dump[k] for k in sorted([*CONSENSUS_RANGES, *BOOL_PARAMS])}


def genesis_schedule(genesis: Genesis) -> dict[str, Value]:
    """What is in force before any change: each kind's value as genesis gives it."""
    validators: list[Value] = [
        {
            "name": v.name,
            "bls_public_key": bytes.fromhex(v.bls_public_key),
            "pop": bytes.fromhex(v.pop),
            "account": None if v.account is None else bytes.fromhex(v.account),
        }
        for v in genesis.validators
    ]
    contracts: dict[str, Value] = {
        c.name: {"code_hash": bytes.fromhex(c.code_hash), "status": "active"}
        for c in genesis.contracts
    }
    circuits_doc = genesis.canonical_obj()["zk_circuits"]
    circuits: dict[str, Value] = {
        name: {"vk_hash": vk_hash(circuits_doc[name]), "transcript_hash": None}
        for name in sorted(circuits_doc)
    }
    reg = genesis.zk_params.get("regulator")
    regulator: Value = [str(reg[0]), str(reg[1])] if isinstance(reg, list) else None
    servers: list[Value] = []
    for srv in genesis.mpc.get("servers", []) if isinstance(genesis.mpc, dict) else []:
        # Genesis names a server's channel key ``channel_key`` (the cluster file's
        # ``public_key``); its account, which signs its answers, ``address``.
        key = srv.get("channel_key", srv.get("public_key")) if isinstance(srv, dict) else None
        if isinstance(srv, dict) and key is not None and {"address", "host", "port"} <= srv.keys():
            servers.append(
                {
                    "address": bytes.fromhex(str(srv["address"])),
                    "host": str(srv["host"]),
                    "port": int(srv["port"]),
                    "public_key": bytes.fromhex(str(key)),
                }
            )
    return {
        "validators": validators,
        "consensus": _consensus_value(genesis.consensus),
        "contracts": contracts,
        "circuits": circuits,
        "regulator": regulator,
        "mpc_servers": servers,
    }


def threshold_of(genesis: Genesis, members: int) -> int:
    """Approvals needed with ``members`` members in force (see the module notes)."""
    t = genesis.governance_params.threshold
    default = (2 * members + 2) // 3  # ceil(2m/3)
    return max(1, min(members, default if t is None else t))


def apply(ctx: Context, genesis: Genesis, value: Value, action: dict[str, Value]) -> Value:
    """The value of the action's kind after the action, from ``value`` (what would be in force
    just before it); Revert if the action does not apply to it."""
    kind = action["kind"]
    if kind in ("add_validator", "remove_validator", "rotate_validator_key"):
        vals: list[dict[str, Value]] = [dict(v) for v in value]
        names = [v["name"] for v in vals]
        if kind == "add_validator":
            ctx.require(action["name"] not in names, f"validator {action['name']} exists already")
            ctx.require(len(vals) < MAX_VALIDATORS, f"at most {MAX_VALIDATORS} validators")
            vals.append(
                {
                    "name": action["name"],
                    "bls_public_key": action["bls_public_key"],
                    "pop": action["pop"],
                    "account": action["account"],
                }
            )
        else:
            ctx.require(action["name"] in names, f"no validator named {action['name']}")
            i = names.index(action["name"])
            if kind == "remove_validator":
                ctx.require(len(vals) > 1, "the last validator cannot be removed")
                del vals[i]
            else:
                vals[i]["bls_public_key"] = action["bls_public_key"]
                vals[i]["pop"] = action["pop"]
        keys = [v["bls_public_key"] for v in vals]
        accounts = [v["account"] for v in vals if v["account"] is not None]
        ctx.require(len(keys) == len(dict.fromkeys(keys)), "that BLS key is another validator's")
        ctx.require(
            len(accounts) == len(dict.fromkeys(accounts)), "that account is another member's"
        )
        ctx.require(
            any(v["account"] is not None for v in vals),
            "the change would leave no member to govern the chain",
        )
        return vals
    if kind == "set_consensus":
        merged = dict(value)
        merged.update(action["params"])
        # The genesis rules that tie parameters together, in our own words: a receipt must
        # not carry a library's message (it may change between versions; receipts are hashed).
        rnd, stage2, drift = merged["round_ms"], merged["stage2_ms"], merged["max_time_drift_ms"]
        ctx.require(stage2 < rnd, f"stage2_ms must be shorter than round_ms ({stage2} >= {rnd})")
        upper = max(MAX_DRIFT_ROUNDS * rnd, 60_000)
        ctx.require(
            drift == 0 or 2 * rnd <= drift <= upper,
            f"max_time_drift_ms must be 0 or between {2 * rnd} and {upper}",
        )
        try:
            genesis.consensus.changed(merged)  # a backstop for any other genesis rule
        except ValueError:
            raise Revert("the consensus parameters would break a genesis rule") from None
        return merged
    if kind in ("register_contract", "upgrade_contract", "retire_contract"):
        reg = dict(value)
        name = action["name"]
        entry: Any = reg.get(name)
        if kind == "register_contract":
            ctx.require(
                entry is None,
                f"contract {name} is registered already (retired names are never reused: "
                "its state stays under that name)",
            )
            reg[name] = {"code_hash": action["code_hash"], "status": "active"}
        else:
            ctx.require(
                entry is not None and entry["status"] == "active",
                f"no active contract named {name}",
            )
            if kind == "upgrade_contract":
                ctx.require(
                    entry["code_hash"] != action["code_hash"],
                    f"contract {name} runs that code already",
                )
                reg[name] = {"code_hash": action["code_hash"], "status": "active"}
            else:
                reg[name] = {"code_hash": entry["code_hash"], "status": "retired"}
        return reg
    if kind == "register_circuit":
        circuits = dict(value)
        circuits[action["name"]] = {
            "vk_hash": action["vk_hash"],
            "transcript_hash": action["transcript_hash"],
        }
        return circuits
    if kind == "rotate_regulator":
        return action["public_key"]
    return action["servers"]


def _record(
    pid: bytes,
    proposer: bytes,
    action: dict[str, Value],
    created: int,
    expires: int,
    activation: int | None,
) -> dict[str, Value]:
    return {
        "id": pid,
        "proposer": proposer,
        "action": action,
        "created": created,
        "expires": expires,
        "activation": activation,
        "approvals": [proposer],
        "status": "open",
        "passed_at": None,
        "effective": None,
        "reason": "",
    }


class Governance(Contract):
    """Proposals, approvals and the schedule of what is in force (see the module notes)."""

    name = NAME

    def __init__(self, genesis: Genesis) -> None:
        super().__init__(genesis)
        # Computed once (it hashes genesis's verification keys); read-only afterwards:
        # ``apply`` copies before it changes anything.
        self._genesis_values = genesis_schedule(genesis)

    # --- the schedule -----------------------------------------------------------------

    def _base(self) -> dict[str, Value]:
        return self._genesis_values

    def _count(self, ctx: Context, kind: str) -> int:
        return int(ctx.get(f"s/{kind}/n", 0))

    def _entry(self, ctx: Context, kind: str, k: int) -> list[Value]:
        return ctx.get(f"s/{kind}/{k}")

    def _at(self, ctx: Context, kind: str, height: int, base: dict[str, Value]) -> Value:
        """The value of ``kind`` in force at ``height``."""
        k = self._count(ctx, kind)
        while k > 0:
            k -= 1
            entry = self._entry(ctx, kind, k)
            if entry[0] <= height:
                return entry[1]
        return base[kind]

    def _latest(self, ctx: Context, kind: str, base: dict[str, Value]) -> tuple[Value, int]:
        """The value of ``kind`` once everything scheduled is in force, and the last
        activation height scheduled for it (0: none)."""
        k = self._count(ctx, kind)
        if k == 0:
            return base[kind], 0
        entry = self._entry(ctx, kind, k - 1)
        return entry[1], int(entry[0])

    def _members(self, validators: Value) -> list[bytes]:
        return [v["account"] for v in validators if v["account"] is not None]

    # --- transactions -----------------------------------------------------------------

    @method
    def propose(self, ctx: Context, action: dict, activation: int | None) -> bytes:
        """File ``action`` (see ACTION_KIND); ``activation``: the height it should take effect
        at (None: the passing height + the genesis activation delay). Returns the id."""
        base = self._base()
        members = self._members(self._at(ctx, "validators", ctx.height, base))
        ctx.require(
            ctx.sender in members,
            "only members may propose: the sender is not the account of a validator in force",
        )
        canon = check_action(ctx, action)
        kind = ACTION_KIND[canon["kind"]]
        apply(ctx, self.genesis, self._latest(ctx, kind, base)[0], canon)  # applies today?
        params = self.genesis.governance_params
        expires = ctx.height + params.proposal_lifetime
        if activation is not None:
            ctx.require(
                ctx.height + 2 <= activation <= expires + 10_000_000,
                f"activation must be between {ctx.height + 2} (two blocks ahead) and "
                f"{expires + 10_000_000}",
            )
        pid = encoding.hash_value(
            {
                "chain_id": ctx.chain_id,
                "action": canon,
                "activation": activation,
                "proposer": ctx.sender,
                "height": ctx.height,
                "tx": ctx.tx_hash,
            }
        )
        record = _record(pid, ctx.sender, canon, ctx.height, expires, activation)
        n = int(ctx.get("n", 0))
        ctx.set(f"i/{n}", pid)
        ctx.set("n", n + 1)
        ctx.emit("Proposed", id=pid, proposer=ctx.sender, kind=canon["kind"], expires=expires)
        self._tally(ctx, record, members, base)
        return pid

    @method
    def approve(self, ctx: Context, proposal: bytes) -> str:
        """Approve an open proposal as a member (once); returns its status afterwards."""
        raw = ctx.get(b"p" + proposal)
        ctx.require(raw is not None, f"no proposal {proposal.hex()}")
        record: dict[str, Value] = dict(raw)
        base = self._base()
        members = self._members(self._at(ctx, "validators", ctx.height, base))
        ctx.require(
            ctx.sender in members,
            "only members may approve: the sender is not the account of a validator in force",
        )
        ctx.require(
            record["status"] == "open", f"proposal {proposal.hex()} is {record['status']} already"
        )
        ctx.require(
            ctx.height <= record["expires"],
            f"proposal {proposal.hex()} expired at height {record['expires']}",
        )
        approvals = list(record["approvals"])
        ctx.require(ctx.sender not in approvals, "this member has approved this proposal already")
        approvals.append(ctx.sender)
        record["approvals"] = approvals
        return self._tally(ctx, record, members, base)

    def _tally(
        self, ctx: Context, record: dict[str, Value], members: list[bytes], base: dict[str, Value]
    ) -> str:
        """Record an approval; pass the proposal once it has enough of them."""
        count = sum(1 for a in record["approvals"] if a in members)
        need = threshold_of(self.genesis, len(members))
        ctx.emit("Approved", id=record["id"], member=ctx.sender, approvals=count, threshold=need)
        if count >= need:
            action: dict[str, Value] = record["action"]
            kind = ACTION_KIND[action["kind"]]
            latest, last_at = self._latest(ctx, kind, base)
            wanted = record["activation"]
            if wanted is None:
                wanted = ctx.height + self.genesis.governance_params.activation_delay
            at = max(int(wanted), ctx.height + 2, last_at)
            try:
                value = apply(ctx, self.genesis, latest, action)
            except Revert as e:
                record["status"] = "failed"
                record["reason"] = e.message
                ctx.emit("Failed", id=record["id"], reason=e.message)
            else:
                k = self._count(ctx, kind)
                ctx.set(f"s/{kind}/{k}", [at, value, record["id"]])
                ctx.set(f"s/{kind}/n", k + 1)
                record["status"] = "passed"
                record["passed_at"] = ctx.height
                record["effective"] = at
                ctx.emit("Passed", id=record["id"], kind=action["kind"], effective=at)
        ctx.set(b"p" + record["id"], record)
        return str(record["status"])

    # --- queries ----------------------------------------------------------------------

    def _show(self, ctx: Context, record: dict[str, Value]) -> dict[str, Value]:
        out = dict(record)
        if out["status"] == "open" and ctx.height > out["expires"]:
            out["status"] = "expired"
        validators = self._at(ctx, "validators", ctx.height, self._base())
        members = self._members(validators)
        out["threshold"] = threshold_of(self.genesis, len(members))
        out["counted"] = sum(1 for a in record["approvals"] if a in members)
        return out

    @method(readonly=True)
    def proposal(self, ctx: Context, proposal: bytes) -> dict:
        """One proposal, with its status as of the queried height."""
        raw = ctx.get(b"p" + proposal)
        ctx.require(raw is not None, f"no proposal {proposal.hex()}")
        return self._show(ctx, dict(raw))

    @method(readonly=True)
    def proposals(self, ctx: Context, offset: int, limit: int) -> dict:
        """Proposals newest first: ``offset`` of them skipped, at most ``limit`` (<= 100)."""
        ctx.require(offset >= 0 and 0 < limit <= MAX_PAGE, f"limit is 1 to {MAX_PAGE}")
        n = int(ctx.get("n", 0))
        out: list[Value] = []
        k = n - 1 - offset
        while k >= 0 and len(out) < limit:
            pid = ctx.get(f"i/{k}")
            out.append(self._show(ctx, dict(ctx.get(b"p" + pid))))
            k -= 1
        return {"total": n, "proposals": out}

    @method(readonly=True)
    def in_force(self, ctx: Context, height: int) -> dict:
        """Everything governance decides, as in force at ``height`` (a block's height):
        final for heights up to the queried head + 2 (a change passing later takes effect
        later)."""
        ctx.require(height >= 0, "height must not be negative")
        base = self._base()
        out: dict[str, Value] = {"height": height}
        for kind in KINDS:
            out[kind] = self._at(ctx, kind, height, base)
        members = self._members(out["validators"])
        out["members"] = members
        out["threshold"] = threshold_of(self.genesis, len(members))
        return out

    @method(readonly=True)
    def schedule(self, ctx: Context, kind: str) -> list:
        """Every change of ``kind`` that passed, oldest first: [activation height, value,
        proposal id] (how a light client follows the history of a kind)."""
        ctx.require(kind in KINDS, f"kind is one of {', '.join(KINDS)}")
        return [self._entry(ctx, kind, k) for k in range(self._count(ctx, kind))]
