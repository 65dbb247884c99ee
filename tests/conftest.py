import os

# The suite is offline: a hub id is looked up in the local cache only, never retried over the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# The tests run tiny models, whose ops are too small to gain from a thread pool; one thread
# is faster and does not slow to a crawl when the cores are shared.
torch.set_num_threads(int(os.environ.get("TOKENPRUNE_TEST_THREADS", "1")))
