"""Runs examples/contract_author.py, the worked example of docs/contracts.md: every step it
prints must hold (it exits non-zero at the first that does not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "contract_author.py"


def test_the_contract_author_example_runs_every_step() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "contract author example: all steps passed"
    assert not [line for line in lines if line.startswith("FAIL")]
    assert any("import random" in line for line in lines)  # the refusal is shown
    assert any("upgrade escrow to v2" in line for line in lines)
