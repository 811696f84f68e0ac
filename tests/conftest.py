"""Shared pytest set-up: a deterministic hypothesis profile for CI, a one-thread fixture."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "book",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "book"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module on one torch thread, then restore the count.

    The toy models' tensors are tiny: on two shared cores one thread is much faster, and the
    results do not depend on how many threads other tests use.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
