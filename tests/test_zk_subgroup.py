"""The validators' worker decides "B is in G2" with the endomorphism test (sdk/zk/worker.js
``inG2``) instead of multiplying by r: it must give exactly the answer of [r]B == 0, on points
inside G2, on points of the twist outside it, and on points whose cofactor part was cleared.

Each point goes through the worker's real interface: a proof whose B is the point. The worker
answers ``reason: "B not in G2"`` exactly when its subgroup test fails; a point inside G2 goes
on to the pairing check (which fails: the proof is not a proof for it).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from py_ecc.optimized_bn128 import FQ2, G2, curve_order, field_modulus, is_inf, multiply, normalize

from accord.zk import artifacts, groth16
from accord.zk.prover import SnarkjsWorker, key_id

from .support.zk_sample import deposit_proof

pytestmark = pytest.mark.timeout(600)

# #E'(Fq2) = r * h for BN254's twist, with h = 2q - r
COFACTOR = 2 * field_modulus - curve_order


def _twist_point(rng: random.Random) -> Any:
    """A uniformly random point of the twist (almost surely outside G2)."""
    while True:
        x = (rng.randrange(field_modulus), rng.randrange(field_modulus))
        rhs = groth16._fq2_mul(groth16._fq2_mul(x, x), x)
        rhs = ((rhs[0] + groth16._B2[0]) % field_modulus, (rhs[1] + groth16._B2[1]) % field_modulus)
        y = groth16._sqrt_fq2(rhs)
        if y is not None:
            return (FQ2(list(x)), FQ2(list(y)), FQ2.one())


def _json(p: Any) -> list[list[str]]:
    x, y = normalize(p)
    return [[str(c) for c in x.coeffs], [str(c) for c in y.coeffs], ["1", "0"]]


def _points() -> list[tuple[str, Any]]:
    rng = random.Random(2022_348)
    pts: list[tuple[str, Any]] = []
    for k in (1, 2, 3, curve_order - 1, rng.randrange(1, curve_order), 1 << 200):
        pts.append((f"[{k}]G2", multiply(G2, k)))
    for i in range(8):
        pts.append((f"random twist point {i}", _twist_point(rng)))
    for i in range(4):  # in G2 once the cofactor part is cleared
        pts.append((f"cleared twist point {i}", multiply(_twist_point(rng), COFACTOR)))
    # outside G2 but killed by a multiple of r: a point of order r*k for a small k
    p = _twist_point(rng)
    pts.append(("[r]-cleared twist point", multiply(p, curve_order)))
    return pts


@pytest.fixture(scope="module")
def worker_and_proof() -> Any:
    keys = artifacts.test_keys("shielded_transfer")
    proof, public = deposit_proof(keys, b"subgroup-tests", 5, 5)
    worker = SnarkjsWorker()
    yield worker, keys.vk, proof, public
    worker.close()


@pytest.mark.parametrize(("name", "point"), _points(), ids=[n for n, _ in _points()])
def test_worker_subgroup_test_is_multiplication_by_r(
    worker_and_proof: Any, name: str, point: Any
) -> None:
    worker, vk, proof, public = worker_and_proof
    inside = is_inf(multiply(point, curve_order))
    if is_inf(point):
        pytest.skip("the point at infinity is refused before the subgroup test")
    reply = worker.request(
        "verify",
        vk_id=key_id(vk),
        vk=vk,
        proof={**proof, "pi_b": _json(point)},
        publicSignals=[str(x) for x in public],
    )
    assert reply.get("ok") is True, reply
    assert (reply.get("reason") == "B not in G2") == (not inside), (name, reply)
    assert reply["valid"] is False  # not a proof for this B either way


def test_the_real_b_still_verifies(worker_and_proof: Any) -> None:
    worker, vk, proof, public = worker_and_proof
    reply = worker.request(
        "verify", vk_id=key_id(vk), vk=vk, proof=proof, publicSignals=[str(x) for x in public]
    )
    assert reply == {**reply, "ok": True, "valid": True}
