import os

import torch

# Two cores: keep intra-op threads bounded so parallel test workers do not oversubscribe.
torch.set_num_threads(int(os.environ.get("TOKENPRUNE_TEST_THREADS", "2")))
