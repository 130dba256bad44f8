"""pytest configuration: the hypothesis profile and fixtures. Helpers live in tests/support/
(test modules import them from there, never from here or from each other)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from accord.base.genesis import Genesis

from .support.browser import browser  # noqa: F401 (the explorer tests' real-browser fixture)
from .support.genesis import make_genesis

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture
def genesis4() -> Genesis:
    return make_genesis(4)
