"""Issue 15, the last untried attack: a witness that exploits circomlib's Montgomery additions.

``MontgomeryAdd`` computes its slope with a hint (``lamda <--``) and constrains only
``lamda * (x2 - x1) === y2 - y1``. If a prover could make one addition of ``EscalarMulFix``
(E = e*Base8) or ``EscalarMulAny`` (S = e*R) in the shielded-transfer circuit see two points
with equal x, it might choose the slope, and with it a shared point S that is not the one
the regulator computes from E: a transfer the regulator cannot read.

The analysis (docs/zk.md, "Montgomery additions") finds a single reachable case: scalars
whose low 249 bits are ``EXCEPTIONAL``, where the last addition of ``EscalarMulFix``'s first
segment adds a point to its negative. There the constraint reads ``0 === -2*y1``: no slope
satisfies it. The tests run the attack for real: a copy of the circuit whose hints alone are
edited (its R1CS is byte-identical to the original's), a witness calculator that does not
stop at failed asserts, ``snarkjs wtns check`` against the ORIGINAL R1CS, and a proof made
with the real test zkey, given to our verifier.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from accord.base.errors import ProofError
from accord.zk import artifacts, babyjub, tools
from accord.zk import build as zbuild
from accord.zk import notes as zk
from accord.zk.poseidon import FIELD
from accord.zk.tools import ZkToolError
from accord.zk.verifier import PyProofVerifier

pytestmark = pytest.mark.timeout(900)

P = babyjub.P
L = babyjub.SUBORDER
MONT_A, MONT_B = (
    168698,
    1,
)  # circomlib's Montgomery form of BabyJubJub: A = 2(a+d)/(a-d), B = 4/(a-d)

EXCEPTIONAL = L - 2**250 - (8**83 - 1) // 7
"""Low 249 bits of e for which EscalarMulFix's segment-0 accumulator, 2^250 + sum of the
windows' (digit + 1) * 8^i, reaches exactly l at its last window: that addition is Q + (-Q)."""

REG = zk.RegulatorKey.from_seed(b"cipher-regulator")
LAMBDA = 7  # the slope the attacker's hint picks when the two x coordinates are equal

ORIGINAL_HINT = "lamda <-- (in2[1] - in1[1]) / (in2[0] - in1[0]);"
EDITED_HINT = f"lamda <-- (in2[0] == in1[0]) ? {LAMBDA} : (in2[1] - in1[1]) / (in2[0] - in1[0]);"


# --- EscalarMulFix(253, Base8), step by step as the circuit's hints compute it ---------------


class Exceptional(Exception):
    pass


def _inv(x: int) -> int:
    if x % P == 0:
        raise Exceptional("division by zero")
    return pow(x, P - 2, P)


def _e2m(p: tuple[int, int]) -> tuple[int, int]:
    u = (1 + p[1]) * _inv(1 - p[1]) % P
    return u, u * _inv(p[0]) % P


def _m2e(p: tuple[int, int]) -> tuple[int, int]:
    return p[0] * _inv(p[1]) % P, (p[0] - 1) * _inv(p[0] + 1) % P


class FixReplica:
    """circomlib's EscalarMulFix(253, BASE8) over the hints, with an attacker's slope for an
    addition of two points with equal x. ``equal_x`` records each such addition."""

    def __init__(self, lam: int | None = None) -> None:
        self.lam = lam
        self.equal_x: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def add(self, p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
        (x1, y1), (x2, y2) = p1, p2
        if (x2 - x1) % P == 0:
            self.equal_x.append((p1, p2))
            if self.lam is None:
                raise Exceptional("Montgomery addition of two points with equal x")
            lam = self.lam
        else:
            lam = (y2 - y1) * _inv(x2 - x1) % P
        x3 = (MONT_B * lam * lam - MONT_A - x1 - x2) % P
        return x3, (lam * (x1 - x3) - y1) % P

    @staticmethod
    def dbl(p: tuple[int, int]) -> tuple[int, int]:
        x, y = p
        lam = (3 * x * x + 2 * MONT_A * x + 1) * _inv(2 * MONT_B * y) % P
        x3 = (MONT_B * lam * lam - MONT_A - 2 * x) % P
        return x3, (lam * (x - x3) - y) % P

    def segment(
        self, bits: list[int], base: tuple[int, int]
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        b = _e2m(base)
        outs, eights, wb = [], [], b
        for i in range(len(bits) // 3):
            multiples = [wb, self.dbl(wb)]
            for _ in range(6):
                multiples.append(self.add(wb, multiples[-1]))
            outs.append(multiples[bits[3 * i] + 2 * bits[3 * i + 1] + 4 * bits[3 * i + 2]])
            eights.append(multiples[7])
            wb = multiples[7]
        last = self.dbl(eights[-1])
        c = b
        for i in range(len(outs)):
            c = self.add(c, eights[i] if i < len(outs) - 1 else last)
        a = last
        for out in outs:
            a = self.add(a, out)
        s, cc = _m2e(a), _m2e(c)
        return babyjub.add(s, (-cc[0] % P, cc[1])), _m2e(eights[-1])

    def mul(self, e: int) -> tuple[int, int]:
        bits = [(e >> i) & 1 for i in range(253)]
        s0, dbl = self.segment(bits[:249], babyjub.BASE8)
        s1, _ = self.segment(bits[249:] + [0, 0], dbl)
        return babyjub.add(s0, s1)


def test_the_replica_is_the_circuit_and_finds_one_exceptional_addition() -> None:
    """The replica agrees with the group law on ordinary scalars (so it computes what the
    circuit's hints compute); at EXCEPTIONAL it meets exactly one addition with equal x, and
    it adds a point to its NEGATIVE (y2 = -y1), not to itself: the case that leaves no slope."""
    rng = random.Random(15)
    for e in [
        1,
        7,
        2**249 - 1,
        L - 1,
        L + 1,
        2**253 - 1,
        *(rng.getrandbits(253) for _ in range(4)),
    ]:
        r = FixReplica()
        assert r.mul(e) == babyjub.mul(babyjub.BASE8, e)
        assert r.equal_x == []
    assert 0 < EXCEPTIONAL < 2**249
    for high in (0, 1, 15):
        r = FixReplica()
        with pytest.raises(Exceptional):
            r.mul(EXCEPTIONAL + (high << 249))
        (((x1, y1), (x2, y2)),) = r.equal_x
        assert x1 == x2 and y2 == -y1 % P and y1 != 0
    attacked = FixReplica(LAMBDA)
    e_point = attacked.mul(EXCEPTIONAL)
    assert len(attacked.equal_x) == 1
    assert e_point != babyjub.mul(babyjub.BASE8, EXCEPTIONAL)  # what the attacker would claim


# --- the attack against the circuit ------------------------------------------------------


def _original() -> zbuild.BuiltCircuit:
    return zbuild.build(zbuild.transfer_spec(artifacts.TEST_DEPTH))


def _edited(original: zbuild.BuiltCircuit) -> Path:
    """The transfer circuit compiled with the attacker's hint in circomlib's MontgomeryAdd,
    cached by what went in (the original build's key, circomlib's file, the edit)."""
    lib = tools.project_root() / "node_modules" / "circomlib" / "circuits"
    montgomery = (lib / "montgomery.circom").read_text()
    assert montgomery.count(ORIGINAL_HINT) == 1, "circomlib's MontgomeryAdd changed"
    key = hashlib.sha256(
        "\0".join([original.folder.name, montgomery, EDITED_HINT]).encode()
    ).hexdigest()[:16]
    folder = tools.cache_dir() / "build" / f"edited-hints-{key}"
    if (folder / "main.r1cs").exists():
        return folder
    with tools.folder_lock(folder.with_name(folder.name + ".lock")):
        if (folder / "main.r1cs").exists():
            return folder
        work = tools.tmp_path(folder)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        spec = original.spec
        for f in spec.source.parent.glob("*.circom"):
            shutil.copy2(f, work / f.name)
        main = spec.main_source()
        assert main is not None
        (work / "main.circom").write_text(main)
        shutil.copytree(lib, work / "circomlib")
        (work / "circomlib" / "montgomery.circom").write_text(
            montgomery.replace(ORIGINAL_HINT, EDITED_HINT)
        )
        tools.run(
            [
                *tools.circom_cli(),
                "main.circom",
                "--r1cs",
                "--wasm",
                "--O2",
                "-l",
                "circomlib",
                "-l",
                ".",
                "-o",
                ".",
            ],
            cwd=work,
            what="circom2 (edited hints)",
        )
        work.rename(folder)
    return folder


def _json(inputs: dict[str, Any]) -> str:
    """Field elements as decimal strings: a JSON number loses precision in JavaScript."""

    def text(v: Any) -> Any:
        return [text(x) for x in v] if isinstance(v, list) else str(v)

    return json.dumps({k: text(v) for k, v in inputs.items()})


def _lax_witness(wasm: Path, inputs: dict[str, Any], out: Path) -> int:
    """Write the witness the wasm computes even where an assert fails; returns how many did."""
    (out.parent / "input.json").write_text(_json(inputs))
    line = tools.run(
        [
            tools.node_bin(),
            str(Path(__file__).parent / "support" / "lax_witness.js"),
            str(tools.project_root() / "node_modules"),
            str(wasm),
            str(out.parent / "input.json"),
            str(out),
        ],
        what="lax witness",
    ).splitlines()[-1]
    return int(json.loads(line)["failed_asserts"])


def _r1cs_accepts(r1cs: Path, wtns: Path) -> bool:
    try:
        tools.run([*tools.snarkjs_cli(), "wtns", "check", str(r1cs), str(wtns)], what="wtns check")
    except ZkToolError:
        return False
    return True


def _transfer(e: int, ephemeral: tuple[int, int]) -> dict[str, Any]:
    """A 50-token transfer from ann to ben with ephemeral scalar e, the claimed E, and the
    ciphertext under S = e*R (what EscalarMulAny computes: its additions have no equal-x case
    for a subgroup R, see docs/zk.md)."""
    tree = zk.MerkleTree(artifacts.TEST_DEPTH)
    a = zk.SpendingKey.from_seed(b"ann")
    b = zk.SpendingKey.from_seed(b"ben")
    note = zk.Note(50, a.owner, 1, 2)
    idx = tree.append(note.commitment)
    plan = zk.plan_transfer(
        a,
        [zk.SpendInput(note, idx)],
        [(b.address, 50)],
        tree,
        REG.public,
        rng=random.Random(3),
        chain_id="test",
    )
    g = plan.circuit_input
    plain = [a.owner, g["outOwner"][0], g["outValue"][0], g["outOwner"][1], g["outValue"][1]]
    pads = zk.regulator_pads(babyjub.mul(REG.public, e))
    return {
        **g,
        "e": e,
        "ephemeral": list(ephemeral),
        "ciphertext": [(m + p) % FIELD for m, p in zip(plain, pads, strict=True)],
    }


def test_the_edited_hints_leave_the_r1cs_unchanged() -> None:
    original = _original()
    edited = _edited(original)
    assert (edited / "main.r1cs").read_bytes() == original.r1cs.read_bytes()
    assert (edited / "main_js" / "main.wasm").read_bytes() != original.wasm.read_bytes()


def test_the_harness_accepts_an_honest_witness(tmp_path: Path) -> None:
    """Control: off the exceptional case the edited hints change nothing, and the lax
    calculator's witness is the original calculator's, which the original R1CS accepts."""
    original = _original()
    edited = _edited(original)
    e = 123456789123456789
    inputs = _transfer(e, babyjub.mul(babyjub.BASE8, e))
    assert _lax_witness(edited / "main_js" / "main.wasm", inputs, tmp_path / "lax.wtns") == 0
    assert _r1cs_accepts(original.r1cs, tmp_path / "lax.wtns")
    (tmp_path / "in.json").write_text(_json(inputs))
    tools.run(
        [
            *tools.snarkjs_cli(),
            "wtns",
            "calculate",
            str(original.wasm),
            str(tmp_path / "in.json"),
            str(tmp_path / "honest.wtns"),
        ],
        what="wtns calculate",
    )
    assert (tmp_path / "lax.wtns").read_bytes() == (tmp_path / "honest.wtns").read_bytes()


def test_the_exceptional_addition_gives_the_prover_no_choice(tmp_path: Path) -> None:
    """The attack: e = EXCEPTIONAL, the attacker's slope at the equal-x addition, the E its
    hints compute, S = e*R. Exactly one assert fails (the exceptional addition), the original
    R1CS refuses the witness, and a proof made from it with the real zkey does not verify.
    The honest prover has no proof for this e either (completeness, not soundness: a wallet
    draws e in 1..l-1, where three values of 2^251 have these low bits)."""
    original = _original()
    edited = _edited(original)
    keys = artifacts.test_keys("shielded_transfer")
    assert keys.built.r1cs.read_bytes() == original.r1cs.read_bytes()

    inputs = _transfer(EXCEPTIONAL, FixReplica(LAMBDA).mul(EXCEPTIONAL))
    wtns = tmp_path / "attack.wtns"
    assert _lax_witness(edited / "main_js" / "main.wasm", inputs, wtns) == 1
    assert not _r1cs_accepts(original.r1cs, wtns)

    proof_file, public_file = tmp_path / "proof.json", tmp_path / "public.json"
    tools.run(
        [
            *tools.snarkjs_cli(),
            "groth16",
            "prove",
            str(keys.zkey),
            str(wtns),
            str(proof_file),
            str(public_file),
        ],
        what="groth16 prove",
    )
    public = [int(x) for x in json.loads(public_file.read_text())]
    assert public[zk.PUB_EPHEMERAL : zk.PUB_EPHEMERAL + 2] == inputs["ephemeral"]
    verifier = PyProofVerifier({"shielded_transfer": keys.vk})
    assert not verifier.verify("shielded_transfer", json.loads(proof_file.read_text()), public)

    with pytest.raises(ProofError):
        keys.prove(_transfer(EXCEPTIONAL, babyjub.mul(babyjub.BASE8, EXCEPTIONAL)))


# --- every addition, for every scalar --------------------------------------------------------


def _meets(lo: int, hi: int) -> bool:
    """Does [lo, hi] contain a multiple of l?"""
    return lo // L != hi // L or lo % L == 0


def _fix_segment(n_windows: int) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """Every Montgomery addition of SegmentMulFix(n_windows) as (name, k1 range, k2 range):
    the multiples of the segment's base it adds, over every value of the scalar's bits."""
    adds = []
    for i in range(n_windows):
        m = 8**i
        adds += [(f"window {i} adr{j + 1}", (m, m), (j * m, j * m)) for j in range(2, 8)]
    c = 1
    for i in range(n_windows):
        k = 8 ** (i + 1) if i < n_windows - 1 else 2 * 8**n_windows
        adds.append((f"cadders {i}", (c, c), (k, k)))
        c += k
    lo = hi = 2 * 8**n_windows
    for i in range(n_windows):
        adds.append((f"adders {i}", (lo, hi), (8**i, 8 ** (i + 1))))
        lo, hi = lo + 8**i, hi + 8 ** (i + 1)
    return adds


def _any_segment(n: int) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """SegmentMulAny(n): step i adds 2^(i+1) to an accumulator 1 + sum of e_j 2^j, j <= i."""
    return [(f"bit {i}", (1, 2 ** (i + 1) - 1), (2 ** (i + 1), 2 ** (i + 1))) for i in range(n - 1)]


def test_no_montgomery_addition_can_add_a_point_to_itself() -> None:
    """The argument of docs/zk.md, checked over all 2^253 scalars at once: in EscalarMulFix
    (segments of 83 and 2 windows, bases Base8 and 2^249*Base8) and EscalarMulAny (segments of
    148 and 105 bits, bases R and 2^148*R, R of order l as the pool requires), the two points
    of an addition are k1*base and k2*base, equal x meaning k1 = +-k2 mod l. k1 - k2 is never
    a multiple of l (the free-slope case, P + P, cannot happen); k1 + k2 is one only at the
    last addition of EscalarMulFix's first segment (P + (-P), where no slope satisfies the
    constraint: see the tests above), and only for the low bits EXCEPTIONAL."""
    segments = {
        "fix 0": _fix_segment(83),
        "fix 1": _fix_segment(2),
        "any 0": _any_segment(148),
        "any 1": _any_segment(105),
    }
    negations = []
    for seg, adds in segments.items():
        for name, (a, b), (c, d) in adds:
            assert not _meets(a - d, b - c), f"{seg} {name} can add a point to itself"
            if _meets(a + c, b + d):
                negations.append(f"{seg} {name}")
    assert negations == ["fix 0 adders 82"]
    # ... and at that addition the sum is l exactly when the segment's digits spell EXCEPTIONAL
    assert 2 * 8**83 + (8**83 - 1) // 7 + EXCEPTIONAL == L
