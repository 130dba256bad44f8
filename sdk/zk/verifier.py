"""Proof verifiers for the contract runtime: ``verify(circuit, proof, public_inputs) -> bool``.

The runtime's ``ctx.verify_proof`` delegates to one of these, naming the key in force by its
hash. Both hold genesis's verification keys (``Genesis.zk_circuits``: circuit name -> snarkjs
vk JSON) and the ones a node's configuration adds for circuits governance registered (node.json
``circuits``), and both give the same answer on every input (a test runs them over a corpus of valid and invalid proofs):

* :class:`PyProofVerifier`: pure Python (py_ecc), no Node.js: light clients and any validator.
* :class:`FastProofVerifier`: the same strict parsing in Python (canonical coordinates, points
  on their curves, public inputs below r), then the pairing check in a long-lived snarkjs
  worker on a key it prepared once (see ``worker.js``), which also checks B's G2 subgroup.
  A few milliseconds instead of ~0.1 s. When the worker
  refuses a proof or fails, the pure-Python checks decide (see ``fallbacks``), so a faulty or
  missing worker can never make this verifier disagree with :class:`PyProofVerifier`.

A proof may be the snarkjs JSON object (or its text) or the 128 compressed bytes. Malformed
input raises :class:`ProofError`, an unknown circuit :class:`ProofError` too; a well-formed
proof that does not verify returns False.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from accord.base.errors import ProofError
from accord.base.genesis import vk_hash
from accord.zk import groth16
from accord.zk.prover import SnarkjsWorker, key_id, shared_worker
from accord.zk.tools import ZkToolError

log = logging.getLogger(__name__)


def _holds_float(value: Any) -> bool:
    """Whether a JSON document holds a float anywhere."""
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_float(v) for v in value)
    return False


class _Base:
    """Verification keys by the hash that names them (:func:`accord.base.genesis.vk_hash`):
    genesis's, and those the node's configuration adds for circuits governance registers or
    upgrades later. A proof is checked against the key whose hash is in force (the runtime
    passes it), never against a key found by circuit name alone, so every validator checks
    against the same key whatever files it holds."""

    def __init__(self, vks: Mapping[str, Any]) -> None:
        self._raw: dict[bytes, Any] = {}  # vk hash -> snarkjs vk JSON
        self._named: dict[str, bytes] = {}  # genesis's circuit name -> its vk hash
        self._parsed: dict[bytes, groth16.VerifyingKey] = {}
        #: Files the node's configuration named, by circuit: (where, the file's vk hash); for
        #: the message of a validator that lacks the key in force.
        self.files: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        for name, vk in vks.items():
            # Genesis's keys: one document every validator holds alike, never two files.
            self._named[name] = self._store(vk)

    @classmethod
    def from_genesis(cls, genesis: Any, **kw: Any) -> Any:
        return cls(genesis.zk_circuits, **kw)

    def add(self, vk: Any, *, circuit: str | None = None, source: str | None = None) -> bytes:
        """Offer a verification key (snarkjs JSON); returns its hash. ``circuit`` and
        ``source``: the node.json entry it came from (named in error messages). ProofError
        for a key holding a float: :func:`vk_hash` writes a float as its decimal text, so the
        number 2.0 and the text "2.0" hash alike but parse differently, and two files of one
        hash could give validators two keys (split receipts). A snarkjs key holds none."""
        if _holds_float(vk):
            raise ProofError(
                "a verification key holds a floating-point number; it holds only integers "
                "and strings"
            )
        return self._store(vk, circuit, source)

    def _store(self, vk: Any, circuit: str | None = None, source: str | None = None) -> bytes:
        h = vk_hash(vk)
        with self._lock:
            self._raw[h] = vk
            if circuit is not None:
                self.files[circuit] = (source or "?", h)
        return h

    def has(self, vk_hash: bytes) -> bool:
        return vk_hash in self._raw

    def circuits(self) -> list[str]:
        """Genesis's circuit names."""
        return sorted(self._named)

    def key(self, circuit: str, vk_hash: bytes | None = None) -> groth16.VerifyingKey:
        """The parsed key ``vk_hash`` names (None: genesis's key of ``circuit``)."""
        h = self._named.get(circuit) if vk_hash is None else vk_hash
        with self._lock:
            vk = None if h is None else self._parsed.get(h)
            if vk is None:
                if h is None:
                    raise ProofError(f"no verification key for circuit {circuit!r} in genesis")
                if h not in self._raw:
                    raise ProofError(
                        f"no verification key with hash {h.hex()} for circuit {circuit!r} "
                        "on this node"
                    )
                vk = self._parsed[h] = groth16.parse_vk(self._raw[h])
            return vk

    def verify(
        self,
        circuit: str,
        proof: Any,
        public_inputs: Sequence[Any],
        vk_hash: bytes | None = None,
    ) -> bool:
        """Whether ``proof`` verifies for ``public_inputs`` under the key ``vk_hash`` names
        (None: genesis's key of ``circuit``); ProofError for malformed input or no such key."""
        return self._verify(circuit, vk_hash, self.key(circuit, vk_hash), proof, public_inputs)

    def _verify(
        self,
        circuit: str,
        vk_hash: bytes | None,
        vk: groth16.VerifyingKey,
        proof: Any,
        public_inputs: Sequence[Any],
    ) -> bool:
        raise NotImplementedError

    def raw(self, circuit: str, vk_hash: bytes | None = None) -> tuple[bytes, Any]:
        """(hash, snarkjs JSON) of the key :meth:`key` parses."""
        self.key(circuit, vk_hash)  # the same errors
        h = self._named[circuit] if vk_hash is None else vk_hash
        return h, self._raw[h]


class PyProofVerifier(_Base):
    """Pure-Python Groth16 verification."""

    def _verify(
        self,
        circuit: str,
        vk_hash: bytes | None,
        vk: groth16.VerifyingKey,
        proof: Any,
        public_inputs: Sequence[Any],
    ) -> bool:
        p, inputs = groth16.precheck(vk, proof, list(public_inputs))
        return groth16.verify_parsed(vk, p, inputs)


class FastProofVerifier(_Base):
    """Python parsing and checks, then snarkjs (WebAssembly) for the subgroup and pairings."""

    def __init__(self, vks: Mapping[str, Any], worker: SnarkjsWorker | None = None) -> None:
        super().__init__(vks)
        self._worker = worker
        #: vk hash -> (the worker's name for that key, the key's JSON as parsed)
        self._ids: dict[bytes, tuple[str, dict[str, Any]]] = {}
        #: Proofs that the worker refused or could not decide, decided in Python instead (the
        #: worker is only a fast path: the answer must be the pure-Python one).
        self.fallbacks = 0

    def _verify(
        self,
        circuit: str,
        vk_hash: bytes | None,
        vk: groth16.VerifyingKey,
        proof: Any,
        public_inputs: Sequence[Any],
    ) -> bool:
        # Steps (1) and (2) of groth16.precheck, exactly as PyProofVerifier runs them; step (3),
        # B's subgroup, is the worker's first check, then the pairing. So both verifiers meet
        # the faults of a proof in the same order and report the first one with the same text.
        p, inputs = groth16.precheck(vk, proof, list(public_inputs), subgroup=False)
        worker = self._worker or shared_worker()
        try:
            h, _ = self.raw(circuit, vk_hash)
            sent = self._ids.get(h)
            if sent is None:
                # The key as parsed, never the file: a file's big JSON numbers would reach
                # the worker rounded (JSON.parse), and its pairing would say "invalid" to a
                # proof the Python verifier accepts (review finding: split receipts).
                as_parsed = groth16.vk_to_json(vk)
                sent = self._ids[h] = (key_id(as_parsed), as_parsed)
            return worker.verify(sent[1], groth16.proof_to_json(p), inputs, vk_id=sent[0])
        except (ProofError, ZkToolError) as e:
            # Everything but B's subgroup was checked above, so a refusal here is either
            # "B not in G2" or a worker fault (a crash, an exception inside the worker). Either
            # way the pure-Python checks decide: a genuine subgroup failure raises the same
            # ProofError as PyProofVerifier, anything else gets the reference pairing check.
            # A validator whose worker misbehaves thus still agrees with one without Node.js.
            groth16.check_subgroup(p)  # a genuine "B not in G2": the same error as Python's
            with self._lock:
                self.fallbacks += 1
            log.warning(
                "snarkjs worker did not accept a proof whose B is in G2 (%s): verifying in Python",
                e,
            )
            return groth16.verify_parsed(vk, p, inputs)


def verifier_from_genesis(
    genesis: Any, fast: bool | None = None
) -> PyProofVerifier | FastProofVerifier:
    """The proof verifier a node hands to its runtime.

    ``fast=None`` picks the snarkjs worker when Node.js and the pinned npm tools are present and
    the pure-Python verifier otherwise. Both accept and refuse exactly the same proofs (a test
    runs them over one corpus), so validators with and without Node.js agree on every block.
    """
    if fast is None:
        import shutil

        from accord.zk.tools import ZkToolError, node_bin, project_root

        try:
            project_root()
            fast = shutil.which(node_bin()) is not None
        except ZkToolError:
            fast = False
    cls = FastProofVerifier if fast else PyProofVerifier
    return cls(genesis.zk_circuits)
