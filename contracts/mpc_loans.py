"""Anti-stacking loans through the MPC oracle (the talk's example), hardened against gaming.

Each registered lender L_i shares the balance s_i that borrower B owes it with the MPC
servers (off the chain: only shares leave the lender) and records here that it did
(:meth:`record`). When B applies to lender L for ``amount`` (:meth:`apply`), the contract asks
the oracle whether every recorded s_i lies in [0, 2^40) and sum(s_i) + amount < max_exposure;
the answer bit is sealed to B's key and to L's registered receiver key only, so no one else
(the validators, the other lenders, the servers) learns it, and no one learns any s_i or the sum.

Rules that keep the check honest (each one defeats an attack on the earlier design):

* **Only registered lenders record.** The registry is set at genesis (``mpc.loans.lenders``)
  or by the consortium's admin (:meth:`register_lender`); a borrower's second account cannot
  record a negative "balance".
* **Share names are bound to the lender.** The servers namespace inputs by the key that
  stored them; the contract names each share by the lender's *registered* MPC key, so no one
  can take (squat) a lender's name first, and a lender's share is the one it stored itself.
* **Range checks in MPC.** The program opens nothing but the answer: a share outside
  [0, 2^40) (negative, or absurdly large) makes the answer 0.
* **The limit is the contract's policy** (``max_exposure``), the receiver key the lender's
  registered one: the borrower picks neither.
* **Rate limit.** At most ``applications_per_epoch`` applications per borrower per epoch of
  ``epoch_blocks`` blocks.
* **A bounded total, not only a rate.** A rate alone lets a patient borrower binary-search
  the sum over ~20 epochs (the earlier design). So amounts are quantised and the answers
  about one debt state are budgeted:

  - every ``amount`` is a positive multiple of the policy's ``amount_step`` ``q`` (genesis;
    it divides ``max_exposure`` ``M``), so the answer ``[s + a < M]`` for ``a = j q`` equals
    ``[floor(s / q) < M/q - j]``: it depends on the sum ``s`` only through which of the
    ``D = M / q`` cells ``[0, q), [q, 2q), ..., [M - 2q, M - q), [M - q, oo)`` holds it
    (an out-of-range balance answers 0 like the top cell);
  - each borrower gets at most ``probe_budget`` ``B`` answers per *debt state*, whatever
    they were (the answer is sealed to B and L: the contract cannot tell an approval from a
    refusal, so it counts every answer as a possible refusal). The debt state changes when
    a registered lender records (again) a balance of the borrower (:meth:`record`, after
    re-sharing it): that refreshes the budget; an approval that becomes a loan is such a
    change. Beyond the budget an application is refused without running the MPC.

  Bound: about one debt state, the borrower's answers take at most ``2^min(B, log2 D)``
  values, so it learns at most ``min(B, log2 D)`` bits, and never locates the sum more
  finely than one cell of width ``q``. Whatever its strategy, for at least half of the
  possible sums the set of sums consistent with its answers spans at least
  ``D / 2^(B+1)`` cells, i.e. an interval of width ``M / 2^(B+1)`` (at most ``2^B`` answer
  patterns; those covering fewer than ``D / 2^(B+1)`` cells cover fewer than ``D / 2`` in
  all); halving ends with ``floor(D / 2^B)`` cells for every sum. Defaults: ``B = 4``
  answers; ``q`` has no default (a policy choice: ``M / q`` levels).
  What the bound assumes: lenders record only real changes (each record is public, on the
  chain); balances re-shared without a record do not refresh the budget.
* **An optional lifetime cap** that assumes nothing about lenders: with genesis
  ``lifetime_answers`` ``L``, a borrower gets at most ``L`` answers in all about one set of
  recorded lenders, whatever is recorded in between (a routine re-record of an unchanged
  balance refreshes the budget above, not this cap). The set only grows; when another
  registered lender records a first balance of the borrower the count starts again. So at
  most ``L`` bits about all of the borrower's sums with one lender set, and at most
  ``L * MAX_LENDERS`` in all. The price: a borrower that has spent ``L`` answers can apply
  again only once a lender it did not have records.

Genesis ``mpc.loans``: ``{"lenders": [{"address": hex20, "mpc_key": hex32, "receiver_key":
hex32}], "max_exposure": int, "amount_step": int (dividing max_exposure; required if it is
positive), "probe_budget": int (1..64, default 4), "epoch_blocks": int,
"applications_per_epoch": int, "lifetime_answers": int (optional, 1..4096), "admin": hex20
(optional)}``.

State: ``b"L" + lender`` -> registered keys; ``b"l" + borrower`` -> lenders that recorded a
balance; ``b"v" + borrower`` -> debt-state version (records so far); ``b"p" + borrower`` ->
``{"version", "used"}``: answers spent on that debt state; ``b"t" + borrower`` ->
``{"lenders", "used"}``: answers spent on that lender set (its size: the set only grows);
``b"n" + borrower + epoch`` ->
applications in that epoch; ``b"a" + request id`` -> application.
"""

from __future__ import annotations

from accord.base.encoding import Value
from accord.base.errors import GenesisError
from accord.contracts.base import Context, Contract, method

MAX_LENDERS = 32
BALANCE_BITS = 40  # the program's range check: every balance in [0, 2^40)
MAX_EXPOSURE = 1 << 46  # sum of 32 balances below 2^40 plus an amount: far below 2^62
DEFAULT_PROBE_BUDGET = 4  # answers per borrower per debt state: at most 4 bits about it
MAX_PROBE_BUDGET = 64
MAX_LIFETIME_ANSWERS = 4096


def share_name(mpc_key: bytes, borrower: bytes) -> str:
    """The server-wide name of a lender's share of ``borrower``'s balance: the lender's MPC
    client key (hex, the servers' namespace) / ``loan/<borrower hex>``."""
    return mpc_key.hex() + "/loan/" + borrower.hex()


def _hex(v: object, n: int, what: str) -> bytes:
    try:
        b = bytes.fromhex(str(v))
    except ValueError:
        raise GenesisError(f"mpc.loans: {what} must be hex") from None
    if len(b) != n:
        raise GenesisError(f"mpc.loans: {what} has {n} bytes")
    return b


class MpcLoans(Contract):
    name = "mpc_loans"

    def genesis_state(self) -> dict[str | bytes, Value]:
        cfg = (self.genesis.mpc or {}).get("loans", {})
        if not isinstance(cfg, dict):
            raise GenesisError("genesis mpc.loans must be an object")
        lenders = cfg.get("lenders", [])
        if not isinstance(lenders, list) or len(lenders) > 1024:
            raise GenesisError("mpc.loans.lenders must be a list of at most 1024 lenders")
        out: dict[str | bytes, Value] = {}
        for entry in lenders:
            if not isinstance(entry, dict):
                raise GenesisError("mpc.loans.lenders: every lender is an object")
            addr = _hex(entry.get("address"), 20, "a lender address")
            out[b"L" + addr] = {
                "mpc_key": _hex(entry.get("mpc_key"), 32, "mpc_key"),
                "receiver_key": _hex(entry.get("receiver_key"), 32, "receiver_key"),
            }
        exposure = cfg.get("max_exposure", 0)
        epoch = cfg.get("epoch_blocks", 100)
        per_epoch = cfg.get("applications_per_epoch", 1)
        if type(exposure) is not int or not 0 <= exposure <= MAX_EXPOSURE:
            raise GenesisError("mpc.loans.max_exposure must be an integer in [0, 2^46]")
        if type(epoch) is not int or not 1 <= epoch <= 10**9:
            raise GenesisError("mpc.loans.epoch_blocks must be a positive integer")
        if type(per_epoch) is not int or not 1 <= per_epoch <= 16:
            raise GenesisError("mpc.loans.applications_per_epoch must be in [1, 16]")
        step = cfg.get("amount_step", 1 if exposure == 0 else None)
        if type(step) is not int or step < 1 or exposure % step:
            raise GenesisError(
                "mpc.loans.amount_step must be a positive integer dividing max_exposure "
                "(amounts are multiples of it: max_exposure / amount_step answer levels)"
            )
        budget = cfg.get("probe_budget", DEFAULT_PROBE_BUDGET)
        if type(budget) is not int or not 1 <= budget <= MAX_PROBE_BUDGET:
            raise GenesisError(f"mpc.loans.probe_budget must be in [1, {MAX_PROBE_BUDGET}]")
        policy: dict[str, Value] = {
            "max_exposure": exposure,
            "epoch_blocks": epoch,
            "per_epoch": per_epoch,
            "amount_step": step,
            "probe_budget": budget,
        }
        lifetime = cfg.get("lifetime_answers")
        if lifetime is not None:
            if type(lifetime) is not int or not 1 <= lifetime <= MAX_LIFETIME_ANSWERS:
                raise GenesisError(
                    f"mpc.loans.lifetime_answers must be an integer in [1, {MAX_LIFETIME_ANSWERS}]"
                )
            policy["lifetime_answers"] = lifetime
        if cfg.get("admin") is not None:
            policy["admin"] = _hex(cfg["admin"], 20, "admin")
        out["policy"] = policy
        return out

    @method
    def register_lender(
        self, ctx: Context, lender: bytes, mpc_key: bytes, receiver_key: bytes
    ) -> None:
        """The consortium's admin (genesis ``mpc.loans.admin``) registers a lender."""
        policy = ctx.get("policy", {})
        ctx.require(
            policy.get("admin") is not None and ctx.sender == policy["admin"],
            "only the admin named in genesis registers lenders",
        )
        ctx.require(len(lender) == 20, "lender must be a 20-byte address")
        ctx.require(len(mpc_key) == 32 and len(receiver_key) == 32, "keys have 32 bytes")
        ctx.set(b"L" + lender, {"mpc_key": mpc_key, "receiver_key": receiver_key})
        ctx.emit("LenderRegistered", lender=lender)

    @method
    def record(self, ctx: Context, borrower: bytes) -> str:
        """A registered lender declares that it shared B's balance with the servers.

        Returns the share's name: the lender stores its shares under ``loan/<borrower hex>``
        with its registered MPC key, which is where the servers look.
        """
        ctx.require(len(borrower) == 20, "borrower must be a 20-byte address")
        reg = ctx.get(b"L" + ctx.sender)
        ctx.require(reg is not None, "only registered lenders record balances")
        assert reg is not None
        lenders = ctx.get(b"l" + borrower, [])
        if ctx.sender not in lenders:
            ctx.require(len(lenders) < MAX_LENDERS, "too many lenders for one borrower")
            lenders.append(ctx.sender)
            ctx.set(b"l" + borrower, lenders)
        # a new debt state: the borrower's budget of answers starts again (see the bound)
        ctx.set(b"v" + borrower, ctx.get(b"v" + borrower, 0) + 1)
        ctx.emit("BalanceRecorded", borrower=borrower, lender=ctx.sender)
        return share_name(reg["mpc_key"], borrower)

    @method
    def apply(self, ctx: Context, lender: bytes, amount: int, borrower_key: bytes) -> bytes:
        """B asks registered lender L for ``amount``; the oracle checks, for B and L only,
        that all of B's recorded balances are in range and sum + amount < max_exposure."""
        policy = ctx.get("policy", {})
        reg = ctx.get(b"L" + lender) if len(lender) == 20 else None
        ctx.require(reg is not None, "lender is not registered")
        assert reg is not None
        ctx.require(
            type(amount) is int and 0 < amount < policy.get("max_exposure", 0),
            "amount must be positive and below the contract's max exposure",
        )
        step = policy.get("amount_step", 1)
        ctx.require(amount % step == 0, f"amount must be a multiple of the amount step {step}")
        ctx.require(
            len(borrower_key) == 32 and borrower_key != reg["receiver_key"],
            "borrower_key must be the borrower's own 32-byte key",
        )
        lenders = ctx.get(b"l" + ctx.sender, [])
        ctx.require(len(lenders) > 0, "no recorded balances for this borrower")
        epoch = ctx.height // policy["epoch_blocks"]
        used_key = b"n" + ctx.sender + epoch.to_bytes(8, "big")
        used = ctx.get(used_key, 0)
        ctx.require(
            used < policy["per_epoch"],
            f"at most {policy['per_epoch']} applications per epoch of "
            f"{policy['epoch_blocks']} blocks",
        )
        version = ctx.get(b"v" + ctx.sender, 0)
        spent = ctx.get(b"p" + ctx.sender, {"version": version, "used": 0})
        probes = spent["used"] if spent["version"] == version else 0
        budget = policy.get("probe_budget", DEFAULT_PROBE_BUDGET)
        ctx.require(
            probes < budget,
            f"the budget of {budget} answers for this debt state is spent: no more "
            "applications until a lender records a change of the borrower's debts",
        )
        lifetime = policy.get("lifetime_answers")
        spent_set = ctx.get(b"t" + ctx.sender, {"lenders": len(lenders), "used": 0})
        set_used = spent_set["used"] if spent_set["lenders"] == len(lenders) else 0
        ctx.require(
            lifetime is None or set_used < lifetime,
            f"the lifetime cap of {lifetime} answers about this borrower's lenders is spent: "
            "no more applications until another registered lender records a balance",
        )
        ctx.set(used_key, used + 1)
        ctx.set(b"p" + ctx.sender, {"version": version, "used": probes + 1})
        if lifetime is not None:
            ctx.set(b"t" + ctx.sender, {"lenders": len(lenders), "used": set_used + 1})
        # a lender stays in the registry once registered (there is no removal), so every
        # recorded lender has its key; names come from the registry, never from the borrower
        names = [share_name(ctx.get(b"L" + a, {}).get("mpc_key", b""), ctx.sender) for a in lenders]
        request_id = ctx.mpc.request(
            "anti_stacking",
            {"shares": names, "params": {"limit": policy["max_exposure"] - amount}},
            [borrower_key, reg["receiver_key"]],
            "on_answer",
        )
        ctx.set(
            b"a" + request_id,
            {"borrower": ctx.sender, "lender": lender, "amount": amount, "status": "pending"},
        )
        ctx.emit("LoanApplied", id=request_id, borrower=ctx.sender, lender=lender)
        return request_id

    @method
    def on_answer(
        self, ctx: Context, request_id: bytes, ok: bool, outputs: list | None, error: str
    ) -> None:
        """The oracle's callback: keep the sealed answer for B and L, or the failure."""
        ctx.require(ctx.caller == "mpc_oracle", "only the MPC oracle answers")
        app = ctx.get(b"a" + request_id)
        ctx.require(app is not None, "unknown application")
        app["status"] = "answered" if ok else "failed"
        app["outputs"] = outputs
        app["error"] = error
        ctx.set(b"a" + request_id, app)
        ctx.emit("LoanDecided", id=request_id, ok=ok)

    @method(readonly=True)
    def application(self, ctx: Context, request_id: bytes) -> dict | None:
        return ctx.get(b"a" + request_id)

    @method(readonly=True)
    def lender(self, ctx: Context, lender: bytes) -> dict | None:
        return ctx.get(b"L" + lender)

    @method(readonly=True)
    def policy(self, ctx: Context) -> dict:
        """The limit, the amount step, the answer budget and the rate limit."""
        return dict(ctx.get("policy", {}))

    @method(readonly=True)
    def answers_left(self, ctx: Context, borrower: bytes) -> int:
        """How many applications ``borrower`` may still make about its current debt state (and
        its current lender set, under a lifetime cap)."""
        policy = ctx.get("policy", {})
        version = ctx.get(b"v" + borrower, 0)
        spent = ctx.get(b"p" + borrower, {"version": version, "used": 0})
        used = spent["used"] if spent["version"] == version else 0
        left = max(0, policy.get("probe_budget", DEFAULT_PROBE_BUDGET) - used)
        lifetime = policy.get("lifetime_answers")
        if lifetime is not None:
            n = len(ctx.get(b"l" + borrower, []))
            spent_set = ctx.get(b"t" + borrower, {"lenders": n, "used": 0})
            set_used = spent_set["used"] if spent_set["lenders"] == n else 0
            left = min(left, max(0, lifetime - set_used))
        return left
