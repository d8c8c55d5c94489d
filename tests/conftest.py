"""Shared fixtures: every test run gets its own FLOPs-table cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    os.environ["SAMPLENAS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
