"""The regulator's ciphertext hides what it encrypts from everyone but the regulator.

Two attacks from the outside review, each run against the cipher the wallet and the circuit
compute today:

* guess confirmation: version 1 padded with the whole state of one Poseidon permutation of
  (0, Sx, Sy, 5, 0) (today: the rate lanes of a width-6 permutation, capacity kept secret). The permutation is public and invertible, so for a guessed plaintext m,
  ``P^-1(c - m)`` has the form (0, x, y, 5, 0) with (x, y) on BabyJubJub exactly when m is
  right. With four candidate owners and values 0..200 the review found sender, receivers and
  amounts in a few hundred guesses. The attack below is that search; it must confirm nothing.
* a public transfer: an ephemeral scalar of 0, l or 2l makes E the identity and every pad a
  public constant. The wallet, the circuit and the pool must all refuse it.
"""

from __future__ import annotations

import random
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from accord.base.errors import ProofError, ValidationError
from accord.zk import artifacts, babyjub
from accord.zk import notes as zk
from accord.zk.poseidon import FIELD, N_ROUNDS_F, N_ROUNDS_P, _params, poseidon_ex

pytestmark = pytest.mark.timeout(900)

REG = zk.RegulatorKey.from_seed(b"cipher-regulator")
OWNERS = [zk.SpendingKey.from_seed(s.encode()).owner for s in ("ann", "ben", "cat", "dan")]


# --- the attacker's tools -----------------------------------------------------------------------


def _mat_inv(m: tuple[tuple[int, ...], ...]) -> list[list[int]]:
    """Inverse of a square matrix over the field (Gauss-Jordan)."""
    n = len(m)
    a = [list(row) + [int(i == j) for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        piv = next(r for r in range(col, n) if a[r][col])
        a[col], a[piv] = a[piv], a[col]
        inv = pow(a[col][col], FIELD - 2, FIELD)
        a[col] = [x * inv % FIELD for x in a[col]]
        for r in range(n):
            if r != col and a[r][col]:
                f = a[r][col]
                a[r] = [(x - f * y) % FIELD for x, y in zip(a[r], a[col], strict=True)]
    return [row[n:] for row in a]


def inverse_permutation(state: list[int]) -> list[int]:
    """circomlib's Poseidon permutation run backwards (everything in it is public)."""
    t = len(state)
    c, m = _params(t)
    minv = _mat_inv(m)
    n_p = N_ROUNDS_P[t - 2]
    half = N_ROUNDS_F // 2
    d = pow(5, -1, FIELD - 1)  # x -> x^(1/5), the inverse S-box
    for r in reversed(range(N_ROUNDS_F + n_p)):
        state = [sum(row[j] * state[j] for j in range(t)) % FIELD for row in minv]
        if r < half or r >= half + n_p:
            state = [pow(x, d, FIELD) for x in state]
        else:
            state[0] = pow(state[0], d, FIELD)
        state = [(state[i] - c[r * t + i]) % FIELD for i in range(t)]
    return state


def confirms(cipher: list[int], guess: list[int]) -> bool:
    """The review's test of a guess: does c - guess invert to (0, x, y, 5, 0), (x, y) on curve?"""
    st = inverse_permutation([(ci - gi) % FIELD for ci, gi in zip(cipher, guess, strict=True)])
    return st[0] == 0 and st[3] == zk.N_CIPHER and st[4] == 0 and babyjub.on_curve((st[1], st[2]))


def search(cipher: list[int], sender: int, values: range) -> list[list[int]]:
    """Every (receiver 1, value 1, receiver 2, value 2) guess the attacker's test confirms;
    the sender is known (the observer watched the deposit), as are the candidate owners."""
    found = []
    for r1, r2 in product(OWNERS, repeat=2):
        for v1 in values:
            guess = [sender, r1, v1, r2, 0]  # the wallet's zero-value change note
            if confirms(cipher, guess):
                found.append(guess)
    return found


# --- guess confirmation -------------------------------------------------------------------------


def test_the_attack_works_on_version_1() -> None:
    """Sanity check of the attacker: on the old cipher it finds the plaintext, and only it."""
    plain = [OWNERS[0], OWNERS[2], 137, OWNERS[0], 0]
    e = 987654321
    shared = babyjub.mul(REG.public, e)
    pads = poseidon_ex((shared[0], shared[1], zk.N_CIPHER, 0), 0, zk.N_CIPHER)  # version 1
    cipher = [(m + p) % FIELD for m, p in zip(plain, pads, strict=True)]
    assert confirms(cipher, plain)
    assert not confirms(cipher, [OWNERS[0], OWNERS[2], 136, OWNERS[0], 0])


def test_no_guess_is_confirmed_on_todays_cipher() -> None:
    """The same search on the cipher the wallet makes now: the right guess is not confirmed
    (nor any other), and the regulator still reads the transfer."""
    plain = [OWNERS[0], OWNERS[2], 137, OWNERS[0], 0]
    eph, cipher = zk.regulator_encrypt(REG.public, plain, 987654321)
    assert not confirms(cipher, plain)
    assert search(cipher, OWNERS[0], range(130, 140)) == []
    rec = REG.decrypt(eph, cipher)
    assert (rec.sender, rec.receivers, rec.values) == (OWNERS[0], (OWNERS[2], OWNERS[0]), (137, 0))


def test_the_capacity_lane_stays_secret() -> None:
    """Today's pads are lanes 1..5 of a width-6 permutation; even given the right plaintext,
    an observer lacks lane 0. Running the permutation backwards from any guess of it gives no
    input of the form (0, x, y, PAD_TAG, 0, 0); only the true lane 0 (which needs S) does."""
    shared = babyjub.mul(REG.public, 42)
    pads = zk.regulator_pads(shared)
    assert len(set(pads)) == zk.N_CIPHER
    assert pads != poseidon_ex((shared[0], shared[1], zk.N_CIPHER, 0), 0, zk.N_CIPHER)
    assert pads != zk.regulator_pads(babyjub.mul(REG.public, 43))
    full = poseidon_ex((shared[0], shared[1], zk.PAD_TAG, 0, 0), 0, 6)
    assert full[1:] == pads
    assert inverse_permutation(full) == [0, shared[0], shared[1], zk.PAD_TAG, 0, 0]
    for lane0 in range(16):
        st = inverse_permutation([lane0, *pads])
        assert not (st[0] == 0 and st[3:] == [zk.PAD_TAG, 0, 0])


# --- identity ephemeral keys --------------------------------------------------------------------

L = babyjub.SUBORDER


@pytest.mark.parametrize("e", [0, L, 2 * L])
def test_wallet_refuses_an_ephemeral_scalar_of_zero_mod_l(e: int) -> None:
    with pytest.raises(ValidationError, match="ephemeral"):
        zk.regulator_encrypt(REG.public, [1, 2, 3, 4, 5], e)


@pytest.mark.parametrize("point", [babyjub.IDENTITY, (0, FIELD - 1), (1, 2)])
def test_regulator_refuses_an_identity_or_bad_ephemeral_key(point: tuple[int, int]) -> None:
    with pytest.raises(ValidationError, match="ephemeral"):
        REG.decrypt(point, [1, 2, 3, 4, 5])


def _identity_input(e: int) -> dict[str, Any]:
    """A transfer whose sender chose e = 0 mod l and computed E and the ciphertext as the
    circuit would (S = e*R = identity): what a sender making its transfer public would send."""
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
    good = plan.circuit_input
    plain = [
        a.owner,
        good["outOwner"][0],
        good["outValue"][0],
        good["outOwner"][1],
        good["outValue"][1],
    ]
    pads = zk.regulator_pads(babyjub.IDENTITY)
    return {
        **good,
        "e": e,
        "ephemeral": list(babyjub.IDENTITY),
        "ciphertext": [(m + p) % FIELD for m, p in zip(plain, pads, strict=True)],
    }


@pytest.mark.parametrize("e", [0, L, 2 * L])
def test_circuit_has_no_proof_for_an_identity_ephemeral_key(e: int) -> None:
    keys = artifacts.test_keys("shielded_transfer")
    with pytest.raises(ProofError):
        keys.prove(_identity_input(e))


def test_pool_refuses_an_identity_ephemeral_key_before_the_proof(tmp_path: Path) -> None:
    from .test_zk_pool import ALICE, Ledger

    ledger = Ledger(artifacts.test_keys("shielded_transfer"), tmp_path)
    plan = ledger.plan(zk.SpendingKey.from_seed(b"ann"), [], [], deposit=0)
    args = ledger.args(plan)
    inputs = list(args["inputs"])
    inputs[zk.PUB_EPHEMERAL] = (0).to_bytes(32, "big")
    inputs[zk.PUB_EPHEMERAL + 1] = (1).to_bytes(32, "big")
    r = ledger.send(ALICE, "shielded_pool", "transact", **{**args, "inputs": inputs})
    assert not r.ok and "ephemeral key is the identity" in r.error, r.error


@pytest.mark.parametrize("e", [L + 1, 2**253 - 1])
def test_an_ephemeral_scalar_above_l_is_still_read_by_the_regulator(e: int) -> None:
    """Second review: a sender is not bound to the wallet's range 1..l-1 (the circuit takes any
    253-bit e). Beyond l, and with every bit set, the circuit's E = e*Base8 and S = e*R still
    agree with the group law, so the only proof there is carries a ciphertext the regulator
    reads; a sender cannot use such an e to hide a transfer from it."""
    keys = artifacts.test_keys("shielded_transfer")
    base = _identity_input(0)
    pads = zk.regulator_pads(babyjub.IDENTITY)
    plain = [(c - p) % FIELD for c, p in zip(base["ciphertext"], pads, strict=True)]
    eph, cipher = zk.regulator_encrypt(REG.public, plain, e)
    _, public = keys.prove({**base, "e": e, "ephemeral": list(eph), "ciphertext": cipher})
    e_x, e_y = public[zk.PUB_EPHEMERAL : zk.PUB_EPHEMERAL + 2]
    rec = REG.decrypt((e_x, e_y), public[zk.PUB_CIPHER :])
    assert [rec.sender, rec.receivers[0], rec.values[0], rec.receivers[1], rec.values[1]] == plain
    assert rec.values == (50, 0)
