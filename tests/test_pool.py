import torch

import tokenprune as tp
from tokenprune.testing.inputs import grid_coords


def test_exact_tiling_is_average_pooling():
    hidden = torch.randn(2, 36, 5)
    sel = tp.get_strategy("pool").select(None, None, grid_coords(6, 6), 9, tp.Context(hidden=hidden))
    expected = torch.nn.functional.avg_pool2d(hidden.transpose(1, 2).reshape(2, 5, 6, 6), 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(sel.hidden, expected)
    assert sel.keep[0].tolist() == [7, 9, 11, 19, 21, 23, 31, 33, 35]
    assert sel.info["region_sizes"] == [4] * 9


def test_every_token_lands_in_exactly_one_region():
    hidden = torch.ones(1, 60, 3)
    sel = tp.get_strategy("pool").select(None, None, grid_coords(6, 10), 7, tp.Context(hidden=hidden))
    assert sum(sel.info["region_sizes"]) == 60 and min(sel.info["region_sizes"]) > 0
    torch.testing.assert_close(sel.hidden, torch.ones(1, 7, 3))


def test_max_mode():
    hidden = torch.arange(16.0).reshape(1, 16, 1)
    sel = tp.get_strategy("pool", mode="max").select(None, None, grid_coords(4, 4), 4, tp.Context(hidden=hidden))
    assert sel.hidden.flatten().tolist() == [5.0, 7.0, 13.0, 15.0]


def test_video_frames_without_a_token_pool_into_the_nearest_frame():
    hidden = torch.arange(16.0).reshape(1, 16, 1)
    sel = tp.get_strategy("pool").select(None, None, grid_coords(2, 2, t=4), 2, tp.Context(hidden=hidden))
    assert sel.info["region_sizes"] == [12, 4]  # frames 0, 1, 2 -> the frame-1 token; frame 3 alone
    assert sel.hidden.flatten().tolist() == [sum(range(12)) / 12, sum(range(12, 16)) / 4]
