"""Anti-stacking loans on a real local network: 4 Gosig validators and 3 MPC servers on
loopback, the servers following the chain through the validators' HTTP API."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mpc_anti_stacking.py"


def _example():
    spec = importlib.util.spec_from_file_location("mpc_anti_stacking_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_anti_stacking_on_a_validator_network(tmp_path):
    ex = _example()
    # total 75 with max exposure 100: 75 + 24 < 100 (1), 75 + 25 is not (0); B and L read the same bit
    results = ex.run(tmp_path, balances=[40, 25, 10], amounts=[24, 25], max_exposure=100)
    assert results == [("answered", 1, 1), ("answered", 0, 0)]
