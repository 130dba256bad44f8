"""Proof verifiers for the contract runtime: ``verify(circuit, proof, public_inputs) -> bool``.

The runtime's ``ctx.verify_proof`` delegates to one of these. Both read the verification keys
from genesis (``Genesis.zk_circuits``: circuit name -> snarkjs vk JSON) and both give the same
answer on every input (a test runs them over a corpus of valid and invalid proofs):

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
from accord.zk import groth16
from accord.zk.prover import SnarkjsWorker, key_id, shared_worker
from accord.zk.tools import ZkToolError

log = logging.getLogger(__name__)


class _Base:
    def __init__(self, vks: Mapping[str, Any]) -> None:
        self._raw = dict(vks)
        self._parsed: dict[str, groth16.VerifyingKey] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_genesis(cls, genesis: Any, **kw: Any) -> Any:
        return cls(genesis.zk_circuits, **kw)

    def circuits(self) -> list[str]:
        return sorted(self._raw)

    def key(self, circuit: str) -> groth16.VerifyingKey:
        with self._lock:
            vk = self._parsed.get(circuit)
            if vk is None:
                if circuit not in self._raw:
                    raise ProofError(f"no verification key for circuit {circuit!r} in genesis")
                vk = self._parsed[circuit] = groth16.parse_vk(self._raw[circuit])
            return vk


class PyProofVerifier(_Base):
    """Pure-Python Groth16 verification."""

    def verify(self, circuit: str, proof: Any, public_inputs: Sequence[Any]) -> bool:
        vk = self.key(circuit)
        p, inputs = groth16.precheck(vk, proof, list(public_inputs))
        return groth16.verify_parsed(vk, p, inputs)


class FastProofVerifier(_Base):
    """Python parsing and checks, then snarkjs (WebAssembly) for the subgroup and pairings."""

    def __init__(self, vks: Mapping[str, Any], worker: SnarkjsWorker | None = None) -> None:
        super().__init__(vks)
        self._worker = worker
        self._ids: dict[str, str] = {}  # circuit -> the worker's name for its key
        #: Proofs that the worker refused or could not decide, decided in Python instead (the
        #: worker is only a fast path: the answer must be the pure-Python one).
        self.fallbacks = 0

    def verify(self, circuit: str, proof: Any, public_inputs: Sequence[Any]) -> bool:
        vk = self.key(circuit)
        # Steps (1) and (2) of groth16.precheck, exactly as PyProofVerifier runs them; step (3),
        # B's subgroup, is the worker's first check, then the pairing. So both verifiers meet
        # the faults of a proof in the same order and report the first one with the same text.
        p, inputs = groth16.precheck(vk, proof, list(public_inputs), subgroup=False)
        worker = self._worker or shared_worker()
        try:
            vid = self._ids.get(circuit)
            if vid is None:
                vid = self._ids[circuit] = key_id(self._raw[circuit])
            return worker.verify(self._raw[circuit], groth16.proof_to_json(p), inputs, vk_id=vid)
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
