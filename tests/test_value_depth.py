"""One nesting limit for admission and the API, and no input that reaches a RecursionError.

Before: a transaction whose arguments nested 65 levels was admitted and committed, and its
block was then unreadable as JSON on every node (``400 value nests too deeply``), so a light
client called every honest node a liar; 980+ levels made the API answer 500 (RecursionError).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base import encoding
from accord.base import wire as schemas
from accord.base.errors import DecodeError
from accord.base.types import Tx

from .support.api import ALICE, BOB, ServedNode
from .support.api import http as http_call


def _nested(levels: int) -> dict[str, Any]:
    """Transaction arguments whose lists and maps nest ``levels`` deep (the map is level 1)."""
    v: Any = 1
    for _ in range(levels - 1):
        v = [v]
    return {"to": BOB.address, "amount": 1, "memo": v} if levels >= 2 else {"amount": 1}


def _tx(levels: int, nonce: int = 0) -> Tx:
    return Tx.create(
        ALICE,
        chain_id="accord-api-test",
        contract="token",
        method="transfer",
        args=_nested(levels),
        nonce=nonce,
    )


@given(levels=st.integers(1, 80))
def test_admitted_exactly_when_the_api_can_show_it(levels: int) -> None:
    tx = _tx(levels)
    try:
        decoded = Tx.decode(tx.encode())
    except DecodeError as e:
        assert "nests too deeply" in e.message
        admitted = False
    else:
        admitted = True
        assert decoded.args == tx.args
    try:
        view = schemas.value_to_json(tx.args)
    except DecodeError:
        shown = False
    else:
        shown = True
        assert schemas.value_from_json(json.loads(json.dumps(view))) == tx.args
    assert admitted == shown == (levels <= encoding.MAX_VALUE_DEPTH)


@pytest.mark.parametrize("levels", [101, 1_000, 100_000])
def test_deep_bytes_and_values_are_decode_errors_not_recursion_errors(levels: int) -> None:
    with pytest.raises(DecodeError):
        encoding.decode(b"\x91" * levels + b"\xc0")
    with pytest.raises(DecodeError):
        encoding.decode(b"\x81\xa1k" * levels + b"\xc0")
    v: Any = None
    for _ in range(levels):
        v = [v]
    with pytest.raises(DecodeError):
        encoding.encode(v)
    with pytest.raises(DecodeError):
        encoding.canonical(v)
    with pytest.raises(DecodeError):
        schemas.value_to_json(v)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    sn = ServedNode(Path(tmp_path_factory.mktemp("api-depth")))
    try:
        yield sn
    finally:
        sn.close()


def test_the_api_refuses_a_65_level_transaction_and_serves_a_64_level_one(
    served: ServedNode,
) -> None:
    deep = _tx(encoding.MAX_VALUE_DEPTH + 1)
    status, headers, data = http_call(
        served.url, "POST", "/v1/txs", deep.encode(), "application/octet-stream"
    )
    assert status == 400 and json.loads(data)["error"]["code"] in (
        "decode_error",
        "non_canonical",
    ), data[:300]
    ok = _tx(encoding.MAX_VALUE_DEPTH)
    status, _, data = http_call(
        served.url, "POST", "/v1/txs", ok.encode(), "application/octet-stream"
    )
    assert status == 202, data[:300]
    block = served.commit()
    status, _, data = http_call(served.url, "GET", f"/v1/blocks/{block.height}")
    assert status == 200, data[:300]  # before: 400 value nests too deeply, on every node
    assert ok.hash.hex() in data.decode()


@pytest.mark.parametrize("levels", [1_000, 60_000])  # 60,000: near the body size limit
def test_a_deeply_nested_json_body_is_a_400_not_a_500(served: ServedNode, levels: int) -> None:
    body = b'{"args": ' + b"[" * levels + b"]" * levels + b"}"
    status, headers, data = http_call(
        served.url, "POST", "/v1/query/token/balance_of", body, "application/json"
    )
    assert status == 400 and headers.get("content-type", "").startswith("application/json"), (
        status,
        data[:200],
    )
    assert json.loads(data)["error"]["code"] == "decode_error"


def test_the_json_depth_limit_does_not_depend_on_the_recursion_limit(served: ServedNode) -> None:
    """The stdlib parser stops at the interpreter's recursion limit, which a host may raise (a
    full test run did): the API bounds the depth itself."""
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        test_a_deeply_nested_json_body_is_a_400_not_a_500(served, 1000)
    finally:
        sys.setrecursionlimit(old)
