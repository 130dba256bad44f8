"""What docs/configuration.md must say about each configuration model: its fields, their
types and defaults, rendered from the pydantic models themselves."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from accord.base.genesis import (
    ConsensusParams,
    ContractEntry,
    Genesis,
    GovernanceParams,
    TokenGenesis,
    ValidatorInfo,
)
from accord.node.config import InstalledContract, NodeConfig, TlsFiles

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

MODELS: list[type[BaseModel]] = [
    NodeConfig,
    TlsFiles,
    InstalledContract,
    Genesis,
    ValidatorInfo,
    ConsensusParams,
    ContractEntry,
    TokenGenesis,
    GovernanceParams,
]
"""Every model node.json and genesis.json are read with (a new nested model goes here, and
the test below then asks for its section)."""


def type_name(ann: Any) -> str:
    if ann is type(None):
        return "null"
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return " \\| ".join(type_name(a) for a in typing.get_args(ann))
    origin = typing.get_origin(ann)
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(ann))
        return f"{origin.__name__}[{args}]"
    if ann is Any:
        return "any"
    return str(getattr(ann, "__name__", ann))


def default_text(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "all defaults"
        return repr(value).replace("'", '"')
    value = field.default
    assert value is not PydanticUndefined
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, int):
        return f"{value:_}".replace("_", ",") if abs(value) >= 10_000 else str(value)
    return repr(value)


def expected_rows(model: type[BaseModel]) -> dict[str, tuple[str, str]]:
    """field -> (type, default), as the reference's table must show them."""
    return {
        name: (type_name(f.annotation), default_text(model, name))
        for name, f in model.model_fields.items()
    }


CELL = re.compile(r"(?<!\\)\|")  # a table cell boundary: a pipe not escaped as \|


def documented_rows(model: type[BaseModel], text: str) -> dict[str, tuple[str, str, str]]:
    """field -> (type, default, description) from the table after the model's marker."""
    marker = f"<!-- model: {model.__name__} -->"
    if marker not in text:
        return {}
    body = text.split(marker, 1)[1]
    rows: dict[str, tuple[str, str, str]] = {}
    started = False
    for line in body.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in CELL.split(line)[1:-1]]
            if len(cells) == 4 and re.fullmatch(r"`[a-z0-9_]+`", cells[0]):
                rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2].strip("`"), cells[3])
        elif started:
            break
    return rows


def skeleton() -> str:
    """Table rows for every model, descriptions left to write (how the reference began)."""
    out = []
    for model in MODELS:
        out.append(f"<!-- model: {model.__name__} -->\n")
        out.append("| field | type | default | what it does |\n|---|---|---|---|\n")
        for name, (t, d) in expected_rows(model).items():
            desc = model.model_fields[name].description or ""
            out.append(f"| `{name}` | `{t}` | `{d}` | {desc} |\n")
        out.append("\n")
    return "".join(out)


if __name__ == "__main__":
    print(skeleton())
