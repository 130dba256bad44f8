"""accord.ledger.validatorsets: the validator set of a height, read as the governance contract reads it,
and never for a height nothing trusted fixes yet."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base.errors import DecodeError
from accord.ledger.validatorsets import ValidatorSets, entry_keys

from .support.api import api_genesis


def _key(i: int) -> bytes:
    return bytes([i]) * 48


@given(
    st.lists(st.tuples(st.integers(3, 60), st.integers(1, 9)), max_size=6),
    st.integers(0, 70),
)
def test_the_set_of_a_height_is_the_contracts_own_reading(
    changes: list[tuple[int, int]], height: int
) -> None:
    """Entries need not be in activation order (a later vote may take effect sooner): the
    contract scans from the newest entry for the first one in force, and so must we."""
    g = api_genesis()
    sets = ValidatorSets(g)
    entries = [(a, [_key(k)]) for a, k in changes]
    sets.learn(70, len(entries), entries)

    def contract(h: int) -> list[bytes]:
        for a, keys in reversed(entries):
            if a <= h:
                return keys
        return g.validator_keys()

    assert sets.keys_at(height) == contract(height)


def test_nothing_is_known_past_two_heights_above_what_was_proved() -> None:
    sets = ValidatorSets(api_genesis())
    assert sets.keys_at(2) is not None and sets.keys_at(3) is None  # genesis fixes 1 and 2
    sets.learn(10, 0, [])
    assert sets.keys_at(12) is not None and sets.keys_at(13) is None
    with pytest.raises(DecodeError):
        sets.learn(12, 2, [(14, [_key(1)])])  # the count and the entries disagree
    again = ValidatorSets(api_genesis())
    again.load_json(sets.to_json())
    assert again.known_through == 12


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [3, [], b"p"],
        [3, [{"bls_public_key": b"k"}], b"p"],
        [-1, [{}], b"p"],
        "x",
        [3, [{"bls_public_key": _key(1)}, {"bls_public_key": _key(1)}], b"p"],
    ],
)
def test_a_malformed_entry_is_refused(bad: object) -> None:
    with pytest.raises(DecodeError):
        entry_keys(bad)
