import torch

import tokenprune as tp
from tokenprune.testing.inputs import grid_coords


def test_vanilla_keeps_everything_whatever_the_budget():
    sel = tp.get_strategy("vanilla").select(torch.randn(2, 36, 4), None, grid_coords(6, 6), 4, tp.Context())
    assert sel.keep.tolist() == [list(range(36))] * 2


def test_random_is_seeded_per_sample():
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2)]  # noqa: E731
    s = tp.get_strategy("random")
    a = s.select(None, None, grid_coords(6, 6), 9, tp.Context(generator=gens(), batch_size=2)).keep
    b = s.select(None, None, grid_coords(6, 6), 9, tp.Context(generator=gens(), batch_size=2)).keep
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert a[0].tolist() == torch.randperm(36, generator=torch.Generator().manual_seed(1))[:9].sort().values.tolist()


def test_uniform_is_an_even_lattice():
    keep = tp.get_strategy("uniform").select(None, None, grid_coords(24, 24), 64, tp.Context(batch_size=1)).keep[0]
    rows, cols = keep // 24, keep % 24
    assert sorted(set(rows.tolist())) == [1, 4, 7, 10, 13, 16, 19, 22]
    assert sorted(set(cols.tolist())) == [1, 4, 7, 10, 13, 16, 19, 22]


def test_uniform_on_video_shares_the_budget_between_frames():
    coords = grid_coords(4, 4, t=3)
    keep = tp.get_strategy("uniform").select(None, None, coords, 7, tp.Context(batch_size=1)).keep[0]
    frames = coords[keep, 0].tolist()
    assert [frames.count(t) for t in range(3)] == [3, 2, 2]
