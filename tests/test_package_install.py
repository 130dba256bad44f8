"""The SDK as a host application gets it: a wheel installed into a fresh venv, no checkout.

The wheel is built from this tree and installed without its dependencies into a new venv in a
temporary folder; the dependencies come from this test environment's site-packages, appended
after the new venv's own (so ``accord`` itself is the installed wheel, which the test asserts,
and nothing is downloaded but the build backend). Every command runs from a working folder
outside the checkout, with ``ACCORD_ROOT`` unset: the circuits, the npm lock file and the
snarkjs worker must come from the package, the npm tools from ``accord zk setup``'s folder.

``accord zk setup`` installs into the shared cache (``npm-<hash of the lock file>``): the first
run on a machine runs ``npm ci`` for real, later runs find it complete. The small circuit's
build and ceremony are cached by their inputs like the rest of the suite's artefacts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

# About 20 s with a warm cache (load 3), 3 minutes under load 12-20; the first run on a machine
# also pays for `npm ci` and the small ceremony.
pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[1]
CIRCUIT = (
    "pragma circom 2.1.0;\ntemplate M() { signal input a; signal input b;"
    " signal output c; c <== a * b; }\ncomponent main {public [a]} = M();\n"
)


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_installed_wheel_runs_devnet_proves_and_verifies(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "ACCORD_ROOT", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    home = tmp_path / "host-app"
    home.mkdir()
    # Built from a copy of the tree's files (tracked, or new and not ignored): what a release
    # builds from, without a checkout's build/ leftovers or node_modules.
    src = tmp_path / "src"
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, env=env
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(wheels)],
        cwd=home,
        env=env,
    )
    (wheel,) = wheels.glob("accord-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=home, env=env)
    py = venv / "bin" / "python"
    _run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=home,
        env=env,
    )
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=home,
            env=env,
        ).stdout.strip()
    )
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = _run(
        [
            str(py),
            "-c",
            "import accord, accord.zk.tools as t; print(accord.__file__); print(t.assets_dir())",
        ],
        cwd=home,
        env=env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the wheel, not the checkout
    # The explorer every node serves at /explorer/ ships as package data (no build step).
    static = Path(
        _run(
            [str(py), "-c", "import accord.node.explorer as e; print(e.STATIC)"], cwd=home, env=env
        ).stdout.strip()
    )
    assert static.is_relative_to(venv), static
    for page in ("index.html", "app.js", "style.css"):
        assert (static / page).stat().st_size > 0, page
    accord = [str(venv / "bin" / "accord")]

    # No tools anywhere yet (an empty cache): one clear error naming the setup command.
    empty = {**env, "ACCORD_CACHE": str(tmp_path / "empty-cache")}
    (home / "mul.circom").write_text(CIRCUIT)
    missing = _run([*accord, "zk", "build", "--file", "mul.circom"], cwd=home, env=empty, ok=False)
    assert missing.returncode != 0 and "accord zk setup" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr

    setup = _last_json(_run([*accord, "zk", "setup"], cwd=home, env=env))
    assert Path(setup["installed"]).name.startswith("npm-") and setup["used"] == setup["installed"]
    assert setup["snarkjs"] == "0.7.6" and setup["circom2"] == "0.2.23"

    devnet = _last_json(_run([*accord, "devnet", "--blocks", "3", "--json"], cwd=home, env=env))
    assert devnet, devnet

    key_args = ["--file", "mul.circom", "--power", "8", "--members", "a,b", "--seed", "wheel-test"]
    cer = _last_json(_run([*accord, "zk", "ceremony", *key_args], cwd=home, env=env))
    vk_args = ["--vk", str(Path(cer["zkey"]).with_name("vk.json"))]
    (home / "input.json").write_text(json.dumps({"a": 3, "b": 11}))
    _run(
        [*accord, "zk", "prove", *key_args, "--input", "input.json", "--out", "proof.json"],
        cwd=home,
        env=env,
    )
    proof = json.loads((home / "proof.json").read_text())
    assert proof["public"] == ["33", "3"] and len(bytes.fromhex(proof["compressed"])) == 128
    for fast in ([], ["--fast"]):  # pure Python, and the snarkjs worker shipped in the wheel
        out = _last_json(
            _run(
                [
                    *accord,
                    "zk",
                    "verify",
                    *vk_args,
                    "--circuit",
                    "mul",
                    "--proof",
                    "proof.json",
                    *fast,
                ],
                cwd=home,
                env=env,
            )
        )
        assert out == {"circuit": "mul", "valid": True}, out
    # A proof of another statement is refused from the installed package too.
    proof["public"] = ["34", "3"]
    (home / "forged.json").write_text(json.dumps(proof))
    bad = _run(
        [*accord, "zk", "verify", *vk_args, "--circuit", "mul", "--proof", "forged.json", "--fast"],
        cwd=home,
        env=env,
        ok=False,
    )
    assert bad.returncode == 1 and _last_json(bad)["valid"] is False
