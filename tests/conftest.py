import os

# The suite is offline: a hub id is looked up in the local cache only, never retried over the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# The tests run tiny models, whose ops are too small to gain from a thread pool; one thread
# is faster and does not slow to a crawl when the cores are shared.
torch.set_num_threads(int(os.environ.get("TOKENPRUNE_TEST_THREADS", "1")))


import pytest  # noqa: E402


def pytest_runtest_setup(item):
    """Tests marked ``cuda`` skip without a CUDA device, or fail when TOKENPRUNE_REQUIRE_CUDA=1
    (scripts/gpu_check.sh sets it: on the GPU machine a skipped CUDA test would hide a problem)."""
    if item.get_closest_marker("cuda") and not torch.cuda.is_available():
        if os.environ.get("TOKENPRUNE_REQUIRE_CUDA") == "1":
            pytest.fail("marked cuda, but torch sees no CUDA device (TOKENPRUNE_REQUIRE_CUDA=1)", pytrace=False)
        pytest.skip("needs a CUDA GPU (scripts/gpu_check.sh runs these)")
