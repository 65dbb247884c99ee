import os

import torch

# The tests run tiny models, whose ops are too small to gain from a thread pool; one thread
# is faster and does not slow to a crawl when the cores are shared.
torch.set_num_threads(int(os.environ.get("TOKENPRUNE_TEST_THREADS", "1")))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (starting one costs seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()
