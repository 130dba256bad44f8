"""The client API matches its own OpenAPI document: schemathesis (``--checks all``: server
errors, undocumented status codes and content types, schema-valid requests refused,
schema-violating ones accepted, 405 without ``Allow``) against a running validator, for a
bounded number of generated cases per operation. The operations whose bodies are canonical
encodings are configured in ``schemathesis.toml`` (the repository root), which says why."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .support.inproc import ThreadedNetwork

ROOT = Path(__file__).resolve().parent.parent


def _schemathesis() -> list[str] | None:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    return [found] if found else None


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    cmd = _schemathesis()
    if cmd is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    net = ThreadedNetwork(tmp_path, validators=1, name="fuzz-net")
    try:
        url = net.urls[0]
        proc = subprocess.run(
            [
                *cmd,
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "8",
                "--no-color",
                "--seed",
                "17",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        assert "passed" in proc.stdout and "failures" not in proc.stdout.split("SUMMARY")[-1]
        status = net.nodes[0].status()
        assert status["healthy"] and status["running"]  # and the node took it all
    finally:
        net.close()
