"""docs/configuration.md documents every field of node.json and genesis.json as the models
read them: a field added, removed, retyped or given another default fails here."""

from __future__ import annotations

import pydantic
import pytest

from accord.base.genesis import Genesis
from accord.node.config import NodeConfig

from .support.config_ref import DOC, MODELS, documented_rows, expected_rows


def _nested(model: type[pydantic.BaseModel]) -> set[type[pydantic.BaseModel]]:
    """Models reachable from ``model``'s fields (so a new nested section cannot hide)."""
    import typing

    found: set[type[pydantic.BaseModel]] = set()
    todo = [f.annotation for f in model.model_fields.values()]
    while todo:
        ann = todo.pop()
        if isinstance(ann, type) and issubclass(ann, pydantic.BaseModel):
            if ann not in found:
                found.add(ann)
                todo += [f.annotation for f in ann.model_fields.values()]
        else:
            todo += list(typing.get_args(ann))
    return found


def test_every_model_behind_the_two_files_has_a_section() -> None:
    reachable = {NodeConfig, Genesis} | _nested(NodeConfig) | _nested(Genesis)
    assert reachable == set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_reference_matches_the_model(model: type[pydantic.BaseModel]) -> None:
    text = DOC.read_text()
    documented = documented_rows(model, text)
    assert documented, f"docs/configuration.md has no table for {model.__name__}"
    expected = expected_rows(model)
    assert sorted(documented) == sorted(expected), "fields documented vs the model's"
    for name, (type_, default) in expected.items():
        got_type, got_default, what = documented[name]
        assert (got_type, got_default) == (type_, default), f"{model.__name__}.{name}"
        assert len(what) > 5, f"{model.__name__}.{name} has no description"


def test_the_check_notices_an_undocumented_field() -> None:
    """The check itself fails for a model that gained a field (it is not vacuous)."""
    grown = pydantic.create_model("NodeConfig", __base__=NodeConfig, new_knob=(int, 3))
    text = DOC.read_text()
    assert sorted(documented_rows(grown, text)) != sorted(expected_rows(grown))
