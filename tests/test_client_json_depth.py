"""The clients' JSON depth check runs before the parser: with a raised recursion limit the C
parser recursed through a 100,000-level answer until the thread's C stack overflowed (the whole
test run died with a segmentation fault). The pre-scan is checked against the real depth."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.errors import DecodeError
from accord.client import _json_nesting, loads_json

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"a', max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


@given(values)
def test_the_pre_scan_measures_the_real_nesting(v: Any) -> None:
    assert _json_nesting(json.dumps(v)) == _depth(v)


def test_a_deep_answer_is_refused_even_with_a_raised_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        for text in ("[" * 200_000 + "]" * 200_000, '{"a":' * 200_000 + "1" + "}" * 200_000):
            with pytest.raises(DecodeError):
                loads_json(text)
    finally:
        sys.setrecursionlimit(old)
    assert loads_json('{"x": "[[[[", "y": [1, [2]]}') == {"x": "[[[[", "y": [1, [2]]}
