"""The client API's request and response shapes, and the OpenAPI document built from them.

Why pydantic models here when :mod:`accord.base.types` already has dataclasses: the dataclasses are
the hot-path, canonical forms; these models describe the *JSON edge* (what a browser, curl or
another language sees), validate what comes in, and generate the OpenAPI document, so the
document can never drift from what the server actually checks.

JSON conventions (one rule each, so any client can follow them):

* Byte strings in fixed fields (hashes, keys, signatures) are lower-case hex without ``0x``.
* Wherever a light client must re-hash what was signed, a ``raw`` field carries the canonical
  encoding (:mod:`accord.base.encoding`) as hex: JSON is a view, ``raw`` is the truth.
* Contract values (tx args, results, event data, state values) use a tagged mapping of the
  canonical value model: ``bytes`` become ``{"$bytes": "<hex>"}``; a map whose keys start with
  ``$`` is wrapped as ``{"$map": {...}}`` so that it cannot be confused with a tag. Everything
  else (null, bool, int, str, list, map) is itself. See :func:`value_to_json`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from accord.base.encoding import MAX_VALUE_DEPTH, Value
from accord.base.errors import DecodeError
from accord.base.genesis import Genesis
from accord.base.types import Block, Certificate, Event, Header, Receipt, Tx

HEX_PATTERN = r"^([0-9a-fA-F]{2})*$"
HASH_HEX_PATTERN = r"^[0-9a-fA-F]{64}$"

# --- contract values <-> JSON ---------------------------------------------------------------

_MAX_JSON_DEPTH = MAX_VALUE_DEPTH  # one limit with admission (accord.base.encoding.MAX_VALUE_DEPTH)


def _too_deep() -> DecodeError:
    return DecodeError(
        f"value nests too deeply (more than {_MAX_JSON_DEPTH} levels of lists and maps)"
    )


def value_to_json(v: Value, _depth: int = 0) -> Any:
    """The JSON view of a canonical value (the tagged mapping described in the module doc).

    Lists and maps nest at most ``MAX_VALUE_DEPTH`` levels, counted as admission counts
    them, so every admitted transaction's arguments have a JSON view."""
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is bytes:
        return {"$bytes": v.hex()}
    if (t is list or t is tuple or t is dict) and _depth >= _MAX_JSON_DEPTH:
        raise _too_deep()
    if t is list or t is tuple:
        return [value_to_json(x, _depth + 1) for x in v]
    if t is dict:
        inner = {k: value_to_json(x, _depth + 1) for k, x in v.items()}
        if any(k.startswith("$") for k in v):
            return {"$map": inner}
        return inner
    raise DecodeError(f"type {t.__name__} is not a contract value")


def value_from_json(j: Any, _depth: int = 0) -> Value:
    """Inverse of :func:`value_to_json`; raises :class:`DecodeError` for anything else."""
    t = type(j)
    if j is None or t is bool or t is int or t is str:
        return j
    if t is float:
        raise DecodeError("floats are not contract values; use integers (e.g. cents)")
    if (t is list or (t is dict and set(j) != {"$bytes"})) and _depth >= _MAX_JSON_DEPTH:
        raise _too_deep()
    if t is list:
        return [value_from_json(x, _depth + 1) for x in j]
    if t is dict:
        if set(j) == {"$bytes"}:
            h = j["$bytes"]
            if type(h) is not str:
                raise DecodeError("$bytes must hold a hex string")
            return parse_hex(h, "$bytes")
        if set(j) == {"$map"}:
            inner = j["$map"]
            if type(inner) is not dict:
                raise DecodeError("$map must hold an object")
            return {k: value_from_json(x, _depth + 1) for k, x in inner.items()}
        tagged = [k for k in j if k.startswith("$")]
        if tagged:
            raise DecodeError(f"unknown tag {tagged[0]!r} (wrap maps with $-keys in $map)")
        return {k: value_from_json(x, _depth + 1) for k, x in j.items()}
    raise DecodeError(f"JSON {t.__name__} is not a contract value")


MAX_UINT_DIGITS = 20  # 2**64 - 1 has 20 digits


def parse_uint(text: str, what: str) -> int:
    """The one integer parser for path and query parameters: ASCII digits only, below 2**64.

    ``int()`` alone reads ``"1_0"`` as 10, ``"١"`` (Arabic-Indic one) and ``"１"`` (full-width)
    as 1, and ``str.isdigit`` accepts ``"²"``, which ``int`` then refuses with a ValueError
    (a 500): one spelling per number, like the canonical encoding's one encoding per value."""
    if not (0 < len(text) <= MAX_UINT_DIGITS and text.isascii() and text.isdigit()):
        raise DecodeError(
            f"{what} must be a non-negative integer in ASCII digits, got {text[:32]!r}"
        )
    n = int(text)
    if n >= 2**64:
        raise DecodeError(f"{what} is out of range")
    return n


def _query_uint(v: Any) -> Any:
    """Query values arrive as strings: parse them strictly (pydantic's lax int would not).
    A bad one is an invalid request (422) like any other bad query field, not a decode error."""
    if not isinstance(v, str):
        return v
    try:
        return parse_uint(v, "integer parameter")
    except DecodeError as e:
        raise ValueError(e.message) from None


QueryUint = Annotated[int, BeforeValidator(_query_uint)]


_HEX = frozenset("0123456789abcdefABCDEF")


def parse_hex(s: str, what: str, size: int | None = None) -> bytes:
    """Hex to bytes, strictly: ASCII hex digits of either case, an even number of them, an
    optional ``0x`` prefix, nothing else. ``bytes.fromhex`` alone also takes spaces between
    bytes, so ``"ab cd"`` and ``"abcd"`` named one hash in a path: one text, one value.
    Raises :class:`DecodeError` naming ``what``."""
    if s.startswith(("0x", "0X")):
        s = s[2:]
    if len(s) % 2 or not _HEX.issuperset(s):
        raise DecodeError(f"{what} is not valid hex (an even number of hex digits)")
    raw = bytes.fromhex(s)
    if size is not None and len(raw) != size:
        raise DecodeError(f"{what} must have {size} bytes, got {len(raw)}")
    return raw


# --- base ------------------------------------------------------------------------------------


class WireModel(BaseModel):
    """A request or response shape: unknown fields are refused (a typo is an error, not ignored)."""

    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A response that may grow fields (clients must ignore what they do not know)."""

    model_config = ConfigDict(extra="allow")


JsonValue = Any
"""A contract value in the tagged JSON mapping (see the module doc)."""

# --- errors ------------------------------------------------------------------------------------


class ErrorBody(WireModel):
    code: str = Field(description="stable machine-readable code, e.g. bad_nonce, too_large")
    message: str = Field(description="what was wrong, for humans")


class ErrorResponse(WireModel):
    """Every 4xx/5xx answer of the API has this shape."""

    error: ErrorBody


# --- requests --------------------------------------------------------------------------------


class SubmitTxRequest(WireModel):
    """One signed transaction, as the hex of its canonical encoding (``Tx.encode()``)."""

    # Hex is checked by the handler (bad hex is a 400 decode_error, like undecodable bytes).
    tx: str = Field(
        description="canonical tx bytes, hex", json_schema_extra={"pattern": HEX_PATTERN}
    )


class SubmitTxBatchRequest(WireModel):
    """Many signed transactions in one request (what load generators and gateways use)."""

    txs: list[str] = Field(
        min_length=1,
        description="canonical tx bytes, hex, one per tx (a bad item, bad hex included, "
        "rejects only itself: its result holds the error)",
    )


class QueryRequest(WireModel):
    """Arguments of a read-only contract call, in the tagged JSON mapping."""

    args: dict[str, JsonValue] = Field(default_factory=dict)


class HeadersQuery(WireModel):
    """Query string of ``GET /v1/headers``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: QueryUint = Field(alias="from", ge=0, description="first height")
    limit: QueryUint = Field(default=100, ge=1, le=1000, description="at most this many headers")


class StateQuery(WireModel):
    """Query string of ``GET /v1/state/{contract}/{key}``."""

    key_type: Literal["hex", "str"] = Field(
        default="hex", description="whether {key} is hex bytes or a str key of the contract"
    )
    height: int | None = Field(
        default=None,
        ge=0,
        description="prove against this height's state root (default: the head's; a height "
        "whose blocks were pruned is 404)",
    )


class StreamQuery(WireModel):
    """Query string of ``GET /v1/stream``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: QueryUint | None = Field(
        default=None,
        alias="from",
        ge=0,
        description="replay committed blocks from this height before following new ones",
    )
    blocks: bool = Field(default=True, description="send block messages")
    events: bool = Field(default=True, description="send event messages")
    contract: str | None = Field(
        default=None, max_length=64, description="only events of this contract"
    )


# --- ledger objects ------------------------------------------------------------------------


class EventModel(WireModel):
    contract: str
    name: str
    data: dict[str, JsonValue]

    @classmethod
    def of(cls, e: Event) -> EventModel:
        return cls(contract=e.contract, name=e.name, data=value_to_json(e.data))


class ReceiptModel(WireModel):
    tx_hash: str
    ok: bool
    gas_used: int
    result: JsonValue = None
    error_code: str = ""
    error: str = ""
    events: list[EventModel] = Field(default_factory=list)
    hash: str = Field(description="receipt hash (the second half of the tx-root leaf)")
    raw: str = Field(description="canonical encoding of the receipt, hex")

    @classmethod
    def of(cls, r: Receipt) -> ReceiptModel:
        from accord.base import encoding

        return cls(
            tx_hash=r.tx_hash.hex(),
            ok=r.ok,
            gas_used=r.gas_used,
            result=value_to_json(r.result),
            error_code=r.error_code,
            error=r.error,
            events=[EventModel.of(e) for e in r.events],
            hash=r.hash.hex(),
            raw=encoding.encode(r.to_obj()).hex(),
        )


class TxModel(WireModel):
    hash: str
    chain_id: str
    contract: str
    method: str
    args: dict[str, JsonValue]
    public_key: str
    sender: str = Field(description="account address of the signer")
    nonce: int
    gas_limit: int
    signature: str
    raw: str = Field(description="canonical encoding of the tx, hex")

    @classmethod
    def of(cls, t: Tx) -> TxModel:
        return cls(
            hash=t.hash.hex(),
            chain_id=t.chain_id,
            contract=t.contract,
            method=t.method,
            args=value_to_json(t.args),
            public_key=t.public_key.hex(),
            sender=t.sender.hex(),
            nonce=t.nonce,
            gas_limit=t.gas_limit,
            signature=t.signature.hex(),
            raw=t.encode().hex(),
        )


class HeaderModel(WireModel):
    hash: str
    chain_id: str
    height: int
    round: int
    parent_hash: str
    tx_root: str
    state_root: str
    tx_count: int
    proposer: int
    time_ms: int
    sortition: str
    body_hash: str = Field(
        description="hash over the block's transaction hashes, in order (accord.base.types.body_hash)"
    )
    raw: str = Field(description="canonical encoding of the header (what is hashed), hex")

    @classmethod
    def of(cls, h: Header) -> HeaderModel:
        return cls(
            hash=h.hash.hex(),
            chain_id=h.chain_id,
            height=h.height,
            round=h.round,
            parent_hash=h.parent_hash.hex(),
            tx_root=h.tx_root.hex(),
            state_root=h.state_root.hex(),
            tx_count=h.tx_count,
            proposer=h.proposer,
            time_ms=h.time_ms,
            sortition=h.sortition.hex(),
            body_hash=h.body_hash.hex(),
            raw=h.encode().hex(),
        )


class CertificateModel(WireModel):
    height: int
    round: int
    phase: int
    block_hash: str
    signers: str = Field(
        description="signer bitmap over the validator set of the certificate's height, hex"
    )
    signer_indices: list[int]
    signature: str = Field(description="aggregate BLS signature, hex")
    raw: str = Field(description="canonical encoding of the certificate, hex")

    @classmethod
    def of(cls, c: Certificate, n: int) -> CertificateModel:
        """``n``: validators in the set of its height (a signer field is a bitmap, or per-signer
        counts in the weighted form large networks store; see accord.consensus)."""
        return cls(
            height=c.height,
            round=c.round,
            phase=c.phase,
            block_hash=c.block_hash.hex(),
            signers=c.signers.hex(),
            signer_indices=c.signer_indices(n),
            signature=c.signature.hex(),
            raw=c.encode().hex(),
        )


class HeaderResponse(WireModel):
    """A header with the certificate that commits it (null for genesis or not yet attached)."""

    header: HeaderModel
    certificate: CertificateModel | None


class HeadersResponse(WireModel):
    headers: list[HeaderResponse]
    head_height: int = Field(description="the node's head height when answering")


class BlockResponse(WireModel):
    hash: str
    height: int
    header: HeaderModel
    certificate: CertificateModel | None
    txs: list[TxModel]
    receipts: list[ReceiptModel] | None = Field(
        default=None, description="present when asked for with ?receipts=true"
    )

    @classmethod
    def of(
        cls,
        block: Block,
        cert: Certificate | None,
        receipts: list[Receipt] | None = None,
        *,
        n: int,
    ) -> BlockResponse:
        return cls(
            hash=block.hash.hex(),
            height=block.height,
            header=HeaderModel.of(block.header),
            certificate=CertificateModel.of(cert, n) if cert is not None else None,
            txs=[TxModel.of(t) for t in block.txs],
            receipts=[ReceiptModel.of(r) for r in receipts] if receipts is not None else None,
        )


# --- transactions -------------------------------------------------------------------------


class SubmitTxResponse(WireModel):
    tx_hash: str


class BatchItem(WireModel):
    tx_hash: str | None = None
    error: ErrorBody | None = None


class SubmitTxBatchResponse(WireModel):
    """Per-transaction outcome, in request order: each item has ``tx_hash`` or ``error``."""

    accepted: int
    results: list[BatchItem]


class InclusionProof(WireModel):
    """Merkle proof that ``leaf`` = tx_leaf(tx hash, receipt hash) is at ``index`` of ``count``
    leaves under ``tx_root`` (the committed header's); verify with
    ``accord.base.merkle.verify_merkle_proof(tx_root, leaf, index, count, siblings)``."""

    leaf: str
    index: int
    count: int
    siblings: list[str]
    tx_root: str


class TxStatusResponse(WireModel):
    tx_hash: str
    status: Literal["pending", "committed", "unknown"]
    height: int | None = None
    index: int | None = None
    block_hash: str | None = None
    receipt: ReceiptModel | None = None
    proof: InclusionProof | None = None
    tx: TxModel | None = None


# --- state and queries --------------------------------------------------------------------


class StateResponse(WireModel):
    """A state value proved against the state root of the header at ``height``.

    ``value`` is null when the key is absent; ``proof`` is then a non-membership proof.
    ``proof_raw`` is the proof's canonical encoding (``StateProof.to_obj()``), which is what
    ``accord.base.merkle.verify_state_proof(header.state_root, state_key, value, proof)`` takes.
    """

    contract: str
    key: str = Field(description="the contract-level key as given, hex or str")
    state_key: str = Field(description="the full state key in the authenticated tree, hex")
    value: str | None = Field(description="raw stored bytes (a canonical encoding), hex")
    decoded: JsonValue = Field(default=None, description="the stored value, tagged JSON")
    proof: JsonValue = Field(description="StateProof.to_obj() in the tagged JSON mapping")
    proof_raw: str = Field(description="canonical encoding of StateProof.to_obj(), hex")
    height: int
    header: HeaderModel


class QueryResponse(WireModel):
    result: JsonValue
    raw: str = Field(description="canonical encoding of the result, hex")
    height: int = Field(description="head height when the call ran (best effort)")


# --- node --------------------------------------------------------------------------------------


class ValidatorModel(WireModel):
    index: int
    name: str
    bls_public_key: str
    pop: str
    account: str | None = Field(default=None, description="the member's account address")
    host: str | None = Field(default=None, description="legacy genesis address, if any")
    port: int | None = None
    api_port: int | None = None


class AccountResponse(WireModel):
    address: str
    nonce: int = Field(description="transactions of this account committed so far")
    next_nonce: int = Field(
        description="the nonce the next transaction must carry (pending ones counted)"
    )


class ValidatorsResponse(WireModel):
    validators: list[ValidatorModel]
    n: int
    f: int = Field(description="Byzantine validators tolerated")
    quorum: int = Field(description="signers a certificate needs")


class StatusResponse(_Open):
    """What the node says about itself; at least these fields, possibly more."""

    chain_id: str
    genesis_hash: str
    height: int
    head_hash: str
    state_root: str
    healthy: bool = Field(
        default=True,
        description="false once the node halted on a fault it cannot retry "
        "(damaged storage, a certified block that does not apply here)",
    )
    fault: str | None = Field(
        default=None,
        description="why the node is unhealthy: why it halted, or why it cannot catch up "
        "(every peer pruned the blocks it needs next)",
    )
    holding: bool = Field(
        default=False,
        description="true while a folder restored from a backup catches up by certificates "
        "only, before it votes again (see the double-sign check in docs/operations.md)",
    )


class GenesisResponse(WireModel):
    hash: str
    genesis: Genesis


# --- stream ------------------------------------------------------------------------------------


class StreamHello(WireModel):
    """First message on ``/v1/stream``: the subscription is live from here on."""

    type: Literal["subscribed"] = "subscribed"
    height: int = Field(description="head height at subscription time")


class StreamBlock(WireModel):
    type: Literal["block"] = "block"
    height: int
    hash: str
    header: HeaderModel
    certificate: CertificateModel | None
    tx_hashes: list[str]
    receipts_ok: list[bool]


class StreamEvent(WireModel):
    type: Literal["event"] = "event"
    height: int
    tx_hash: str
    index: int = Field(description="index of the event within its transaction's receipt")
    event: EventModel


class StreamLagged(WireModel):
    """Sent (then the socket closes) when the client reads too slowly to keep up."""

    type: Literal["lagged"] = "lagged"
    message: str


# --- explorer ----------------------------------------------------------------------------------
# Shapes of the explorer's endpoints (accord.node.explorer). Every list is bounded by a
# ``limit`` (at most EXPLORER_MAX_LIMIT) and paged with a cursor, so no request reads more than
# one page of the chain however long it is.

EXPLORER_MAX_LIMIT = 100


class BlockListQuery(WireModel):
    """Query string of ``GET /v1/blocks``: newest first, below ``before`` (exclusive)."""

    before: QueryUint | None = Field(
        default=None, ge=1, description="list blocks below this height (default: the head + 1)"
    )
    limit: QueryUint = Field(default=20, ge=1, le=EXPLORER_MAX_LIMIT)


class PageQuery(WireModel):
    limit: QueryUint = Field(default=20, ge=1, le=EXPLORER_MAX_LIMIT)


TX_CURSOR = r"^[0-9]{1,19}(:[0-9]{1,9})?$"
"""An explorer index cursor: ``height`` or ``height:index`` (every match is in range: 19 digits
fit 64 bits, 9 fit 32)."""


class TxPageQuery(WireModel):
    """Query string of an account's or contract's transactions: newest first, strictly older
    than the cursor ``before`` (``H:I``: the transaction at index I of block H; ``H``: block H)."""

    limit: QueryUint = Field(default=20, ge=1, le=EXPLORER_MAX_LIMIT)
    before: str | None = Field(
        default=None, pattern=TX_CURSOR, description="list transactions older than this cursor"
    )


class SearchQuery(WireModel):
    q: str = Field(min_length=1, max_length=128, description="height, hash, address or contract")


class BlockSummary(WireModel):
    height: int
    hash: str
    round: int
    time_ms: int
    tx_count: int
    proposer: int
    signers: list[int] = Field(description="validators whose votes the certificate carries")


class BlockListResponse(WireModel):
    blocks: list[BlockSummary]
    head_height: int
    next_before: int | None = Field(description="``before`` of the next (older) page, if any")


class TxRef(WireModel):
    tx_hash: str
    height: int
    index: int
    contract: str
    method: str
    sender: str
    ok: bool
    gas_used: int


class TxListResponse(WireModel):
    """Recent transactions of an account (sent, or named in an event) or a contract, newest
    first, from the node's bounded explorer index (see ``indexed_from``)."""

    subject: str
    txs: list[TxRef]
    indexed_from: int = Field(description="the index covers blocks from this height on")
    indexed_to: int = Field(description="... up to this height (-1: nothing indexed yet)")
    next_before: str | None = Field(
        default=None, description="``before`` of the next (older) page; None: this is the last"
    )


class SearchResponse(WireModel):
    query: str
    kind: Literal["block", "tx", "pending_tx", "account", "contract", "none"]
    target: str = Field(description="height, hash, address or contract name to open")


class ValidatorActivity(WireModel):
    index: int
    name: str
    last_signed: int | None = Field(description="newest height in the window it signed")
    last_proposed: int | None
    signed: int = Field(description="certificates in the window carrying its vote")


class ChainPoint(WireModel):
    height: int
    time_ms: int
    tx_count: int
    interval_ms: int = Field(description="time since the previous block")


class ChainSummaryResponse(WireModel):
    head_height: int
    window: list[ChainPoint] = Field(description="the most recent blocks, oldest first")
    validators: list[ValidatorActivity]
    n: int
    quorum: int


class OracleRequestModel(WireModel):
    id: str
    program: str
    contract: str
    height: int
    deadline: int
    status: Literal["pending", "answered", "failed"]
    answered_at: int | None = None
    error: str = ""


class OracleListResponse(WireModel):
    requests: list[OracleRequestModel]
    indexed_from: int
    indexed_to: int


class ShieldedResponse(WireModel):
    """Public facts of the shielded pool: never a note's owner, amount or key."""

    present: bool = Field(description="whether this chain has a shielded pool")
    note_count: int = 0
    root: str = ""
    nullifiers_seen: int = Field(default=0, description="nullifiers spent in indexed blocks")
    recent: list[dict[str, Any]] = Field(
        default_factory=list,
        description="recent pool transactions: height, tx hash, nullifiers, commitments, root",
    )
    indexed_from: int = 0
    indexed_to: int = -1


class GovernancePageQuery(WireModel):
    """Query string of ``GET /v1/explorer/governance``: proposals newest first, numbered
    below ``before`` (proposals are numbered 0, 1, ... in the order they were made, so the
    cursor stays put while new proposals arrive)."""

    limit: QueryUint = Field(default=20, ge=1, le=EXPLORER_MAX_LIMIT)
    before: QueryUint | None = Field(
        default=None, ge=1, le=2**63 - 1, description="list proposals numbered below this"
    )


class ApprovalModel(WireModel):
    member: str = Field(description="the approving member's account, hex (first: the proposer)")
    validator: str | None = Field(description="its validator's name at the head, if still one")
    counted: bool = Field(description="whether it counts at the head (still a member)")


ProposalStatus = Literal["open", "passed", "in_force", "expired", "failed"]


class ProposalModel(WireModel):
    number: int | None = Field(
        default=None, description="its place in the order proposals were made (lists only)"
    )
    id: str
    kind: str
    action: JsonValue = Field(description="the action, tagged JSON (what members approved)")
    proposer: str
    created: int = Field(description="height of the block that made it")
    expires: int = Field(description="the last height an approval counts in")
    activation: int | None = Field(description="the activation height the proposer asked for")
    approvals: list[ApprovalModel]
    counted: int = Field(description="approvals of members in force at the head")
    threshold: int = Field(description="approvals needed at the head")
    status: ProposalStatus = Field(
        description="open, expired (never passed in time), failed (passed but no longer "
        "applied), passed (scheduled), in_force (its activation height is at or below the head)"
    )
    passed_at: int | None
    effective: int | None = Field(description="the activation height it was scheduled at")
    reason: str = ""
    state_key: str = Field(
        description="its record's key in the governance contract, hex (GET "
        "/v1/state/governance/{state_key} proves it)"
    )


class InForceValidator(WireModel):
    name: str
    bls_public_key: str
    account: str | None


class InForceContract(WireModel):
    name: str
    code_hash: str
    status: Literal["active", "retired"]


class InForceModel(WireModel):
    """What governance decides, as in force at ``height``."""

    height: int
    validators: list[InForceValidator]
    consensus: dict[str, int | bool]
    contracts: list[InForceContract]
    circuits: dict[str, JsonValue]
    regulator: JsonValue
    mpc_servers: JsonValue
    members: list[str]
    threshold: int


class GovernanceListResponse(WireModel):
    present: bool = Field(description="whether this chain has the governance contract")
    head_height: int = -1
    total: int = 0
    proposals: list[ProposalModel] = Field(default_factory=list)
    next_before: int | None = Field(
        default=None, description="``before`` of the next (older) page; None: this is the last"
    )
    in_force: InForceModel | None = None


class ProposalResponse(WireModel):
    head_height: int
    proposal: ProposalModel


# --- OpenAPI -----------------------------------------------------------------------------------

ALL_MODELS: list[type[BaseModel]] = [
    ErrorResponse,
    SubmitTxRequest,
    SubmitTxBatchRequest,
    QueryRequest,
    SubmitTxResponse,
    SubmitTxBatchResponse,
    TxStatusResponse,
    BlockResponse,
    HeaderResponse,
    HeadersResponse,
    StateResponse,
    QueryResponse,
    ValidatorsResponse,
    AccountResponse,
    StatusResponse,
    GenesisResponse,
    StreamHello,
    StreamBlock,
    StreamEvent,
    StreamLagged,
    BlockListResponse,
    TxListResponse,
    SearchResponse,
    ChainSummaryResponse,
    OracleListResponse,
    ShieldedResponse,
    GovernanceListResponse,
    ProposalResponse,
]


class Param(WireModel):
    name: str
    where: Literal["path", "query"]
    schema_: dict[str, Any]
    description: str = ""
    required: bool = True


class Route(WireModel):
    """One documented endpoint (the server's route table is built from the same list)."""

    method: Literal["get", "post"]
    path: str
    summary: str
    operation_id: str
    response: str | None = Field(default=None, description="name of the 200/202 response model")
    status: int = 200
    request: str | None = None
    raw_request: bool = False
    params: list[Param] = Field(default_factory=list)
    errors: list[int] = Field(default_factory=list)
    content_type: str = "application/json"


def openapi_document(routes: list[Route], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document whose schemas are generated by pydantic from :data:`ALL_MODELS`.

    OpenAPI 3.1 uses JSON Schema 2020-12, which is what pydantic emits, so the schemas go in
    unchanged; only ``$ref`` targets are pointed at ``#/components/schemas``.
    """
    _, top = models_json_schema(
        [(m, "serialization") for m in ALL_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    names = {m.__name__ for m in ALL_MODELS}
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.operation_id, "responses": {}}
        if r.params:
            op["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema_,
                }
                for p in r.params
            ]
        if r.request is not None:
            assert r.request in names, r.request
            content: dict[str, Any] = {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{r.request}"}}
            }
            if r.raw_request:
                content["application/octet-stream"] = {
                    "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
                }
            op["requestBody"] = {"required": r.request != "QueryRequest", "content": content}
        if r.response is not None:
            assert r.response in names, r.response
            op["responses"][str(r.status)] = {
                "description": "success",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{r.response}"}}
                },
            }
            if any(p.name == "format" for p in r.params):  # format=raw: the canonical bytes
                op["responses"][str(r.status)]["content"]["application/octet-stream"] = {
                    "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
                }
        else:
            op["responses"][str(r.status)] = {
                "description": "success",
                "content": {r.content_type: {"schema": {"type": "string"}}},
            }
        # Every parameter and body goes through the strict parsers: malformed is 400, well
        # formed but invalid 422, whatever each route lists besides.
        checked = (400, 422) if r.params or r.request else ()
        for code in sorted({*r.errors, *checked, 429}):
            op["responses"][str(code)] = {
                "description": _ERROR_TEXT.get(code, "error"),
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                },
            }
        paths.setdefault(r.path, {})[r.method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Client API of one Accord validator. Byte strings are hex; `raw` "
            "fields hold canonical encodings; contract values use the tagged JSON mapping "
            '({"$bytes": hex}, {"$map": {...}}).',
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


_ERROR_TEXT = {
    400: "malformed request (bad hex, bad JSON, undecodable bytes, bad arguments)",
    404: "unknown height, hash, contract or route",
    409: "the transaction is already pending",
    413: "body too large",
    422: "well-formed but rejected (validation, signature, chain, nonce, revert)",
    426: "a WebSocket endpoint asked without Upgrade: websocket",
    429: "rate limit exceeded",
    503: "mempool full or node unavailable",
}
