"""Fixtures for the report tests: one example results frame per session (it is never mutated)."""

from __future__ import annotations

import pytest

from tests.report.helpers import make_example_results


@pytest.fixture(scope="session")
def results():
    return make_example_results()
