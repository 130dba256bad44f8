"""Transcript tests of the Gosig core: each ``tests/data/core/*.json`` scenario's events are
replayed against a real core (demo validators' BLS keys) and every step's actions must match
the file, in order, as must the final status and counters. The files are the specification;
see ``tests/support/core_transcripts.py`` for their format and how to regenerate them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.core_transcripts import DATA, replay

FILES = sorted(DATA.glob("*.json"))
REQUIRED = {
    "leader_happy_round.json",
    "follower_prepares_and_commits.json",
    "bad_signature_dropped.json",
    "better_ticket_cancels_build.json",
}


def test_the_required_scenarios_exist() -> None:
    assert {p.name for p in FILES} >= REQUIRED


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path) -> None:
    want = json.loads(path.read_text())
    got = replay(want)
    for k, (w, g) in enumerate(zip(want["steps"], got["steps"], strict=True)):
        assert g["expect"] == w["expect"], f"step {k}: {w['event']}"
    assert got["status"] == want["status"]
    assert got["stats"] == want["stats"]
