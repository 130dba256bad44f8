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
    "accord.chain",
    "accord.contracts",
    "accord.mempool",
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
    assert offenders == ["sdk/encoding.py"]


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
