"""Every error Accord raises on purpose.

Each error carries a stable machine-readable ``code`` (used by the HTTP API and receipts) and
a human message. Callers catch :class:`AccordError` at trust boundaries (network, API, contract
runtime) and turn it into a rejection that changes nothing.
"""

from __future__ import annotations


class AccordError(Exception):
    """Base of all deliberate Accord errors."""

    code = "accord_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class DecodeError(AccordError):
    """Bytes that are not the one canonical encoding of a valid value."""

    code = "decode_error"


class TooLarge(DecodeError):
    code = "too_large"


class NonCanonical(DecodeError):
    code = "non_canonical"


class TrailingBytes(DecodeError):
    code = "trailing_bytes"


class ValidationError(AccordError):
    """A value that decodes but breaks a rule of its type."""

    code = "invalid"


class InvalidSignature(AccordError):
    code = "invalid_signature"


class WrongChain(AccordError):
    code = "wrong_chain"


class NonceError(AccordError):
    code = "bad_nonce"


class GasLimitTooHigh(AccordError):
    """A transaction asks for more gas than a whole block may use: no block could hold it."""

    code = "gas_limit_too_high"


class DuplicateTx(AccordError):
    code = "duplicate_tx"


class MempoolFull(AccordError):
    code = "mempool_full"


class UnknownContract(AccordError):
    code = "unknown_contract"


class UnknownMethod(AccordError):
    code = "unknown_method"


class BadArguments(AccordError):
    code = "bad_arguments"


class OutOfGas(AccordError):
    code = "out_of_gas"


class Revert(AccordError):
    """Raised by a contract (``ctx.require``) to undo its transaction's writes."""

    code = "revert"


class GenesisError(AccordError):
    code = "genesis_error"


class CodeMismatch(GenesisError):
    """Local contract code differs from the code hash registered in genesis."""

    code = "code_mismatch"


class StorageError(AccordError):
    code = "storage_error"


class ProofError(AccordError):
    """A Merkle, state or zero-knowledge proof that does not verify."""

    code = "invalid_proof"


class NotFound(AccordError):
    code = "not_found"


class MpcError(AccordError):
    """An MPC computation that cannot go on (bad shares, unknown program, protocol misuse)."""

    code = "mpc_error"


class PeerGone(MpcError):
    """An MPC server stopped answering or closed its channel mid-computation."""

    code = "mpc_peer_gone"


class ChannelAuthError(MpcError):
    """A peer failed the channel handshake or sent a message that does not authenticate."""

    code = "mpc_channel_auth"


class NetError(AccordError):
    """A refused connection or dropped frame on the validator network. ``reason`` is a short
    stable word used as the metrics label (``bad_signature``, ``garbage``, ``oversized``...)."""

    code = "net_error"

    def __init__(
        self, message: str = "", reason: str = "net_error", remote: str | None = None
    ) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.remote = remote
        """With reason ``remote_error``: the error code the peer answered (a claim)."""


class HandshakeRefused(NetError):
    code = "handshake_refused"


class BadFrame(NetError):
    code = "bad_frame"


class InvalidRequest(ValidationError):
    """An API request whose JSON or query string has the wrong shape (HTTP 422)."""

    code = "invalid_request"


class RateLimited(AccordError):
    """Too many API requests from one client address (HTTP 429)."""

    code = "rate_limited"


class Unavailable(AccordError):
    """The node cannot serve this now (too many streams, head moving, shutting down): HTTP 503."""

    code = "unavailable"


class WaitTimeout(AccordError):
    """``Client.wait`` gave up before the transaction was committed."""

    code = "timeout"


class LightClientError(AccordError):
    """The light client could not establish a verified answer (no node served one)."""

    code = "light_client_error"


class NodeLied(LightClientError):
    """A node served something that failed a light-client check; it is not believed.

    ``node`` is the node's URL and ``check`` the stable name of the failed check
    (``certificate``, ``header_chain``, ``tx_inclusion``, ``state_proof``...).
    """

    code = "node_lied"

    def __init__(self, message: str = "", node: str = "", check: str = "") -> None:
        super().__init__(
            f"node {node}: {check} check failed: {message}" if node or check else message
        )
        self.node = node
        self.check = check


class ForkDetected(LightClientError):
    """Two conflicting headers with valid certificates: more than f validators misbehaved.

    ``evidence`` holds both headers and certificates (canonical hex) and the nodes that served
    them; the light client stops and refuses to answer until an operator intervenes.
    """

    code = "fork_detected"

    def __init__(self, message: str = "", evidence: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.evidence = dict(evidence or {})
