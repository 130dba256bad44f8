"""From a circuit source to proving and verification keys: build + ceremony, cached.

:func:`setup_circuit` is what ``accord zk ceremony``, the benchmarks and the tests call. The
result, :class:`CircuitKeys`, is all a prover needs (wasm + zkey) and all a verifier needs (the
verification key, which genesis carries).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.zk import build as zbuild
from accord.zk.ceremony import Ceremony, CeremonyParams, ProgressFn
from accord.zk.prover import SnarkjsWorker, shared_worker

TEST_MEMBERS = ("lender-a", "lender-b", "regulator")
TEST_POWER = 13
TEST_DEPTH = 4
TEST_LENDERS = 1


def test_ceremony() -> CeremonyParams:
    """The small deterministic ceremony the test suite shares (2^13: depth-4 transfers fit)."""
    return CeremonyParams(power=TEST_POWER, members=TEST_MEMBERS, seed="accord-tests")


@dataclass(frozen=True)
class CircuitKeys:
    name: str
    built: zbuild.BuiltCircuit
    zkey: Path
    vk: dict[str, Any]

    @property
    def wasm(self) -> Path:
        return self.built.wasm

    @property
    def constraints(self) -> int:
        return self.built.constraints

    def prove(
        self, inputs: dict[str, Any], worker: SnarkjsWorker | None = None
    ) -> tuple[dict[str, Any], list[int]]:
        return (worker or shared_worker()).prove(self.wasm, self.zkey, inputs)


def setup_circuit(
    spec: zbuild.CircuitSpec,
    params: CeremonyParams,
    *,
    folder: Path | None = None,
    progress: ProgressFn | None = None,
) -> CircuitKeys:
    """Compile ``spec`` and run (or resume) phase 2 for it in the ceremony ``params``."""
    built = zbuild.build(spec)
    need = zbuild.power_for(built.constraints, built.info["public_inputs"])
    if need > params.power:
        from accord.base.errors import ValidationError

        raise ValidationError(
            f"{spec.name} has {built.constraints} constraints: it needs a 2^{need} ceremony, "
            f"this one is 2^{params.power}"
        )
    c = Ceremony(folder or Ceremony.default_folder(params), params)
    d = c.run_phase2(spec.name, built.r1cs, progress)
    vk = json.loads((d / "vk.json").read_text())
    return CircuitKeys(spec.name, built, d / "final.zkey", vk)


_test_keys: dict[str, CircuitKeys] = {}


def test_keys(name: str, progress: ProgressFn | None = None) -> CircuitKeys:
    """Keys of the test suite's small circuits (depth-4 transfer, 1-slot anti-stacking) from
    the shared 2^13 test ceremony: built on first use (a few minutes), then cached on disk."""
    if name not in _test_keys:
        spec = (
            zbuild.transfer_spec(TEST_DEPTH)
            if name == "shielded_transfer"
            else zbuild.anti_stacking_spec(TEST_LENDERS)
        )
        _test_keys[name] = setup_circuit(spec, test_ceremony(), progress=progress)
    return _test_keys[name]
