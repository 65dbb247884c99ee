"""DivPrune: official parity, the greedy max-min rule against a brute-force reference, faithful repeats."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tokenprune as tp
from tokenprune_plugins._selection_ops import symmetric_gram, unit_rows

FIXTURES = sorted((Path(__file__).parent / "data" / "parity" / "divprune").glob("*.pt"))


def _coords(n):
    return torch.stack([torch.arange(n) // 8, torch.arange(n) % 8], dim=1)


def _select(features, budget, **params):
    return tp.get_strategy("divprune", **params).select(features, None, _coords(features.shape[-2]), budget)


def test_fixtures_present():
    assert len(FIXTURES) == 7


@pytest.mark.parametrize("faithful", [False, True])
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_parity_with_official(path, faithful):
    case = torch.load(path, weights_only=True)
    assert not case["out_has_duplicates"]  # so both modes must match
    sel = _select(case["in_feats"][None], case["budget"], faithful=faithful)
    assert torch.equal(sel.keep[0], case["out_kept_idx"])
    assert sel.info["counts"] == [case["out_count"]]
    assert torch.equal(sel.info["order"][0], case["out_selection_order"])


def test_batch_of_fixtures_equals_each_case():
    cases = [torch.load(p, weights_only=True) for p in FIXTURES]
    cases = [c for c in cases if c["N"] == 576 and c["budget"] == 64 and c["in_feats"].shape[1] == 128]
    assert len(cases) >= 2
    sel = _select(torch.stack([c["in_feats"] for c in cases]), 64)
    for row, case in zip(sel.keep, cases):
        assert torch.equal(row, case["out_kept_idx"])


def brute_force_greedy(features, count):
    """The rule spelled out with Python loops: D = 1 - cos; first pick = farthest nearest neighbour,
    then argmax over unpicked j of min over picked s of D[s, j] (first index on ties)."""
    n = features.shape[0]
    cos = F.cosine_similarity(features[:, None, :], features[None, :, :], dim=-1)
    dist = (1 - cos).tolist()
    nearest = [min(dist[i][j] for i in range(n) if i != j) for j in range(n)]
    picks = [max(range(n), key=lambda j: (nearest[j], -j))]
    while len(picks) < count:
        best = max((j for j in range(n) if j not in picks),
                   key=lambda j: (min(dist[s][j] for s in picks), -j))
        picks.append(best)
    return picks


@pytest.mark.parametrize("seed", range(6))
def test_greedy_equals_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    n, d = 14 + seed, 5
    features = torch.randn(n, d, generator=gen, dtype=torch.float64) + 0.5  # shared offset: high cosines
    budget = 3 + seed
    sel = _select(features[None], budget)
    assert sel.info["order"][0].tolist() == brute_force_greedy(features, budget)
    assert sel.keep[0].tolist() == sorted(brute_force_greedy(features, budget))


def test_faithful_repeats_a_pick_on_exact_duplicates():
    # two pairs of identical unit vectors: every self-distance is exactly 0
    e1, e2 = torch.eye(2)
    features = torch.stack([e1, e1, e2, e2])[None]
    default = _select(features, 3)
    assert default.info["order"].tolist() == [[0, 2, 1]]
    assert default.keep.tolist() == [[0, 1, 2]] and default.info["duplicate_picks"] == [0]
    faithful = _select(features, 3, faithful=True)
    assert faithful.info["order"].tolist() == [[0, 2, 0]]  # the official loop re-picks token 0
    assert faithful.keep.tolist() == [[0, 2]]
    assert faithful.info["counts"] == [2] and faithful.info["duplicate_picks"] == [1]
    assert tp.get_strategy("divprune", faithful=True).exact_budget is False


def test_faithful_pads_rows_that_lost_a_repeat():
    e1, e2, e3 = torch.eye(3)
    repeats = torch.stack([e1, e1, e2, e2])
    distinct = torch.stack([e1, e2, e3, e1 + e2])
    sel = _select(torch.stack([repeats, distinct]), 3, faithful=True)
    assert sel.keep.tolist()[0] == [0, 2, -1]
    assert sel.info["counts"] == [2, 3] and sel.info["duplicate_picks"] == [1, 0]


def test_block_gram_equals_full_product():
    gen = torch.Generator().manual_seed(0)
    u = unit_rows(torch.randn(2, 500, 64, generator=gen) + 0.3)
    torch.testing.assert_close(symmetric_gram(u), u @ u.mT, rtol=0, atol=1e-6)
    assert torch.equal(symmetric_gram(u), symmetric_gram(u).mT)


def test_half_precision_input_is_scored_in_float32():
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(1, 100, 32, generator=gen).half()
    assert torch.equal(_select(features, 12).keep, _select(features.float(), 12).keep)


def test_zero_feature_row_does_not_poison_the_result():
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(1, 30, 8, generator=gen)
    features[0, 7] = 0
    sel = _select(features, 10)
    assert sel.keep.shape == (1, 10)
    assert int(sel.info["order"][0, 0]) == 7  # a zero row is at distance 1 from everything: most isolated


def test_declaration():
    cls = tp.strategy_class("divprune")
    assert (cls.stage, cls.requires) == ("pre_llm", frozenset({"keys"}))
    assert "round(ratio * N)" in cls.describe()["doc"]


@pytest.mark.parametrize("exclude_picked", [True, False])
def test_numpy_loop_picks_like_the_torch_loop(exclude_picked):
    from tokenprune_plugins.divprune import _greedy_loop_numpy, _greedy_loop_torch, cosine_distance

    gen = torch.Generator().manual_seed(3)
    features = torch.randn(3, 200, 32, generator=gen)
    features[1, 100:] = features[1, :100]  # exact duplicates: ties and, unmasked, repeated picks
    distance = cosine_distance(features)
    first = torch.tensor([0, 7, 199])
    by_numpy = _greedy_loop_numpy(distance, first, 150, exclude_picked)
    by_torch = _greedy_loop_torch(distance, first, 150, exclude_picked)
    assert torch.equal(by_numpy, by_torch)
    assert exclude_picked == all(len(set(row)) == 150 for row in by_numpy.tolist())
