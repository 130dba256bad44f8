"""Verification outcomes that enter consensus are the same bytes on every validator, whichever
verifier it runs (pure Python, or Python checks + the snarkjs worker).

A contract's ``ctx.verify_proof`` either returns a bool or raises :class:`ProofError`, whose
message lands in the receipt, and the receipt in ``tx_root``. So both verifiers must meet the
faults of a proof in the same order and report the first one with the same text. These tests
execute the same transactions on two runtimes, one per verifier, and compare the receipts'
encodings: over a corpus of proofs with several faults at once (where a different check order
shows), over hypothesis-generated tamperings of a JSON proof and of compressed proof bytes,
and over non-canonical number texts (``'0012'``, other scripts' digits).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import ContractEntry, Genesis
from accord.base.types import Tx
from accord.contracts import BUILTINS, Runtime
from accord.contracts.memory import MemoryState
from accord.contracts.runtime import code_hash
from accord.node.config import builtin_contract_entries
from accord.zk import artifacts, groth16
from accord.zk.verifier import FastProofVerifier, PyProofVerifier

from .support.genesis import make_genesis
from .support.proofprobe import CIRCUIT, ProofProbe
from .support.zk_points import g2_outside_subgroup
from .support.zk_sample import deposit_proof

pytestmark = pytest.mark.timeout(900)
USER = AccountKey.from_name("agreement-user")


class Pair:
    """Two runtimes over one genesis: one per verifier."""

    def __init__(self, keys: artifacts.CircuitKeys) -> None:
        entries = [
            *builtin_contract_entries(),
            ContractEntry(name="proofprobe", code_hash=code_hash(ProofProbe).hex()),
        ]
        g: Genesis = make_genesis(1, contracts=entries)
        self.g = g.model_copy(update={"zk_circuits": {CIRCUIT: keys.vk}})
        contracts = {**BUILTINS, "proofprobe": ProofProbe}
        self.fast = FastProofVerifier.from_genesis(self.g)
        self.runtimes = [
            Runtime(self.g, contracts, proof_verifier=PyProofVerifier.from_genesis(self.g)),
            Runtime(self.g, contracts, proof_verifier=self.fast),
        ]

    def receipts(self, proof: Any, inputs: list[Any]) -> list[bytes]:
        m = "check_bytes" if isinstance(proof, bytes) else "check_json"
        tx = Tx.create(
            USER,
            chain_id=self.g.chain_id,
            contract="proofprobe",
            method=m,
            args={"proof": proof, "inputs": inputs},
            nonce=0,
            gas_limit=5_000_000,
        )
        out = []
        for rt in self.runtimes:
            st_ = MemoryState(rt.genesis_writes())
            (rc,) = rt.execute_block(st_, [tx], height=1, time_ms=0).receipts
            out.append(rc.encode())
        return out

    def agree(self, proof: Any, inputs: list[Any]) -> bytes:
        py, fast = self.receipts(proof, inputs)
        assert py == fast
        return py


@pytest.fixture(scope="module")
def sample() -> tuple[Pair, dict[str, Any], list[str]]:
    keys = artifacts.test_keys(CIRCUIT)
    proof, public = deposit_proof(keys, b"agreement", 4, 17)
    proof = {k: proof[k] for k in ("pi_a", "pi_b", "pi_c", "protocol", "curve")}
    return Pair(keys), proof, [str(x) for x in public]


def _decoded(receipt: bytes) -> tuple[bool, str]:
    """(the proof verified, the error text): True only for a receipt whose call succeeded and
    returned True; a well-formed wrong proof returns False, a malformed one fails the call."""
    from accord.base import encoding

    obj = encoding.decode(receipt)
    assert isinstance(obj, list)
    return bool(obj[1]) and obj[3] is True, str(obj[5])


def test_valid_proofs_pass_on_both(sample: Any) -> None:
    pair, proof, public = sample
    ok, err = _decoded(pair.agree(proof, public))
    assert ok, err
    ok, err = _decoded(pair.agree(groth16.compress_proof(proof), public))
    assert ok, err


def _several_faults(proof: dict[str, Any], public: list[str]) -> list[tuple[str, Any, list[str]]]:
    """Proofs with two faults each: a verifier with another check order reports another one."""
    bad_b = g2_outside_subgroup()
    over_r = list(public)
    over_r[0] = str(int(public[0]) + groth16.R)
    off_c = [proof["pi_c"][0], str((int(proof["pi_c"][1]) + 1) % groth16.Q), "1"]
    return [
        ("B outside the subgroup, a public input >= r", {**proof, "pi_b": bad_b}, over_r),
        (
            "B outside the subgroup, C off the curve",
            {**proof, "pi_b": bad_b, "pi_c": off_c},
            public,
        ),
        ("B outside the subgroup, too few inputs", {**proof, "pi_b": bad_b}, public[:-1]),
        ("A off the curve, a public input >= r", {**proof, "pi_a": off_c}, over_r),
        ("B outside the subgroup", {**proof, "pi_b": bad_b}, public),
    ]


def test_several_faults_give_the_same_receipt(sample: Any) -> None:
    pair, proof, public = sample
    for name, p, pub in _several_faults(proof, public):
        py, fast = pair.receipts(p, pub)
        assert py == fast, (name, _decoded(py), _decoded(fast))
        assert not _decoded(py)[0], name


@pytest.mark.parametrize(
    "text", ["0012", "+12", " 12", "12 ", "\u0661\u0662", "\u00b2", "1_2", "-1", ""]
)
def test_non_canonical_number_texts_are_refused_alike(sample: Any, text: str) -> None:
    pair, proof, public = sample
    p = copy.deepcopy(proof)
    p["pi_a"][0] = text
    ok, err = _decoded(pair.agree(p, public))
    assert not ok and "decimal" in err, err
    pub = list(public)
    pub[3] = text
    ok, err = _decoded(pair.agree(proof, pub))
    assert not ok and "decimal" in err, err


def test_leading_zero_coordinate_was_one_proof_with_two_encodings(sample: Any) -> None:
    """'0' + x parses to x: accepting it would give one proof a second encoding (finding 8)."""
    pair, proof, public = sample
    p = copy.deepcopy(proof)
    p["pi_a"][0] = "0" + p["pi_a"][0]
    with pytest.raises(Exception, match="canonical decimal"):
        groth16.parse_proof(p)
    assert not _decoded(pair.agree(p, public))[0]


# --- property tests: random tamperings --------------------------------------------------------

_PATHS = [
    ("pi_a", (0,)),
    ("pi_a", (1,)),
    ("pi_a", (2,)),
    ("pi_c", (0,)),
    ("pi_c", (1,)),
    ("pi_c", (2,)),
    ("pi_b", (0, 0)),
    ("pi_b", (0, 1)),
    ("pi_b", (1, 0)),
    ("pi_b", (1, 1)),
    ("pi_b", (2, 0)),
    ("public", (0,)),
    ("public", (5,)),
    ("public", (16,)),
]


def _mutate(value: str, how: int, rnd: int) -> Any:
    v = int(value)
    return [
        str(v + 1),
        str(v + groth16.Q),
        str(v + groth16.R),
        "0",
        "1",
        "0" + value,
        str(rnd),
        str(groth16.Q - v if v else 0),
        rnd,
        str(v ^ (1 << (rnd % 254))),
    ][how]


@st.composite
def tamperings(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    n = draw(st.integers(1, 3))
    return [
        (
            draw(st.integers(0, len(_PATHS) - 1)),
            draw(st.integers(0, 9)),
            draw(st.integers(0, 2**256 - 1)),
        )
        for _ in range(n)
    ]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=tamperings(), swap_b=st.booleans())
def test_tampered_json_proofs_give_the_same_receipt(
    sample: Any, changes: list[tuple[int, int, int]], swap_b: bool
) -> None:
    pair, proof, public = sample
    p = copy.deepcopy(proof)
    pub: list[Any] = list(public)
    if swap_b:
        p["pi_b"] = g2_outside_subgroup()
    for path_i, how, rnd in changes:
        field, idx = _PATHS[path_i]
        if field == "public":
            pub[idx[0]] = _mutate(str(pub[idx[0]]), how, rnd)
            if isinstance(pub[idx[0]], int) and pub[idx[0]] >= 2**64:
                pub[idx[0]] = str(pub[idx[0]])  # the tx encoding's integers are 64-bit
        else:
            target = p[field]
            for i in idx[:-1]:
                target = target[i]
            target[idx[-1]] = str(_mutate(str(target[idx[-1]]), how, rnd))
    pair.agree(p, pub)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(st.tuples(st.integers(0, 127), st.integers(0, 7)), min_size=1, max_size=3),
    input_change=st.sampled_from([None, "+r", "+1", "drop"]),
)
def test_tampered_proof_bytes_give_the_same_receipt(
    sample: Any, flips: list[tuple[int, int]], input_change: str | None
) -> None:
    pair, proof, public = sample
    data = bytearray(groth16.compress_proof(proof))
    for pos, bit in flips:
        data[pos] ^= 1 << bit
    pub = list(public)
    if input_change == "+r":
        pub[1] = str(int(pub[1]) + groth16.R)
    elif input_change == "+1":
        pub[1] = str(int(pub[1]) + 1)
    elif input_change == "drop":
        pub = pub[:-1]
    ok, _ = _decoded(pair.agree(bytes(data), pub))
    assert not ok or (bytes(data) == groth16.compress_proof(proof) and pub == public)


# --- second review: shapes a hand-written proof may take ---------------------------------------


def _shapes(proof: dict[str, Any], public: list[str]) -> list[tuple[str, Any, list[Any], bool]]:
    """(name, proof, public inputs, whether it verifies): shorter or longer point lists, a
    missing or foreign protocol/curve field, points at infinity in every spelling, swapped or
    negated points, G2 coordinates in the other order, public inputs at and above r, of other
    types, one too many. Each must give both verifiers the same receipt."""
    q, r = groth16.Q, groth16.R

    def edit(**kw: Any) -> dict[str, Any]:
        p = copy.deepcopy(proof)
        p.update(kw)
        return p

    a, b, c = proof["pi_a"], proof["pi_b"], proof["pi_c"]
    no_protocol = edit()
    del no_protocol["protocol"]

    def pub_with(x: Any) -> list[Any]:
        return [x, *public[1:]]

    return [
        ("A as [x, y]", edit(pi_a=a[:2]), public, True),
        ("B as [x, y]", edit(pi_b=b[:2]), public, True),
        ("no protocol field", no_protocol, public, True),
        ("another protocol", edit(protocol="plonk"), public, False),
        ("A with 4 coordinates", edit(pi_a=[*a, "1"]), public, False),
        ("B with a 3-element z", edit(pi_b=[b[0], b[1], ["1", "0", "0"]]), public, False),
        ("-A", edit(pi_a=[a[0], str(q - int(a[1])), "1"]), public, False),
        ("A and C swapped", edit(pi_a=c, pi_c=a), public, False),
        ("A = (0, 0, 0)", edit(pi_a=["0", "0", "0"]), public, False),
        ("A = (0, 1, 0)", edit(pi_a=["0", "1", "0"]), public, False),
        ("C = (1, 1, 0)", edit(pi_c=["1", "1", "0"]), public, False),
        ("B at infinity", edit(pi_b=[["0", "0"], ["1", "0"], ["0", "0"]]), public, False),
        ("B as [c1, c0]", edit(pi_b=[b[0][::-1], b[1][::-1], b[2]]), public, False),
        ("A.x + q", edit(pi_a=[str(int(a[0]) + q), a[1], "1"]), public, False),
        ("pi_a an object", edit(pi_a={"0": a[0], "1": a[1]}), public, False),
        ("input 0 = 0", proof, pub_with("0"), False),
        ("input 0 = r", proof, pub_with(str(r)), False),
        ("input 0 + r", proof, pub_with(str(int(public[0]) + r)), False),
        ("input 0 = r - 1", proof, pub_with(str(r - 1)), False),
        ("input 0 a bool", proof, pub_with(True), False),
        ("input 0 bytes", proof, pub_with(b"\x01"), False),
        ("input 0 a list", proof, pub_with([public[0]]), False),
        ("one input too many", proof, [*public, "0"], False),
    ]


def test_hand_written_proof_shapes_give_the_same_receipt(sample: Any) -> None:
    """Second review: none of these splits the verifiers (both read a proof through the same
    Python parser before the worker sees a normalised copy). The first three verify: JSON
    proofs have more than one encoding, as Groth16 proofs are malleable anyway, so nothing
    may key on a proof's bytes (the pool keys on nullifiers)."""
    pair, proof, public = sample
    fallbacks = pair.fast.fallbacks
    for name, p, pub, verifies in _shapes(proof, public):
        ok, err = _decoded(pair.agree(p, pub))
        assert ok == verifies, (name, err)
    assert pair.fast.fallbacks == fallbacks  # the worker decided every well-formed one itself
