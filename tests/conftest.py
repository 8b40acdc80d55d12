"""Shared test settings: deterministic, small thread pool (CI has 2 cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
