"""Shared test settings: seeded, one intra-op thread.

Tests use tiny tensors, for which OpenMP threads cost more than they give (and on a loaded
2-core machine far more); processes started by tests (DDP, notebooks) set their own.
"""

import pytest
import torch


def pytest_configure(config):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
