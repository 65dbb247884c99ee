"""SAINT: official parity of both variants, the vote and score against a loop reference, the budget-capped
rounds, head averaging, and the ViT-graph schedules."""
import math
from pathlib import Path

import pytest
import torch

import tokenprune as tp
from tokenprune_plugins.saint import redundancy_scores

FIXTURES = sorted((Path(__file__).parent / "data" / "parity" / "saint").glob("*.pt"))
LLM_CASES = [p for p in FIXTURES if "llm_saint_drop" in p.name]
VIT_CASES = [p for p in FIXTURES if "vit_full_graph" in p.name]


def _coords(n):
    return torch.stack([torch.arange(n) // 24, torch.arange(n) % 24], dim=1)


def _llm(keys, budget, ctx=None, **params):
    keys = keys if keys.dim() == 3 else keys[None]
    return tp.get_strategy("saint", **params).select(keys, None, _coords(keys.shape[1]), budget, ctx)


def _vit(keys, budget, **params):
    keys = keys if keys.dim() == 3 else keys[None]
    return tp.get_strategy("saint_vit", **params).select(keys, None, _coords(keys.shape[1]), budget)


def _rows(keep):
    return [row[row >= 0] for row in keep]


def test_fixtures_present_and_registered():
    assert (len(LLM_CASES), len(VIT_CASES)) == (5, 5)
    assert {"saint", "saint_vit"} <= set(tp.list_strategies())
    assert tp.strategy_class("saint").stage == "llm" and tp.strategy_class("saint").layer == 8
    assert tp.strategy_class("saint_vit").stage == "pre_llm"


# ------------------------------------------------------------------------------------ variant A (LLM)


@pytest.mark.parametrize("path", LLM_CASES, ids=lambda p: p.stem)
def test_llm_faithful_parity_with_official(path):
    case = torch.load(path, weights_only=True)
    params = {"threshold": case["cfg"]["sim_threshold"]} if case["cfg"]["sim_threshold_passed_explicitly"] else \
        {"threshold": 0.82}  # the official signature default
    strategy = tp.get_strategy("saint", faithful=True, min_degree=case["cfg"]["K"], gamma=case["cfg"]["gamma"], **params)
    assert strategy.exact_budget is False
    for budget in (1, case["N"]):  # the budget is ignored in faithful mode
        sel = strategy.select(case["in_metric"][None], None, _coords(case["N"]), budget)
        assert torch.equal(sel.keep[0], case["out_kept_idx"])
        assert sel.info["counts"] == [case["out_count"]]
        assert sel.info["dropped_by_vote"] == [case["out_num_dropped"]]
        assert torch.equal(sel.info["official_order"][0], case["out_indices_returned"])


def test_llm_faithful_batch_pads_ragged_counts():
    cases = [torch.load(p, weights_only=True) for p in LLM_CASES]
    cases = [c for c in cases if c["N"] == 576 and c["cfg"]["sim_threshold"] == 0.83]
    assert len({c["out_count"] for c in cases}) >= 3
    sel = _llm(torch.stack([c["in_metric"] for c in cases]), 1, faithful=True)
    assert sel.keep.shape[1] == max(c["out_count"] for c in cases)
    for row, order, case in zip(sel.keep, sel.info["official_order"], cases):
        assert torch.equal(row[row >= 0], case["out_kept_idx"])
        assert bool((row[case["out_count"]:] == -1).all())
        assert torch.equal(order[order >= 0], case["out_indices_returned"])


def reference_vote_and_score(sim, tau, k, gamma):
    """The variant-A rule spelled out with Python loops over sources and destinations."""
    votes, scores = 0, []
    for row in sim.tolist():
        edges = [s for s in row if s >= tau]
        if len(edges) >= k:
            votes += 1
        if edges:
            scores.append(len(edges) * math.exp(gamma * (sum(edges) / len(edges) - tau)))
        else:
            scores.append(sum(row) / len(row))
    return votes, scores


def test_vote_and_score_match_loop_reference():
    g = torch.Generator().manual_seed(0)
    sim = torch.rand(1, 40, 30, generator=g, dtype=torch.float64) * 1.2 - 0.2
    sim[:, :5] *= 0.6  # five isolated sources (no edge): they are ranked by their mean similarity
    vote, score = redundancy_scores(sim, 0.8, 3, 10.0)
    ref_vote, ref_score = reference_vote_and_score(sim[0], 0.8, 3, 10.0)
    assert int(vote) == ref_vote and 0 < ref_vote < 40
    torch.testing.assert_close(score[0, :5], sim[0, :5].mean(dim=1))
    torch.testing.assert_close(score[0], torch.tensor(ref_score, dtype=torch.float64))


def test_llm_budget_equal_to_official_count_reproduces_official_set():
    for path in LLM_CASES:
        case = torch.load(path, weights_only=True)
        sel = _llm(case["in_metric"], case["out_count"], threshold=case["cfg"]["sim_threshold"])
        assert torch.equal(sel.keep[0], case["out_kept_idx"]), path.stem
        assert sel.info["dropped_forced"] == [0]


def test_llm_budget_cap_drops_the_top_ranked_subset_of_the_vote():
    (path,) = [p for p in LLM_CASES if "lf2.5-dc1__s11013" in p.name]  # the vote drops 197
    case = torch.load(path, weights_only=True)
    official_dropped = set(range(case["N"])) - set(case["out_kept_idx"].tolist())
    sel = _llm(case["in_metric"], case["N"] - 50)
    dropped = set(range(case["N"])) - set(sel.keep[0].tolist())
    assert len(dropped) == 50 and dropped < official_dropped
    assert sel.info["dropped_by_vote"] == [50] and sel.info["rounds"] == 1
    # and they are the 50 top-scored sources (even positions)
    unit = torch.nn.functional.normalize(case["in_metric"], dim=-1)[None]
    _, score = redundancy_scores(unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2), 0.83, 5, 10.0)
    assert dropped == set((2 * score[0].topk(50).indices).tolist())


@pytest.mark.parametrize("budget", [64, 128, 192, 300])
def test_llm_budget_mode_is_exact_and_accounts_for_every_drop(budget):
    case = torch.load(LLM_CASES[1], weights_only=True)
    sel = _llm(case["in_metric"], budget)
    assert sel.info["counts"] == [budget]
    by_vote, forced = sel.info["dropped_by_vote"][0], sel.info["dropped_forced"][0]
    assert by_vote + forced == case["N"] - budget
    assert budget < case["out_count"] and by_vote >= case["out_num_dropped"]  # round 1 honours the whole vote


def test_llm_without_edges_paces_forced_drops_over_the_rounds():
    (path,) = [p for p in LLM_CASES if "noedges" in p.name]
    case = torch.load(path, weights_only=True)
    sel = _llm(case["in_metric"], 64)
    assert sel.info["counts"] == [64] and sel.info["rounds"] == 10
    assert (sel.info["dropped_by_vote"], sel.info["dropped_forced"]) == ([0], [512])
    assert _llm(case["in_metric"], 200, rounds=4).info["rounds"] == 4
    # a small budget that ceil(n/2) sources cannot reach in `rounds` rounds takes extra rounds, still exact
    tiny = _llm(case["in_metric"], 3, rounds=2)
    assert tiny.info["counts"] == [3] and tiny.info["rounds"] > 2


def test_llm_drops_sources_duplicating_their_neighbours():
    g = torch.Generator().manual_seed(1)
    keys = torch.randn(1, 64, 32, generator=g)
    copies = torch.arange(0, 20, 2)  # even tokens 0..18 copy the odd token after them, plus noise
    keys[0, copies] = keys[0, copies + 1] + 0.01 * torch.randn(10, 32, generator=g)
    sel = _llm(keys, 54, min_degree=1)
    assert set(range(64)) - set(sel.keep[0].tolist()) == set(copies.tolist())
    assert sel.info["dropped_by_vote"] == [10]


def test_llm_batch_of_different_votes_equals_single_calls():
    cases = [torch.load(p, weights_only=True) for p in LLM_CASES if "N576" in p.name]
    keys = torch.stack([c["in_metric"] for c in cases])
    together = _llm(keys, 100)
    for b in range(len(cases)):
        assert torch.equal(together.keep[b], _llm(keys[b], 100).keep[0])


def test_head_averaging():
    g = torch.Generator().manual_seed(2)
    heads = torch.randn(2, 48, 4, 16, generator=g) + torch.randn(1, 48, 1, 16, generator=g)
    concatenated, averaged = heads.reshape(2, 48, 64), heads.mean(dim=2)
    by_param = _llm(concatenated, 20, head_dim=16)
    assert by_param.info["heads_averaged"] == 4
    assert torch.equal(by_param.keep, _llm(averaged, 20).keep)
    by_engine = _llm(concatenated, 20, tp.Context(extras={"head_dim": 16}))
    assert torch.equal(by_engine.keep, by_param.keep)
    assert _llm(concatenated, 20, tp.Context(extras={"head_dim": 16}), head_dim=64).info["heads_averaged"] == 1
    assert _llm(concatenated, 20).info["heads_averaged"] == 1
    with pytest.raises(tp.StrategyInputError, match="saint.*not a multiple of head_dim=24"):
        _llm(concatenated, 20, head_dim=24)


# --------------------------------------------------------------------------------- variant B (ViT graph)


def official_schedule(n, keep, divisor, quirk):
    steps = []
    while n > keep:
        step = min(n - keep, max(1, n // divisor))
        if quirk:
            divisor = step
        steps.append(step)
        n -= step
    return steps


@pytest.mark.parametrize("path", VIT_CASES, ids=lambda p: p.stem)
def test_vit_faithful_parity_with_official(path):
    case = torch.load(path, weights_only=True)
    patches = case["in_keys"][1:]  # row 0 is CLS: never scored officially, and absent on the LLM side
    sel = _vit(patches, case["budget"], faithful=True, step_divisor=case["cfg"]["r"])
    assert torch.equal(sel.keep[0], case["out_kept_idx"])
    assert sel.info["schedule"] == [case["out_drop_schedule"].tolist()]
    assert sel.info["counts"] == [case["out_count"]]


def test_vit_schedules():
    assert official_schedule(576, 375, 16, quirk=True) == [36, 15, 35, 14, 34, 13, 33, 12, 9]
    (default,) = _vit(torch.randn(576, 16), 375).info["schedule"]
    assert default == official_schedule(576, 375, 16, quirk=False)
    assert default[:3] == [36, 33, 31] and sum(default) == 201


def reference_full_graph_drop(keys, keep, divisor, quirk):
    unit = torch.nn.functional.normalize(keys.double(), dim=-1)
    sim = (unit @ unit.T).tolist()
    alive = list(range(len(sim)))
    for step in official_schedule(len(alive), keep, divisor, quirk):
        degree = {i: sum(sim[i][j] for j in alive) for i in alive}
        dropped = set(sorted(alive, key=lambda i: -degree[i])[:step])
        alive = [i for i in alive if i not in dropped]
    return alive


@pytest.mark.parametrize("quirk", [False, True])
def test_vit_matches_loop_reference(quirk):
    keys = torch.randn(60, 8, generator=torch.Generator().manual_seed(3))
    sel = _vit(keys, 17, faithful=quirk)
    assert sel.keep[0].tolist() == reference_full_graph_drop(keys, 17, 16, quirk)


def test_vit_drops_redundant_clusters_first():
    g = torch.Generator().manual_seed(4)
    distinct = torch.randn(24, 32, generator=g)
    cluster = distinct[0] + 0.05 * torch.randn(16, 32, generator=g)  # 16 near-copies of token 0
    keys = torch.cat([distinct, cluster])
    kept = _vit(keys, 24).keep[0]
    assert int((kept >= 24).sum()) <= 1  # the near-copies have the largest degree and go


@pytest.mark.parametrize("faithful, schedule", [(False, [1] * 7), (True, [1, 6])])
def test_vit_tiny_n_terminates(faithful, schedule):
    # 10 // 16 == 0: the official loop never ends; the floor of one token per round does
    # (faithful: the divisor then becomes 1, so the next step takes everything left to drop)
    sel = _vit(torch.randn(10, 8, generator=torch.Generator().manual_seed(5)), 3, faithful=faithful)
    assert sel.info["counts"] == [3] and sel.info["schedule"] == [schedule]
    assert schedule == official_schedule(10, 3, 16, quirk=faithful)


def test_vit_batch_equals_single_calls():
    cases = [torch.load(p, weights_only=True) for p in VIT_CASES if "N576" in p.name]
    keys = torch.stack([c["in_keys"][1:] for c in cases])
    together = _vit(keys, 64, faithful=True)
    assert together.info["schedule"] == [official_schedule(576, 64, 16, quirk=True)] * len(cases)
    for b in range(len(cases)):
        assert torch.equal(together.keep[b], _vit(keys[b], 64, faithful=True).keep[0])


def test_show_documents_modes():
    llm_doc = tp.strategy_class("saint").describe()["doc"]
    vit_doc = tp.strategy_class("saint_vit").describe()["doc"]
    assert "faithful: true" in llm_doc and "head_dim" in llm_doc and "budget-capped" in llm_doc
    assert "CLS" in vit_doc and "36, 15, 35, 14" in vit_doc
