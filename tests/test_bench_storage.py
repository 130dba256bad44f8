"""``accord bench storage`` on a small state: its figures are present and consistent with
each other and with the speed probe (nothing about speed is asserted)."""

from __future__ import annotations

import pytest

from .support.cli import accord

pytestmark = pytest.mark.timeout(240)


def test_bench_storage_prints_probe_relative_figures() -> None:
    from accord.benches.storage import REFERENCE_ED25519_PER_S

    doc = accord(
        "bench",
        "storage",
        "--accounts",
        "3000",
        "--senders",
        "50",
        "--block-txs",
        "200",
        "--blocks",
        "2",
        "--proofs",
        "50",
        "--json",
    )
    assert doc["bench"] == "storage" and doc["accounts"] == 3000
    tps = doc["exec_commit_tx_per_s"]
    assert isinstance(tps, int) and tps > 0
    m = doc["machine"]
    per_core = (
        m["speed_before"]["ed25519_verify_per_s"] + m["speed_after"]["ed25519_verify_per_s"]  # type: ignore[index]
    ) / 2
    assert abs(doc["exec_commit_per_ed25519"] - tps / per_core) <= 1e-4  # type: ignore[operator]
    at_ref = tps / per_core * REFERENCE_ED25519_PER_S
    assert abs(doc["exec_commit_tx_per_s_at_reference"] - at_ref) <= 1 + at_ref * 1e-4  # type: ignore[operator]
