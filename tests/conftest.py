import os

import torch

# The tests run tiny models, whose ops are too small to gain from a thread pool; one thread
# is faster and does not slow to a crawl when the cores are shared.
torch.set_num_threads(int(os.environ.get("TOKENPRUNE_TEST_THREADS", "1")))
