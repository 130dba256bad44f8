"""Running ``accord`` as a user does: a subprocess, its last JSON line read back."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def accord(*args: str, timeout: float = 180) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    return json.loads(out.stdout.decode().strip().splitlines()[-1])
