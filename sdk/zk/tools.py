"""Where the zero-knowledge tools and artefacts live, and how we run them.

The pinned npm tools (circom2, snarkjs, circomlib; see ``package.json`` and its lock file) are
looked up in an Accord checkout's ``node_modules`` when run from one (``npm ci`` there, as
``scripts/dev setup`` does), else in the cache folder that ``accord zk setup`` installs them
into from the lock file shipped in the package: ``<cache>/npm-<hash of the lock file>``. The
circuit sources and that lock file come with the package (``accord/zk/assets`` in a wheel, the
checkout's root in an editable install), so an installed SDK needs no checkout.

Slow artefacts (r1cs/wasm, powers of tau, zkeys) go to a cache folder outside git,
``$ACCORD_CACHE`` or ``~/.cache/accord``, in sub-folders named after a hash of their inputs, so
that a changed source or parameter never reuses a stale artefact.

Every file in the cache is written to a temporary name first and renamed when complete: a
process killed half-way never leaves a truncated artefact that a later run would trust.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from accord.base.errors import AccordError


class ZkToolError(AccordError):
    """An external ZK tool (node, circom2, snarkjs) failed or is missing."""

    code = "zk_tool_error"


_HERE = Path(__file__).resolve().parent
_PACKAGED = _HERE / "assets"  # in a built wheel (see setup.py)
_CHECKOUT = _HERE.parents[1]  # sdk/zk -> the repository root, in an editable install
NPM_PROJECT = "accord-circuits"  # the name in package.json, to recognise a checkout
NPM_DONE = ".accord-npm-complete"
SETUP_HINT = "run `accord zk setup` (or `npm ci` in an Accord checkout)"


def assets_dir() -> Path:
    """The circuit sources and the npm lock file this package was built with."""
    for d in (_PACKAGED, _CHECKOUT):
        if (d / "package-lock.json").is_file() and (d / "circuits").is_dir():
            return d
    raise ZkToolError(
        f"this accord install has neither {_PACKAGED} nor a checkout at "
        f"{_CHECKOUT}: reinstall the package"
    )


def lock_file() -> Path:
    return assets_dir() / "package-lock.json"


def npm_dir() -> Path:
    """Where ``accord zk setup`` installs the npm tools: keyed by the lock file, so another
    Accord version with other pins gets its own folder and never a stale tool."""
    return cache_dir() / f"npm-{file_hash(lock_file())[:16]}"


def _is_checkout(d: Path) -> bool:
    if not (d / "node_modules" / "snarkjs").is_dir():
        return False
    try:
        return bool(json.loads((d / "package.json").read_text()).get("name") == NPM_PROJECT)
    except (OSError, ValueError, AttributeError):
        return False


def project_root() -> Path:
    """The folder whose ``node_modules`` holds the pinned tools: ``$ACCORD_ROOT``, else the
    first Accord checkout among the ancestors of the working directory and of this package,
    else the cache folder of ``accord zk setup`` once that install completed."""
    env = os.environ.get("ACCORD_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd().resolve(), _HERE):
        for d in (start, *start.parents):
            if _is_checkout(d):
                return d
    try:
        installed: Path | None = npm_dir()
    except ZkToolError:
        installed = None
    if (
        installed is not None
        and (installed / NPM_DONE).is_file()
        and (installed / "node_modules" / "snarkjs").is_dir()
    ):
        return installed
    raise ZkToolError(
        f"the zero-knowledge tools (circom2, snarkjs, circomlib) are not installed: {SETUP_HINT}"
    )


def circuits_dir() -> Path:
    """The folder of Accord's own circuit sources: the ones this package's witness code was
    written for, wherever the npm tools come from."""
    return assets_dir() / "circuits"


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
