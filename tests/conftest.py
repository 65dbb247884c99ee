import os

import torch

# Two cores: keep intra-op threads bounded so parallel test workers do not oversubscribe.
torch.set_num_threads(int(os.environ.get("TOKENPRUNE_TEST_THREADS", "2")))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (starting one costs seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
