"""Shared fixtures: every test run gets its own FLOPs-table cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    import os

    os.environ["SAMPLENAS_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def one_thread():
    """torch on one thread for the test: the GCN's small batched matmuls only contend on
    the shared 2-core host (a two-stage fit took 686 s on two threads, seconds on one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
