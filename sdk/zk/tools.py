"""Where the zero-knowledge tools and artefacts live, and how we run them.

The pinned npm tools (circom2, snarkjs, circomlib; see ``package.json``) sit in the project's
``node_modules``. Slow artefacts (r1cs/wasm, powers of tau, zkeys) go to a cache folder outside
git, ``$ACCORD_CACHE`` or ``~/.cache/accord``, in sub-folders named after a hash of their
inputs, so that a changed source or parameter never reuses a stale artefact.

Every file in the cache is written to a temporary name first and renamed when complete: a
process killed half-way never leaves a truncated artefact that a later run would trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import AccordError


class ZkToolError(AccordError):
    """An external ZK tool (node, circom2, snarkjs) failed or is missing."""

    code = "zk_tool_error"


_HERE = Path(__file__).resolve().parent


def project_root() -> Path:
    """The folder holding ``node_modules/snarkjs``: ``$ACCORD_ROOT``, else the first ancestor of
    the working directory or of this package that has it."""
    env = os.environ.get("ACCORD_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd().resolve(), _HERE):
        for d in (start, *start.parents):
            if (d / "node_modules" / "snarkjs").is_dir():
                return d
    raise ZkToolError(
        "node_modules/snarkjs not found: run `npm ci` in the project root or set ACCORD_ROOT"
    )


def circuits_dir() -> Path:
    """The folder of Accord's own circuit sources."""
    return project_root() / "circuits"


def cache_dir() -> Path:
    d = Path(os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord")
    d.mkdir(parents=True, exist_ok=True)
    return d


def node_bin() -> str:
    return os.environ.get("ACCORD_NODE", "node")


def snarkjs_cli() -> list[str]:
    return [node_bin(), str(project_root() / "node_modules" / "snarkjs" / "build" / "cli.cjs")]


def circom_cli() -> list[str]:
    return [node_bin(), str(project_root() / "node_modules" / "circom2" / "cli.js")]


def package_version(name: str) -> str:
    import json

    meta = project_root() / "node_modules" / name / "package.json"
    try:
        return str(json.loads(meta.read_text())["version"])
    except (OSError, ValueError, KeyError):
        raise ZkToolError(f"npm package {name} is not installed") from None


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``path``: two processes that build the same
    artefact (parallel test runs, a bench beside a ceremony) take turns instead of racing on
    the same temporary files; the second then finds the step done and skips it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def tmp_path(final: Path) -> Path:
    """The temporary sibling a step writes before renaming it to ``final``."""
    return final.with_name(final.name + ".part")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(
    cmd: list[str],
    *,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    what: str = "",
    stdin: str | None = None,
) -> str:
    """Run a tool, streaming its output lines (ANSI colours stripped) to ``on_line``.
    ``stdin`` is written to its standard input (secrets go there: a command line is visible
    to every user of the machine).

    Returns the whole output; raises :class:`ZkToolError` with its tail on failure.
    """
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=str(cwd or project_root()),
            stdin=subprocess.PIPE if stdin is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
    except OSError as e:
        raise ZkToolError(f"cannot start {cmd[0]}: {e}") from None
    if stdin is not None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except OSError:
            pass  # the tool exited early: its exit status says why
    lines: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = _ANSI.sub("", raw.rstrip("\n"))
        lines.append(line)
        if on_line is not None:
            on_line(line)
    rc = proc.wait()
    out = "\n".join(lines)
    if rc != 0:
        tail = "\n".join(lines[-15:])
        raise ZkToolError(f"{what or ' '.join(cmd[:3])} failed (exit {rc}):\n{tail}")
    return out


def stderr_console() -> object:
    """A rich console on stderr, so that JSON on stdout stays clean."""
    from rich.console import Console

    return Console(stderr=True, force_terminal=None if sys.stderr.isatty() else False)
