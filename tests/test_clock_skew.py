"""Clock-skewed validators still lead their share (#17): the simulator drives the real core
with per-validator clock offsets. ``_OldCore`` reinstates the rounds-from-the-raw-clock
behaviour (no skew estimate, no leading after a late commit), under which a validator 0.8 s
ahead or behind proposed none or one of the blocks (as faketime showed on real nodes)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from accord.consensus import Core, CostModelCrypto, Params, Tick, Ticket
from accord.consensus.sortition import sortition_message
from accord.sim.engine import SimConfig, Simulator

ROUNDS = 40


class _OldCore(Core):
    def _observe_clock(self, frm: int, msg: Any) -> None:
        pass

    def _lead_after_commit(self) -> None:
        pass


def _share(offset_ms: float, core_class: type[Core] = Core, skewed: int = 3) -> tuple[int, int]:
    offsets = [0.0] * 4
    offsets[skewed] = offset_ms
    cfg = SimConfig(
        nodes=4,
        rounds=ROUNDS,
        round_ms=1000,
        stage2_ms=500,
        latency_ms=5,
        ticket_wait_ms=30,
        clock_offsets_ms=offsets,
        seed=1,
        core_class=core_class,
    )
    r = Simulator(cfg).run()
    assert r.safety_violations == 0, r.violations
    return Counter(r.proposers)[skewed], len(r.proposers)


@pytest.mark.parametrize("offset_ms", [800.0, -800.0, 950.0, -1900.0])
def test_skewed_validator_leads_about_its_share(offset_ms: float) -> None:
    before, total_before = _share(offset_ms, _OldCore)
    after, total = _share(offset_ms)
    print(
        f"offset {offset_ms:+.0f} ms: proposed {before}/{total_before} before, {after}/{total} now"
    )
    assert total >= ROUNDS - 3
    assert after >= total // 4 // 2, (after, total)  # at least half of a fair 1/n share
    if abs(offset_ms) == 800.0:
        assert before <= 1  # what the old rule did (and the test fails on the old core)


def test_no_skew_changes_nothing() -> None:
    """Validators on one clock estimate every peer behind (messages take time): no skew."""
    cfg = SimConfig(
        nodes=4, rounds=20, round_ms=1000, stage2_ms=500, latency_ms=20, ticket_wait_ms=30, seed=3
    )
    sim = Simulator(cfg)
    sim.run()
    assert all(nd.core.status().skew_ms == 0 for nd in sim.nodes)


def _core(index: int = 0) -> tuple[Core, CostModelCrypto]:
    model = CostModelCrypto(4, seed=b"skew")
    params = Params(chain_id="c", n=4, round_ms=1000, stage2_ms=500)
    return Core(params, model.signer(index), model, head=(0, bytes(32))), model


def _ticket(core: Core, model: CostModelCrypto, frm: int, rnd: int) -> bytes:
    st = core.status()
    sig = model.signer(frm).sign(sortition_message("c", st.height, rnd, st.seed))
    return Ticket(st.height, rnd, frm, sig).encode()


def test_f_byzantine_peers_cannot_drag_the_clock() -> None:
    """One peer (f = 1 of 4) claiming to be 1.5 s ahead moves nothing; a second one that is
    (so at least one honest clock is that far ahead) does, by at most two rounds."""
    from accord.consensus import MessageReceived

    core, model = _core()
    core.handle(Tick(10_000))
    core.handle(MessageReceived(1, _ticket(core, model, 1, 11)))  # round 11 starts at 11,000
    assert core.status().skew_ms == 0
    core.handle(
        MessageReceived(1, _ticket(core, model, 1, 30))
    )  # far in the future: still one peer
    assert core.status().skew_ms == 0
    core.handle(MessageReceived(2, _ticket(core, model, 2, 11)))
    assert core.status().skew_ms == 1_000
    core.handle(MessageReceived(3, _ticket(core, model, 3, 40)))  # capped at two rounds per peer
    assert core.status().skew_ms == 2_000
    # Someone else's ticket relayed by a peer says nothing about that peer's clock.
    other, m2 = _core()
    other.handle(Tick(10_000))
    other.handle(MessageReceived(1, _ticket(other, m2, 2, 12)))
    other.handle(MessageReceived(3, _ticket(other, m2, 2, 12)))
    assert other.status().skew_ms == 0
    # The core's clock runs ahead by the skew; the driver's wakeups stay on the driver's clock.
    core.handle(Tick(10_001))
    assert core.status().round == 12
    assert core.next_wakeup_ms() <= 10_500
