"""The layering rules a reader relies on, checked on the source (they hold by construction,
so a change that breaks one fails here rather than in a review)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("sdk", "storage", "contracts") for p in (ROOT / d).rglob("*.py")]

VALIDATOR_MODULES = (
    "accord.node",
    "accord.consensus",
    "accord.ledger.chain",
    "accord.contracts",
    "accord.ledger.mempool",
    "accord.net",
    "accord.zk",
    "accord.mpc",
    "accord.sim",
    "accord.storage",
)


def _loaded_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def test_a_client_imports_no_validator_code() -> None:
    loaded = _loaded_after("import accord.client")
    ours = [m for m in loaded if m == "accord" or m.startswith("accord.")]
    heavy = [m for m in ours if m.startswith(VALIDATOR_MODULES)]
    assert heavy == [], f"accord.client pulled in validator modules: {heavy}"
    assert len(ours) <= 12, ours  # 11 when this test was written (44 before the wire module)
    assert not any(m == "matplotlib" or m.startswith("matplotlib.") for m in loaded)


def test_only_the_encoding_module_imports_msgpack() -> None:
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "msgpack" or n.startswith("msgpack.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == ["sdk/base/encoding.py"]


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """``module._name`` across modules is how the API came to depend on merkle._levels."""
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            for a in n.names
            if n.module is None or n.level > 0 or n.module.startswith("accord")
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}"
                )
    assert offenders == []


# The layers of docs/architecture.md, lowest first. A module may import from its own layer and
# the layers below it, never from above, also not inside a function (a lazy import hides an
# upward dependency instead of removing it). The longest matching prefix decides a module's
# layer, so a tool module can sit above the package it belongs to.
LAYERS: dict[str, int] = {
    "accord.base": 0,
    "accord.zk": 1,  # the verifiers and circuit maths contracts call
    "accord.mpc": 1,
    "accord.storage": 2,
    "accord.contracts": 2,
    "accord.ledger": 2,
    "accord.consensus": 3,
    "accord.net": 3,
    # The ceremony's tools check a certified beacon block, so they sit above consensus.
    "accord.zk.transcript": 4,
    "accord.zk.ceremony": 4,
    "accord.zk.artifacts": 4,
    "accord.sim": 4,
    "accord.testing": 4,  # the contract sandbox: chains certified with the consensus checker
    "accord.node": 5,
    "accord.client": 6,
    "accord.light": 6,
    "accord.devnet": 6,
    "accord.devnet_governance": 6,  # the devnet's governance demo
    "accord.cli": 7,
    "accord.benches": 7,
}


def _layer(module: str) -> tuple[str, int] | None:
    matches = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    if not matches:
        return None
    best = max(matches, key=len)
    return best, LAYERS[best]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    top = {
        "sdk": ["accord"],
        "storage": ["accord", "storage"],
        "contracts": ["accord", "contracts"],
    }
    names = top[parts[0]] + parts[1:]
    return ".".join(names[:-1] if names[-1] == "__init__" else names)


def test_every_module_belongs_to_a_layer() -> None:
    homeless = [
        _module_name(p)
        for p in SOURCES
        if _module_name(p) != "accord" and _layer(_module_name(p)) is None
    ]
    assert homeless == []


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in SOURCES:
        me = _layer(_module_name(path))
        if me is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            else:
                targets = []
            for target in targets:
                it = _layer(target)
                if it is not None and it[1] > me[1]:
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert upward == []


def test_no_relative_imports() -> None:
    """Absolute imports say where a name comes from; the layer check above relies on them."""
    relative = [
        f"{p.relative_to(ROOT)}:{n.lineno}"
        for p in SOURCES
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.ImportFrom) and n.level > 0
    ]
    assert relative == []
