import pytest
import torch

from tokenprune import diagnostics
from tokenprune.testing.inputs import grid_coords


def test_edge_tokens_and_spacing_on_a_known_set():
    coords = grid_coords(4, 4)
    keep = torch.tensor([0, 5, 10, 15])  # the diagonal: two corners on the edge
    assert diagnostics.edge_token_count(coords, keep) == 2
    assert diagnostics.mean_nearest_kept_distance(coords, keep) == pytest.approx(2 ** 0.5)


def test_frames_are_not_neighbours():
    coords = grid_coords(2, 2, t=2)
    keep = torch.tensor([0, 4, 7])  # (0,0,0), (1,0,0), (1,1,1)
    assert diagnostics.mean_nearest_kept_distance(coords, keep) == pytest.approx((2 ** 0.5 * 2) / 2)


def test_redundancy_is_mean_offdiagonal_cosine():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert diagnostics.redundancy(feats, torch.tensor([0, 1])) == pytest.approx(1.0)
    assert diagnostics.redundancy(feats, torch.tensor([0, 1, 2])) == pytest.approx(2 / 6)
