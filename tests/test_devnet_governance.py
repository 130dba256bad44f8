"""``accord devnet --demo-governance``: while the load runs, the members deploy a contract,
add a fifth validator set up in a folder of its own, upgrade the contract and remove a genesis
validator, all by vote; every validator (the newcomer and the removed one too) ends on the
same head, the newcomer signed certificates, the removed one signs none after its removal."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support.cli import accord

pytestmark = pytest.mark.timeout(240)


def test_the_governance_demo_changes_the_consortium_while_the_load_runs(tmp_path: Path) -> None:
    doc = accord(
        "devnet",
        "--dir",
        str(tmp_path / "net"),
        "--demo-governance",
        "--json",
        "--rate",
        "50",
        "--round-ms",
        "600",
        "--stage2-ms",
        "300",
    )
    steps = {s["step"]: s for s in doc["governance"]}  # type: ignore[union-attr]
    assert steps["deployed board by vote"]["version"] == 1
    assert steps["upgraded board by vote"]["version"] == 2
    assert steps["added validator by vote"]["signed"] >= 1
    removed = steps["removed validator by vote"]
    assert removed["name"] not in str(removed["set"]).split(",")
    assert "validator-new" in str(removed["set"]).split(",")
    heads = doc["head_hashes"]
    assert isinstance(heads, dict) and len(heads) == 5 and len(set(heads.values())) == 1
    assert doc["heads_agree"] is True
    assert isinstance(doc["txs_committed"], int) and doc["txs_committed"] > 0
