"""``accord zk setup``: install the pinned npm tools for an SDK installed without a checkout.

The package ships ``package.json`` and ``package-lock.json`` (see :func:`tools.assets_dir`);
``npm ci`` installs exactly what the lock file names (versions and integrity hashes), without
the devDependencies, into ``<cache>/npm-<hash of the lock file>``. The install runs in a
``.part`` sibling that is renamed only after ``npm ci`` succeeded and the three tools are there,
with a completion marker last, so a killed install is never taken for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from accord.zk import tools
from accord.zk.tools import ZkToolError

ProgressFn = Callable[[int, int], None]
"""Called with (packages in place, packages the lock file names)."""

NEEDED = ("snarkjs/build/cli.cjs", "circom2/cli.js", "circomlib/circuits/poseidon.circom")


def _packages(lock: dict[str, object]) -> list[str]:
    """The install paths ``npm ci --omit=dev`` fills (lockfile v2/v3 ``packages`` keys)."""
    pkgs = lock.get("packages")
    if not isinstance(pkgs, dict):
        raise ZkToolError("package-lock.json has no `packages` (lockfile v2 or later needed)")
    return [
        k
        for k, v in pkgs.items()
        if k.startswith("node_modules/") and isinstance(v, dict) and not v.get("dev")
    ]


def installed(folder: Path | None = None) -> bool:
    d = folder or tools.npm_dir()
    return (d / tools.NPM_DONE).is_file() and all(
        (d / "node_modules" / n).is_file() for n in NEEDED
    )


def install(progress: ProgressFn | None = None, *, force: bool = False) -> Path:
    """Install the tools (or find them installed); returns the folder holding node_modules."""
    target = tools.npm_dir()
    if installed(target) and not force:
        return target
    npm = shutil.which(os.environ.get("ACCORD_NPM", "npm"))
    if npm is None:
        raise ZkToolError(
            "npm not found: install Node.js 18 or later (with npm), then run "
            "`accord zk setup` again"
        )
    lock_path = tools.lock_file()
    try:
        lock = json.loads(lock_path.read_text())
    except (OSError, ValueError) as e:
        raise ZkToolError(f"cannot read {lock_path}: {e}") from None
    wanted = _packages(lock)
    with tools.folder_lock(target.with_name(target.name + ".lock")):
        if installed(target) and not force:
            return target  # another process installed it while we waited
        work = target.with_name(target.name + ".part")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(lock_path.with_name(name), work / name)
        log = work / "npm-ci.log"
        with log.open("w") as out:
            try:
                proc = subprocess.Popen(
                    [npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=str(work),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            except OSError as e:
                raise ZkToolError(f"cannot start npm: {e}") from None
            while proc.poll() is None:
                if progress is not None:
                    progress(
                        sum((work / p / "package.json").is_file() for p in wanted), len(wanted)
                    )
                time.sleep(0.25)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise ZkToolError(f"npm ci failed (exit {proc.returncode}) in {work}:\n{tail}")
        missing = [n for n in NEEDED if not (work / "node_modules" / n).is_file()]
        if missing:
            raise ZkToolError(f"npm ci left out {', '.join(missing)} (see {log})")
        (work / tools.NPM_DONE).write_text(tools.file_hash(lock_path) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    if progress is not None:
        progress(len(wanted), len(wanted))
    return target
