"""``accord zk build``: compile circom circuits into a cache keyed by what went in.

A circuit is a :class:`CircuitSpec`: a ``.circom`` source and, for a parametric template, the
template name, its arguments and its public inputs (the pipeline then writes a small main file
that instantiates it). A source with its own ``component main`` is compiled as it is: that is
how an SDK user brings a circuit of their own.

The cache key hashes the source, every local ``.circom`` file next to it (includes), the main
file, the compiler and circomlib versions and the optimisation flag, so a changed input never
reuses a stale r1cs/wasm. Outputs: ``<cache>/build/<name>-<key>/{main.r1cs, main_js/main.wasm,
main.sym, info.json}``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.base.errors import ValidationError
from accord.zk import tools
from accord.zk.tools import ZkToolError

# Production parameters of Accord's circuits.
TRANSFER_DEPTH = 32
ANTI_STACKING_LENDERS = 6  # 6 EdDSA checks fit a 2^15 ceremony

TRANSFER_PUBLIC = (
    "root",
    "nullifier",
    "commitment",
    "deposit",
    "withdrawal",
    "bind",
    "regulator",
    "ephemeral",
    "ciphertext",
)
ANTI_STACKING_PUBLIC = ("limit", "borrower", "epoch", "lenderKey", "bind")


@dataclass(frozen=True)
class CircuitSpec:
    """What to compile. ``name`` is the circuit's name on chain (genesis, ``verify_proof``)."""

    name: str
    source: Path
    template: str | None = None
    params: tuple[int, ...] = ()
    public: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def main_source(self) -> str | None:
        if self.template is None:
            return None
        args = ", ".join(str(p) for p in self.params)
        pub = ", ".join(self.public)
        return (
            "pragma circom 2.1.0;\n"
            f'include "{self.source.name}";\n'
            f"component main {{public [{pub}]}} = {self.template}({args});\n"
        )


def transfer_spec(depth: int = TRANSFER_DEPTH) -> CircuitSpec:
    if not 1 <= depth <= 32:
        raise ValidationError("tree depth must be in 1..32")
    return CircuitSpec(
        "shielded_transfer",
        tools.circuits_dir() / "shielded_transfer.circom",
        "ShieldedTransfer",
        (depth,),
        TRANSFER_PUBLIC,
        {"depth": depth},
    )


def anti_stacking_spec(lenders: int = ANTI_STACKING_LENDERS) -> CircuitSpec:
    if not 1 <= lenders <= 64:
        raise ValidationError("lenders must be in 1..64")
    return CircuitSpec(
        "anti_stacking",
        tools.circuits_dir() / "anti_stacking.circom",
        "AntiStacking",
        (lenders,),
        ANTI_STACKING_PUBLIC,
        {"lenders": lenders},
    )


def file_spec(path: Path, name: str | None = None) -> CircuitSpec:
    """A user circuit: a ``.circom`` file with its own ``component main``."""
    path = Path(path).resolve()
    text = path.read_text()
    if not re.search(r"component\s+main\b", text):
        raise ValidationError(f"{path} has no `component main`")
    return CircuitSpec(name or path.stem, path)


@dataclass(frozen=True)
class BuiltCircuit:
    spec: CircuitSpec
    folder: Path

    @property
    def r1cs(self) -> Path:
        return self.folder / "main.r1cs"

    @property
    def wasm(self) -> Path:
        return self.folder / "main_js" / "main.wasm"

    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.folder / "info.json").read_text())

    @property
    def constraints(self) -> int:
        return int(self.info["constraints"])


def _cache_key(spec: CircuitSpec, optimize: str) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "name": spec.name,
                "main": spec.main_source(),
                "circom2": tools.package_version("circom2"),
                "circomlib": tools.package_version("circomlib"),
                "optimize": optimize,
            },
            sort_keys=True,
        ).encode()
    )
    for f in sorted(spec.source.parent.glob("*.circom")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(spec: CircuitSpec, *, optimize: str = "--O2", force: bool = False) -> BuiltCircuit:
    """Compile ``spec`` (or return the cached build). ``--O2`` halves the constraints of our
    circuits compared with circom's default ``--O1``."""
    if not spec.source.is_file():
        raise ValidationError(f"circuit source {spec.source} not found")
    key = _cache_key(spec, optimize)
    folder = tools.cache_dir() / "build" / f"{spec.name}-{key}"
    built = BuiltCircuit(spec, folder)
    if (folder / "info.json").exists() and not force:
        return built
    with tools.folder_lock(folder.with_name(folder.name + ".lock")):
        if (folder / "info.json").exists() and not force:
            return built  # another process built it while we waited
        _compile(spec, folder, key, optimize)
    return built


def _compile(spec: CircuitSpec, folder: Path, key: str, optimize: str) -> None:
    work = folder.with_name(folder.name + ".part")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # circom2 runs in WebAssembly and only sees below its working directory in practice; we
    # copy the circuit's folder of sources next to the generated main file and compile there.
    for f in spec.source.parent.glob("*.circom"):
        shutil.copy2(f, work / f.name)
    main_src = spec.main_source()
    if main_src is None:
        main = work / spec.source.name
    else:
        main = work / "main.circom"
        main.write_text(main_src)
    # ... and circomlib too: WASI path resolution does not climb out with "..".
    shutil.copytree(
        tools.project_root() / "node_modules" / "circomlib" / "circuits", work / "circomlib"
    )
    out = tools.run(
        [
            *tools.circom_cli(),
            main.name,
            "--r1cs",
            "--wasm",
            "--sym",
            optimize,
            "-l",
            "circomlib",
            "-l",
            ".",
            "-o",
            ".",
        ],
        cwd=work,
        what=f"circom2 {spec.name}",
    )
    stem = main.stem
    if stem != "main":
        (work / f"{stem}.r1cs").rename(work / "main.r1cs")
        (work / f"{stem}.sym").rename(work / "main.sym")
        (work / f"{stem}_js").rename(work / "main_js")
        (work / "main_js" / f"{stem}.wasm").rename(work / "main_js" / "main.wasm")
    shutil.rmtree(work / "circomlib", ignore_errors=True)
    if not (work / "main.r1cs").exists():
        raise ZkToolError(f"circom2 {spec.name}: no r1cs written:\n{out[-2000:]}")
    constraints = _r1cs_constraints(work / "main.r1cs")
    n_public = _r1cs_public(work / "main.r1cs")
    info = {
        "name": spec.name,
        "template": spec.template,
        "params": list(spec.params),
        "extra": spec.extra,
        "constraints": constraints,
        "public_inputs": n_public,
        "key": key,
        "optimize": optimize,
        "circom2": tools.package_version("circom2"),
    }
    (work / "info.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    work.rename(folder)


def _r1cs_header(path: Path) -> tuple[int, int, int]:
    """(public outputs, public inputs, constraints) from the r1cs header section."""
    data = path.read_bytes()
    if data[:4] != b"r1cs":
        raise ZkToolError(f"{path} is not an r1cs file")
    pos = 12
    n_sections = int.from_bytes(data[8:12], "little")
    for _ in range(n_sections):
        stype = int.from_bytes(data[pos : pos + 4], "little")
        size = int.from_bytes(data[pos + 4 : pos + 12], "little")
        body = data[pos + 12 : pos + 12 + size]
        if stype == 1:
            fs = int.from_bytes(body[:4], "little")
            o = 4 + fs
            vals = [int.from_bytes(body[o + 4 * i : o + 4 * i + 4], "little") for i in range(4)]
            n_out, n_pub_in = vals[1], vals[2]
            n_constraints = int.from_bytes(body[o + 24 : o + 28], "little")
            return n_out, n_pub_in, n_constraints
        pos += 12 + size
    raise ZkToolError(f"{path}: no header section")


def _r1cs_constraints(path: Path) -> int:
    return _r1cs_header(path)[2]


def _r1cs_public(path: Path) -> int:
    n_out, n_pub_in, _ = _r1cs_header(path)
    return n_out + n_pub_in


def power_for(constraints: int, public_inputs: int) -> int:
    """The smallest ceremony power whose domain fits: Groth16's domain counts constraints +
    public inputs + 1."""
    need = constraints + public_inputs + 1
    p = 1
    while (1 << p) < need:
        p += 1
    return max(p, 8)
