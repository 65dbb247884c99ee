"""The plugin's own tests: tokenprune's conformance suite, run on this plugin's strategy."""
import torch

import tokenprune as tp
from tokenprune.testing.conformance import StrategyConformance
from tokenprune.testing.inputs import grid_coords


class TestKeyNorm(StrategyConformance):
    strategies = ["key_norm"]


def test_keeps_largest_keys():
    keys = torch.zeros(1, 16, 4)
    keys[0, [3, 7, 11], 0] = torch.tensor([5.0, 9.0, 7.0])
    sel = tp.get_strategy("key_norm").select(keys, None, grid_coords(4, 4), 2, tp.Context())
    assert sel.keep.tolist() == [[7, 11]]
