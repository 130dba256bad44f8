"""Attacks on the anti-stacking check, each of which defeated the earlier design.

The borrower owes 40,000 + 25,000 + 10,000 = 75,000 to three registered lenders; the
contract's policy is max_exposure = 1,000,000, so an application for 950,000 must be refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.crypto.ed25519 import AccountKey
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster
from accord.mpc.local import run_local
from accord.mpc.oracle import open_result, requests_in
from accord.mpc.programs import PROGRAMS

from .support.oracle import (  # noqa: F401 - setup is the fixture
    AMOUNT_STEP,
    LENDERS,
    MAX_EXPOSURE,
    PROBE_BUDGET,
    _apply,
    _next_epoch,
    _record_balances,
    _share_as,
    _tx,
    run_workers,
    setup,
)

BORROWER = AccountKey.from_name("borrower")


def _decide(chain, workers, lender, amount, nonce):
    """Apply, let the servers answer, and return the bit the borrower opens."""
    _next_epoch(chain)
    bkey = X25519PrivateKey.generate()
    receipts, rid = _apply(chain, BORROWER, lender, amount, bkey, nonce)
    answers = run_workers(workers, receipts)
    assert all(r.ok for r in chain.commit(answers))
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    assert app["status"] == "answered", app
    return int(open_result(bkey, rid, app["outputs"])["ok"])


def test_the_honest_case(setup):  # noqa: F811
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000])
    assert _decide(chain, workers, lenders[0], 900_000, 0) == 1
    assert _decide(chain, workers, lenders[0], 950_000, 1) == 0


def test_an_unregistered_account_cannot_record_a_negative_balance(setup):  # noqa: F811
    """The finding: the borrower's second account recorded itself as a lender and shared
    -10^9. Now only registered lenders record."""
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000])
    sock_puppet = AccountKey.from_name("borrower-2nd-account")
    puppet_key = X25519PrivateKey.generate()
    with Cluster(infos, key=puppet_key) as c:
        c.share(f"loan/{BORROWER.address.hex()}", np.array(-(10**9)), 0)
    r = chain.commit([_tx(sock_puppet, 0, "mpc_loans", "record", borrower=BORROWER.address)])
    assert not r[0].ok and "registered lenders" in r[0].error
    assert _decide(chain, workers, lenders[0], 950_000, 0) == 0


def test_a_registered_lenders_negative_or_huge_share_fails_the_range_check(setup):  # noqa: F811
    """A colluding registered lender shares -10^9 (or 2^41): the MPC range check answers 0,
    although the sum would be far below the limit."""
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000, -(10**9)])
    assert _decide(chain, workers, lenders[0], 950_000, 0) == 0
    assert _decide(chain, workers, lenders[0], 5_000, 1) == 0  # any amount: the input is invalid
    # the colluder replaces its share with an absurdly large one: still invalid
    _share_as(LENDERS[3][1], infos, BORROWER, 2**41)
    assert _decide(chain, workers, lenders[0], 5_000, 2) == 0
    # an honest balance again: the check passes
    _share_as(LENDERS[3][1], infos, BORROWER, 5_000)
    assert _decide(chain, workers, lenders[0], 900_000, 3) == 1


def test_squatting_a_lenders_share_name_changes_nothing(setup):  # noqa: F811
    """The finding: share names were predictable and owned by whoever stored first, so a
    squatter could block the real lender. Now each name lives in its storer's namespace."""
    g, chain, servers, workers, infos = setup
    squatter = X25519PrivateKey.generate()
    lender_key = LENDERS[0][1]
    name = f"loan/{BORROWER.address.hex()}"
    with Cluster(infos, key=squatter) as c:
        c.share(name, np.array(-(10**9)), 0)  # first, under the same local name
        c.share(public_bytes(lender_key).hex() + "/" + name, np.array(-(10**9)), 0)
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000])  # not blocked
    assert _decide(chain, workers, lenders[0], 950_000, 0) == 0
    assert _decide(chain, workers, lenders[0], 900_000, 1) == 1


def test_the_borrower_chooses_neither_the_limit_nor_the_lenders_key(setup):  # noqa: F811
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000])
    mine = X25519PrivateKey.generate()
    nonce = 0
    for extra in ({"limit": 10**12}, {"lender_key": public_bytes(mine)}):
        r = chain.commit(
            [
                _tx(
                    BORROWER,
                    nonce,
                    "mpc_loans",
                    "apply",
                    lender=lenders[0].address,
                    amount=5_000,
                    borrower_key=public_bytes(mine),
                    **extra,
                )
            ]
        )
        assert not r[0].ok
        nonce += 1
    # an unregistered "lender" (the borrower's own account) is refused
    r = chain.commit(
        [
            _tx(
                BORROWER,
                nonce,
                "mpc_loans",
                "apply",
                lender=BORROWER.address,
                amount=5_000,
                borrower_key=public_bytes(mine),
            )
        ]
    )
    assert not r[0].ok and "not registered" in r[0].error
    r = chain.commit(
        [
            _tx(
                BORROWER,
                nonce + 1,
                "mpc_loans",
                "apply",
                lender=lenders[0].address,
                amount=10**7,
                borrower_key=public_bytes(mine),
            )
        ]
    )
    assert not r[0].ok and "max exposure" in r[0].error
    nonce += 2
    # the request names the contract's limit and the lender's registered receiver key
    _next_epoch(chain)
    receipts, rid = _apply(chain, BORROWER, lenders[0], 5_000, mine, nonce)
    (req,) = requests_in(receipts)
    assert req.params == {"limit": 1_000_000 - 5_000}
    assert req.reveal_to == [public_bytes(mine), public_bytes(LENDERS[0][2])]


def test_binary_search_of_the_sum_is_rate_limited(setup):  # noqa: F811
    """The finding: 20 applications binary-searched the sum within a few blocks. Now a
    borrower gets one answer (one bit) per epoch."""
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000])
    _next_epoch(chain)
    key = public_bytes(X25519PrivateKey.generate())
    accepted = 0
    for nonce in range(20):
        r = chain.commit(
            [
                _tx(
                    BORROWER,
                    nonce,
                    "mpc_loans",
                    "apply",
                    lender=lenders[nonce % 3].address,
                    amount=500_000 + 5_000 * nonce,
                    borrower_key=key,
                )
            ]
        )
        accepted += r[0].ok
        if not r[0].ok:
            assert "applications per epoch" in r[0].error
    assert accepted == 2  # 20 blocks span two epochs of 10 blocks: two bits, not twenty


def _try_apply(chain, workers, lender, amount, nonce):
    """One application in a fresh epoch: the bit the borrower opens, or None if refused."""
    _next_epoch(chain)
    bkey = X25519PrivateKey.generate()
    r = chain.commit(
        [
            _tx(
                BORROWER,
                nonce,
                "mpc_loans",
                "apply",
                lender=lender.address,
                amount=amount,
                borrower_key=public_bytes(bkey),
            )
        ]
    )
    if not r[0].ok:
        return None, r[0].error
    rid = r[0].result
    assert all(x.ok for x in chain.commit(run_workers(workers, r)))
    app = chain.rt.query(chain.state, "mpc_loans", "application", {"request_id": rid})
    return int(open_result(bkey, rid, app["outputs"])["ok"]), ""


def test_a_patient_binary_search_learns_no_more_than_the_bound(setup):  # noqa: F811
    """The finding: one answer per epoch still let a borrower binary-search the sum over ~20
    epochs. The bound (contracts/mpc_loans.py): at most B = probe_budget answers per debt
    state, on amounts that are multiples of q = amount_step, so the halving search ends with
    the sum inside an interval of width >= M / 2^(B+1) (here 31,250), never one step. On the
    old contract all 20 answers came back and the interval shrank to 5,000."""
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000])  # s = 75,000
    lo, hi = 0, MAX_EXPOSURE  # what the borrower knows: lo <= s < hi
    answers, refusals, nonce = 0, 0, 0
    for _ in range(20):
        mid = (lo + hi) // 2  # ask whether s < mid: amount = M - mid, on the step grid
        amount = max(AMOUNT_STEP, (MAX_EXPOSURE - mid) // AMOUNT_STEP * AMOUNT_STEP)
        bit, error = _try_apply(chain, workers, lenders[0], amount, nonce)
        nonce += 1
        if bit is None:
            assert "budget" in error, error
            refusals += 1
            continue
        answers += 1
        if bit:  # s + amount < M
            hi = min(hi, MAX_EXPOSURE - amount)
        else:
            lo = max(lo, MAX_EXPOSURE - amount)
    assert lo <= 75_000 < hi  # the borrower's knowledge is correct ...
    assert answers == PROBE_BUDGET and refusals == 20 - PROBE_BUDGET
    assert hi - lo >= MAX_EXPOSURE // 2 ** (PROBE_BUDGET + 1)  # ... and no finer than the bound
    assert (
        chain.rt.query(chain.state, "mpc_loans", "answers_left", {"borrower": BORROWER.address})
        == 0
    )

    # a lender records a change of the debts (a new loan, a repayment): a new debt state,
    # whose answers start again
    _share_as(LENDERS[0][1], infos, BORROWER, 140_000)
    r = chain.commit([_tx(lenders[0], 1, "mpc_loans", "record", borrower=BORROWER.address)])
    assert r[0].ok
    assert _try_apply(chain, workers, lenders[0], 850_000, nonce)[0] == 0  # 175,000 + 850,000


LIFETIME = 6  # answers about one lender set: 6 bits at most, whatever lenders record


@pytest.mark.parametrize("setup", [{"lifetime_answers": LIFETIME}], indirect=True)
def test_routine_re_records_do_not_buy_a_search_under_the_lifetime_cap(setup):  # noqa: F811
    """The budget per debt state assumes lenders record only changes. A lender that records
    the unchanged balance again whenever the borrower's budget is spent (a routine monthly
    statement, or a lender that helps the borrower) refreshes it: on the contract without a
    lifetime cap the 20-application halving search got all 20 answers (four per record) and
    pinned the sum to one step (5,000). With ``lifetime_answers`` L = 6 the borrower gets 6
    answers in all about this lender set, so the search ends with an interval of width at
    least M / 2^(L+1); a new lender's first record starts the count again."""
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 25_000, 10_000])  # s = 75,000
    lo, hi = 0, MAX_EXPOSURE
    answers, lender_nonce, nonce = 0, 1, 0
    refusals: list[str] = []
    for _ in range(20):
        left = chain.rt.query(
            chain.state, "mpc_loans", "answers_left", {"borrower": BORROWER.address}
        )
        if left == 0:  # the routine re-record of an unchanged balance
            _share_as(LENDERS[0][1], infos, BORROWER, 40_000)
            r = chain.commit(
                [_tx(lenders[0], lender_nonce, "mpc_loans", "record", borrower=BORROWER.address)]
            )
            assert r[0].ok
            lender_nonce += 1
        mid = (lo + hi) // 2
        amount = max(AMOUNT_STEP, (MAX_EXPOSURE - mid) // AMOUNT_STEP * AMOUNT_STEP)
        bit, error = _try_apply(chain, workers, lenders[0], amount, nonce)
        nonce += 1
        if bit is None:
            refusals.append(error)
            continue
        answers += 1
        if bit:
            hi = min(hi, MAX_EXPOSURE - amount)
        else:
            lo = max(lo, MAX_EXPOSURE - amount)
    assert lo <= 75_000 < hi
    assert answers == LIFETIME, (answers, hi - lo)
    assert refusals and all("lifetime cap of 6 answers" in e for e in refusals), refusals[:1]
    assert hi - lo >= MAX_EXPOSURE // 2 ** (LIFETIME + 1)
    policy = chain.rt.query(chain.state, "mpc_loans", "policy", {})
    assert policy["lifetime_answers"] == LIFETIME

    # another registered lender's first record: a new lender set, a new count
    _share_as(LENDERS[3][1], infos, BORROWER, 5_000)
    r = chain.commit([_tx(LENDERS[3][0], 0, "mpc_loans", "record", borrower=BORROWER.address)])
    assert r[0].ok
    assert _try_apply(chain, workers, lenders[0], 900_000, nonce)[0] == 1  # 80,000 + 900,000


def test_amounts_are_quantised_to_the_policy_step(setup):  # noqa: F811
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000])
    bit, error = _try_apply(chain, workers, lenders[0], 900_001, 0)
    assert bit is None and "multiple of the amount step 5000" in error
    policy = chain.rt.query(chain.state, "mpc_loans", "policy", {})
    assert policy["amount_step"] == AMOUNT_STEP and policy["probe_budget"] == PROBE_BUDGET
    assert _try_apply(chain, workers, lenders[0], 900_000, 1)[0] == 1


def test_only_the_admin_registers_lenders(setup):  # noqa: F811
    g, chain, servers, workers, infos = setup
    newcomer = AccountKey.from_name("new-lender")
    mk, rk = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    args = {
        "lender": newcomer.address,
        "mpc_key": public_bytes(mk),
        "receiver_key": public_bytes(rk),
    }
    r = chain.commit([_tx(newcomer, 0, "mpc_loans", "register_lender", **args)])
    assert not r[0].ok and "admin" in r[0].error
    admin = AccountKey.from_name("consortium-admin")
    assert chain.commit([_tx(admin, 0, "mpc_loans", "register_lender", **args)])[0].ok
    with Cluster(infos, key=mk) as c:
        c.share(f"loan/{BORROWER.address.hex()}", np.array(1), 0)
    assert chain.commit([_tx(newcomer, 1, "mpc_loans", "record", borrower=BORROWER.address)])[0].ok


def test_a_malformed_share_fails_one_application_not_the_oracle(setup):  # noqa: F811
    """Finding 4 through the contracts: a registered lender's share of shape (2,) fails the
    applications that include it (ok=False, with the reason); nothing else stops."""
    g, chain, servers, workers, infos = setup
    lenders = _record_balances(chain, infos, BORROWER, [40_000, 7])
    _share_as(LENDERS[1][1], infos, BORROWER, np.array([1, 2]))
    _next_epoch(chain)
    receipts, rid = _apply(chain, BORROWER, lenders[0], 5_000, X25519PrivateKey.generate(), 0)
    answers = run_workers(workers, receipts)
    assert len(answers) == 3 and all(tx.args["ok"] is False for tx in answers)
    assert "must be one integer" in answers[0].args["error"]
    r = chain.commit(answers)  # the first failure ends the request; the others come too late
    assert r[0].ok and not r[1].ok and not r[2].ok
    _share_as(LENDERS[1][1], infos, BORROWER, 7)  # the lender fixes its share
    assert _decide(chain, workers, lenders[0], 900_000, 1) == 1


@pytest.mark.parametrize(
    "balances, limit, want",
    [
        ([75_000, -(10**9)], 100_000, 0),  # the finding: a negative share hid real debt
        ([75_000, 2**40], 2**61, 0),  # out of range above
        ([75_000, 2**40 - 1], 2**61, 1),  # the largest valid balance
        ([75_000, 0], 75_001, 1),
        ([75_000, 0], 75_000, 0),
        ([-1], 100, 0),
    ],
)
def test_the_program_range_checks_every_balance(balances, limit, want):
    """The program itself (the same code the servers run): no negative or huge balance can
    pull the sum below the limit."""
    names = [f"b{i}" for i in range(len(balances))]

    def prog(p, **shared):
        return PROGRAMS["anti_stacking"](p, shared, limit=limit)["ok"].reveal()

    out = run_local(prog, {n: (np.array(v), 0) for n, v in zip(names, balances, strict=True)})
    assert int(out[0]) == want
