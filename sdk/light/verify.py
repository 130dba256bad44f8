"""The light client's checks, free of I/O: what a node said, against what the client trusts.

Every check has a stable name (the ``check`` of :class:`~accord.base.errors.NodeLied`):

===================  ============================================================================
``response``         the reply does not decode into the ledger's types (strict canonical decoding)
``header_chain_id``  the header is for another chain
``header_height``    the header is not at the height asked for
``genesis_header``   the height-0 header is not the genesis block's shape (zero parent, no txs,
                     genesis time)
``certificate``      missing, for another block, wrong phase, too few distinct signers for the
                     quorum, or an aggregate BLS signature that does not verify
``header_chain``     a header's parent hash is not the hash of the trusted header below it
``header_time``      a header's time is earlier than its parent's (validators refuse that)
``tx_hash``          the transaction's canonical bytes do not hash to the hash asked for
``tx_signature``     the transaction's Ed25519 signature or chain id is wrong
``receipt``          the receipt names another transaction
``tx_block``         the block hash or index the node names disagrees with the trusted header
``tx_inclusion``     the Merkle proof of (tx hash, receipt hash) does not lead to the header's
                     ``tx_root`` (or its leaf/count/root fields disagree with what we computed)
``state_key``        the state key is not the one the contract's key maps to
``state_header``     the header the state proof is against is not the trusted one at its height
``state_proof``      the value (or its absence) does not verify against the header's state root
``block_header``     a block does not carry the certified header of its height
``block_body``       a block's transactions are not the ones its header's body hash commits to
``block_receipts``   a block's receipts do not pair up with its transactions
``block_tx_root``    the (transaction, receipt) pairs do not give the certified tx root
===================  ============================================================================

A header that passes ``certificate`` was signed by at least ``genesis.quorum`` (2f+1) distinct
validators of the genesis set; with at most f of them faulty, at least f+1 honest validators
committed it, so it is the chain's block at that height. Nothing a node computed is believed:
hashes are recomputed from canonical bytes (``Header.hash``, ``Tx.hash``, ``Receipt.hash``),
leaves from those hashes, roots only ever come from certified headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import AccordError, InvalidSignature, NodeLied, ProofError, ValidationError
from accord.base.genesis import Genesis
from accord.base.merkle import merkle_root, tx_leaf, verify_merkle_proof, verify_state_proof
from accord.base.types import ZERO_HASH, Block, Certificate, Header, Receipt, Tx, body_hash
from accord.client import StateValue, TxStatus
from accord.consensus import verify_certificate
from accord.light.store import TrustedHeader

SHIELDED_CONTRACT = "shielded_pool"
SHIELDED_CIRCUIT = "shielded_transfer"


@dataclass(frozen=True)
class VerifiedTx:
    """A transaction, what it did, and where: all checked against a certified header."""

    tx_hash: bytes
    tx: Tx
    receipt: Receipt
    height: int
    index: int
    header: Header
    node: str

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_hash": self.tx_hash.hex(),
            "height": self.height,
            "index": self.index,
            "block_hash": self.header.hash.hex(),
            "tx_root": self.header.tx_root.hex(),
            "contract": self.tx.contract,
            "method": self.tx.method,
            "sender": self.tx.sender.hex(),
            "nonce": self.tx.nonce,
            "ok": self.receipt.ok,
            "gas_used": self.receipt.gas_used,
            "error_code": self.receipt.error_code,
            "events": [e.name for e in self.receipt.events],
            "node": self.node,
            "verified": ["certificate", "tx_hash", "tx_signature", "receipt", "tx_inclusion"],
        }


@dataclass(frozen=True)
class VerifiedState:
    """A state value (or its absence) proved against a certified header's state root."""

    contract: str
    key: bytes | str
    state_key: bytes
    value: bytes | None
    decoded: Value
    height: int
    header: Header
    node: str

    @property
    def present(self) -> bool:
        return self.value is not None

    def to_json(self) -> dict[str, Any]:
        from accord.base.wire import value_to_json

        return {
            "contract": self.contract,
            "key": self.key.hex() if isinstance(self.key, bytes) else self.key,
            "state_key": self.state_key.hex(),
            "present": self.present,
            "value": self.value.hex() if self.value is not None else None,
            "decoded": value_to_json(self.decoded) if self.value is not None else None,
            "height": self.height,
            "block_hash": self.header.hash.hex(),
            "state_root": self.header.state_root.hex(),
            "node": self.node,
            "verified": ["certificate", "state_key", "state_header", "state_proof"],
        }


@dataclass(frozen=True)
class VerifiedBlock:
    """A whole committed block and its receipts, checked against the certified header."""

    block: Block
    receipts: tuple[Receipt, ...]
    header: Header
    node: str

    @property
    def height(self) -> int:
        return self.header.height


@dataclass(frozen=True)
class VerifiedShieldedTransfer:
    """A committed shielded-pool transaction whose Groth16 proof the light client re-checked."""

    tx: VerifiedTx | None  # None when bare arguments were checked (no chain involved)
    nullifiers: tuple[bytes, bytes]
    commitments: tuple[bytes, bytes]
    root: bytes
    deposit: int
    withdrawal: int

    def to_json(self) -> dict[str, Any]:
        base = self.tx.to_json() if self.tx is not None else {"verified": []}
        return {
            **base,
            "nullifiers": [x.hex() for x in self.nullifiers],
            "commitments": [x.hex() for x in self.commitments],
            "merkle_root": self.root.hex(),
            "deposit": self.deposit,
            "withdrawal": self.withdrawal,
            "verified": [*base["verified"], "shielded_proof"],
        }


def lie(node: str, check: str, message: str) -> NodeLied:
    return NodeLied(message, node=node, check=check)


class Checker:
    """The trust root (genesis: chain id, validator BLS keys, quorum, ZK verification keys)
    and every check against it. Constructing it checks the validators' proofs of possession,
    which is what makes aggregate-signature verification safe against rogue keys."""

    def __init__(self, genesis: Genesis, verification_keys: Sequence[Any] = ()) -> None:
        """``verification_keys``: snarkjs vk JSON of circuits governance registered after
        genesis (a proof is checked only against the key in force at its height, by hash)."""
        genesis.check()
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.keys = genesis.validator_keys()
        self.quorum = genesis.quorum
        self.verification_keys = list(verification_keys)
        self._zk: Any = None

    # --- headers ----------------------------------------------------------------------------

    def check_shape(self, node: str, header: Header, height: int) -> None:
        if header.chain_id != self.chain_id:
            raise lie(
                node,
                "header_chain_id",
                f"header is for chain {header.chain_id!r}, not {self.chain_id!r}",
            )
        if header.height != height:
            raise lie(
                node, "header_height", f"asked for height {height}, got a header at {header.height}"
            )
        if height == 0 and (
            header.parent_hash != ZERO_HASH
            or header.tx_count != 0
            or header.time_ms != self.genesis.genesis_time_ms
        ):
            raise lie(node, "genesis_header", "the height-0 header is not the genesis block")

    def check_certificate(
        self,
        node: str,
        header: Header,
        cert: Certificate | None,
        keys: Sequence[bytes] | None = None,
    ) -> None:
        """``cert`` certifies exactly ``header`` with a quorum of distinct validators of
        ``keys``, the set of its height (default: genesis's; see :mod:`accord.ledger.validatorsets`)."""
        if cert is None:
            raise lie(node, "certificate", f"header {header.height} comes without a certificate")
        if cert.height != header.height or cert.block_hash != header.hash:
            raise lie(
                node,
                "certificate",
                f"the certificate is not for header {header.height} ({header.hash.hex()[:16]})",
            )
        try:
            if keys is None:
                verify_certificate(self.keys, self.chain_id, cert, self.quorum)
            else:
                n = len(keys)
                verify_certificate(list(keys), self.chain_id, cert, n - (n - 1) // 3)
        except (ValidationError, InvalidSignature) as e:
            raise lie(node, "certificate", f"header {header.height}: {e.message}") from None

    def certified(
        self, node: str, header: Header, cert: Certificate | None, height: int
    ) -> TrustedHeader:
        """A header checked on its own (skipping ahead): shape, then certificate."""
        self.check_shape(node, header, height)
        self.check_certificate(node, header, cert)
        return TrustedHeader(header, cert)

    @staticmethod
    def check_link(node: str, parent: Header, child: Header) -> None:
        if child.height != parent.height + 1 or child.parent_hash != parent.hash:
            raise lie(
                node,
                "header_chain",
                f"header {child.height} names parent {child.parent_hash.hex()[:16]}, "
                f"the header at {parent.height} is {parent.hash.hex()[:16]}",
            )
        if child.time_ms < parent.time_ms:
            raise lie(node, "header_time", f"header {child.height} is earlier than its parent")

    # --- transactions -----------------------------------------------------------------------

    def check_tx(
        self, node: str, tx_hash: bytes, st: TxStatus, trusted: TrustedHeader
    ) -> VerifiedTx:
        """A committed transaction and its receipt against the certified header at its height."""
        header = trusted.header
        tx, receipt, proof = st.tx, st.receipt, st.proof
        if tx is None or receipt is None or proof is None or st.index is None:
            raise lie(
                node, "response", "a committed transaction must come with tx, receipt and proof"
            )
        if tx.hash != tx_hash:
            raise lie(
                node,
                "tx_hash",
                f"the transaction served hashes to {tx.hash.hex()[:16]}, not {tx_hash.hex()[:16]}",
            )
        if tx.chain_id != self.chain_id:
            raise lie(node, "tx_signature", f"the transaction is for chain {tx.chain_id!r}")
        try:
            tx.verify_signature()
        except AccordError as e:
            raise lie(node, "tx_signature", e.message) from None
        if receipt.tx_hash != tx_hash:
            raise lie(node, "receipt", "the receipt names another transaction")
        if st.height != header.height or st.block_hash != header.hash or st.index != proof.index:
            raise lie(
                node,
                "tx_block",
                f"block {st.height} / index {st.index} disagree with the certified header",
            )
        leaf = tx_leaf(tx.hash, receipt.hash)
        if proof.leaf != leaf or proof.tx_root != header.tx_root or proof.count != header.tx_count:
            raise lie(
                node,
                "tx_inclusion",
                "the proof's leaf, root or count is not what the tx, receipt and header give",
            )
        try:
            verify_merkle_proof(
                header.tx_root, leaf, proof.index, header.tx_count, list(proof.siblings)
            )
        except ProofError as e:
            raise lie(node, "tx_inclusion", e.message) from None
        return VerifiedTx(tx_hash, tx, receipt, header.height, proof.index, header, node)

    def check_block(
        self, node: str, block: Block, receipts: Sequence[Receipt], trusted: TrustedHeader
    ) -> VerifiedBlock:
        """A block and its receipts: the header is the certified one and the tx root covers
        exactly these (transaction, receipt) pairs, so nothing was added, dropped, reordered
        or altered. Signatures need no check: the certified validators checked them."""
        if block.header.hash != trusted.hash:
            raise lie(
                node, "block_header", f"block {trusted.height} does not carry the certified header"
            )
        if body_hash(block.txs) != trusted.header.body_hash:
            raise lie(
                node,
                "block_body",
                "the transactions are not the ones the certified header commits to",
            )
        if len(receipts) != len(block.txs):
            raise lie(
                node,
                "block_receipts",
                f"{len(receipts)} receipts for {len(block.txs)} transactions",
            )
        leaves = []
        for tx, r in zip(block.txs, receipts, strict=True):
            if r.tx_hash != tx.hash:
                raise lie(node, "block_receipts", "a receipt names another transaction")
            leaves.append(tx_leaf(tx.hash, r.hash))
        if merkle_root(leaves) != trusted.header.tx_root:
            raise lie(
                node,
                "block_tx_root",
                "the transactions and receipts do not give the certified tx root",
            )
        return VerifiedBlock(block, tuple(receipts), trusted.header, node)

    # --- state ------------------------------------------------------------------------------

    def check_state(
        self, node: str, contract: str, key: bytes | str, sv: StateValue, trusted: TrustedHeader
    ) -> VerifiedState:
        from accord.contracts.base import state_key  # the runtime's key layout

        skey = state_key(contract, key)
        if sv.contract != contract or sv.state_key != skey:
            raise lie(
                node,
                "state_key",
                f"the proof is for state key {sv.state_key.hex()}, not {skey.hex()}",
            )
        if sv.height != trusted.height or sv.header.hash != trusted.hash:
            raise lie(
                node,
                "state_header",
                f"the state proof's header at {sv.height} is not the certified one",
            )
        try:
            verify_state_proof(trusted.header.state_root, skey, sv.value, sv.proof)
        except ProofError as e:
            raise lie(node, "state_proof", e.message) from None
        decoded: Value = None
        if sv.value is not None:
            try:
                decoded = encoding.decode(sv.value)
            except AccordError:
                decoded = None  # proved bytes that are not a canonical value: report raw only
        return VerifiedState(
            contract, key, skey, sv.value, decoded, trusted.height, trusted.header, node
        )

    # --- shielded pool ----------------------------------------------------------------------

    def zk_verifier(self) -> Any:
        if self._zk is None:
            from accord.zk.verifier import PyProofVerifier

            verifier = PyProofVerifier(self.genesis.zk_circuits)
            for vk in self.verification_keys:
                verifier.add(vk)
            self._zk = verifier
        return self._zk

    def check_shielded(
        self, vt: VerifiedTx, in_force: dict[str, Value] | None = None
    ) -> VerifiedShieldedTransfer:
        """Re-verify a committed shielded-pool transaction's Groth16 proof (pure Python).
        ``in_force``: governance's ``circuits`` and ``regulator`` at the transaction's height,
        proved against a certified header (None: genesis's, on a chain without governance)."""
        tx = vt.tx
        if tx.contract != SHIELDED_CONTRACT or tx.method != "transact":
            raise ProofError(
                f"transaction {vt.tx_hash.hex()[:16]} is not a shielded-pool transact call"
            )
        if not vt.receipt.ok:
            raise ProofError(f"transaction {vt.tx_hash.hex()[:16]} was reverted: it moved no notes")
        return shielded_transfer(
            self.genesis.zk_circuits,
            self.genesis.zk_params,
            tx.args,
            vt,
            verifier=self.zk_verifier(),
            chain_id=self.genesis.chain_id,
            in_force=in_force,
        )


def shielded_transfer(
    vks: dict[str, Any],
    zk_params: dict[str, Any],
    args: dict[str, Value],
    vt: VerifiedTx | None = None,
    *,
    verifier: Any = None,
    chain_id: str,
    in_force: dict[str, Value] | None = None,
) -> VerifiedShieldedTransfer:
    """Check the arguments of a ``shielded_pool.transact`` call as the pool does, then its proof.

    Raises :class:`ProofError` naming what failed. ``vt`` (the verified transaction) is
    attached to the result; tests and tools may pass None to check bare arguments.
    ``in_force``: what governance had in force at the transaction's height (``circuits``,
    ``regulator``, as the governance contract stores them); None: genesis's ``vks`` and
    ``zk_params``.
    """
    from accord.contracts.shielded_pool import regulator_key_of
    from accord.zk import notes as zk
    from accord.zk.verifier import PyProofVerifier

    proof, inputs, notes_, recipient = (
        args.get("proof"),
        args.get("inputs"),
        args.get("notes"),
        args.get("recipient"),
    )
    if type(proof) is not bytes or len(proof) != 128:
        raise ProofError("the shielded proof must be 128 compressed bytes")
    if type(inputs) is not list or len(inputs) != zk.N_TRANSFER_PUBLIC:
        raise ProofError(f"a shielded transfer has {zk.N_TRANSFER_PUBLIC} public inputs")
    if any(type(x) is not bytes or len(x) != 32 for x in inputs):
        raise ProofError("public inputs are 32-byte values")
    if type(notes_) is not list or len(notes_) != 2 or any(type(b) is not bytes for b in notes_):
        raise ProofError("a shielded transfer carries two note ciphertexts")
    if type(recipient) is not bytes:
        raise ProofError("the recipient must be bytes")
    pub = [int.from_bytes(x, "big") for x in inputs]
    if pub[zk.PUB_BIND] != zk.transfer_bind(chain_id, recipient, notes_):
        raise ProofError("the proof is bound to another recipient or other notes")
    v = verifier if verifier is not None else PyProofVerifier(vks)
    key_hash: bytes | None = None
    reg: tuple[int, int] | None = None
    if in_force is None:
        if "regulator" in zk_params:
            reg = regulator_key_of(zk_params)
    else:
        reg, key_hash = _governed_zk(in_force)
        if not v.has(key_hash):
            raise ProofError(
                f"the {SHIELDED_CIRCUIT} verification key in force at the transfer's height "
                f"(hash {key_hash.hex()}, registered by governance) was not given to this "
                "light client: pass its JSON (LightClient(verification_keys=[...]); accord light "
                "shielded --vk FILE)"
            )
    if reg is not None and tuple(pub[zk.PUB_REGULATOR : zk.PUB_REGULATOR + 2]) != reg:
        raise ProofError(
            "the transfer is not encrypted to the regulator key in force at its height"
        )
    if not v.verify(SHIELDED_CIRCUIT, proof, pub, vk_hash=key_hash):
        raise ProofError("the shielded-transfer proof does not verify (pure-Python Groth16)")
    nf: Sequence[bytes] = inputs[zk.PUB_NF : zk.PUB_NF + 2]
    cm: Sequence[bytes] = inputs[zk.PUB_CM : zk.PUB_CM + 2]
    return VerifiedShieldedTransfer(
        tx=vt,
        nullifiers=(nf[0], nf[1]),
        commitments=(cm[0], cm[1]),
        root=inputs[zk.PUB_ROOT],
        deposit=pub[zk.PUB_DEPOSIT],
        withdrawal=pub[zk.PUB_WITHDRAWAL],
    )


def _governed_zk(in_force: dict[str, Value]) -> tuple[tuple[int, int], bytes]:
    """(regulator key, shielded-transfer vk hash) from governance's values (ProofError if
    they do not name both: the pool accepted no transfer then)."""
    reg = in_force.get("regulator")
    circuits = in_force.get("circuits")
    entry = circuits.get(SHIELDED_CIRCUIT) if isinstance(circuits, dict) else None
    key_hash = entry.get("vk_hash") if isinstance(entry, dict) else None
    if type(key_hash) is not bytes:
        raise ProofError(f"no {SHIELDED_CIRCUIT} circuit was registered at the transfer's height")
    if not (isinstance(reg, list) and len(reg) == 2 and all(type(c) is str for c in reg)):
        raise ProofError("no regulator key was in force at the transfer's height")
    try:
        return (int(reg[0]), int(reg[1])), key_hash
    except ValueError:
        raise ProofError("the regulator key in force is malformed") from None
