"""DART: official parity (faithful), the exact-budget default against a plain reference, ragged text."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tokenprune as tp
from tokenprune import Context, StrategyInputError

FIXTURES = sorted((Path(__file__).parent / "data" / "parity" / "dart").glob("*.pt"))


class RMSNorm(torch.nn.Module):
    """LLaMA's RMSNorm (float32 statistics, weight applied in the input dtype)."""

    def __init__(self, weight, eps):
        super().__init__()
        self.weight, self.eps = weight, eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _coords(n):
    return torch.stack([torch.arange(n) // 8, torch.arange(n) % 8], dim=1)


def _fixture_inputs(case):
    norm = RMSNorm(case["in_norm_weight"], case["cfg"]["norm_eps"])
    ctx = Context(hidden=case["in_hidden_img_raw"][None], text_keys=case["in_keys_txt"][None],
                  text_hidden=case["in_hidden_txt_raw"][None], final_norm=norm,
                  extras={"image_start": case["cfg"]["image_token_start_index"]})
    cfg = case["cfg"]
    # LLaVA path: max_num_trunction is the budget; ratio path: budget = floor(N * (1 - ratio))
    budget = cfg["max_num_trunction"]
    if budget is None:
        budget = int(case["N"] * (1 - cfg["reduction_ratio"]))
    return case["in_keys_img"][None], ctx, budget


def test_fixtures_present():
    assert len(FIXTURES) == 6


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_faithful_parity_with_official(path):
    case = torch.load(path, weights_only=True)
    keys, ctx, budget = _fixture_inputs(case)
    # our final_norm reproduces exactly what the official function read
    assert torch.equal(ctx.final_norm(ctx.hidden)[0], case["in_hidden_img"])
    sel = tp.get_strategy("dart", faithful=True).select(keys, None, _coords(case["N"]), budget, ctx)
    assert torch.equal(sel.keep[0], case["out_kept_idx"])
    assert sel.info["counts"] == [case["out_count"]]

    s, n = case["cfg"]["image_token_start_index"], case["N"]
    image_pivots = sel.info["image_pivots"][0] + s
    text_pivots = sel.info["text_pivots"][0] + s + n
    assert torch.equal(image_pivots, case["dbg_image_pivots_global"])
    assert torch.equal(text_pivots, case["dbg_text_pivots_global"])
    slot_global = torch.cat([image_pivots, text_pivots])
    visited = slot_global[sel.info["visit_order"][0]]
    assert torch.equal(visited, case["dbg_pivot_loop_order_global"])
    # each pivot's picks, in the official top-k order
    picks = sel.info["order"][0, len(image_pivots):] + s
    k = case["cfg"]["token_topk"]
    for step, (pivot, official) in enumerate(case["dbg_per_pivot_picks_global"]):
        assert int(visited[step]) == pivot
        assert torch.equal(picks[step * k:(step + 1) * k], official)


def test_faithful_count_is_budget_plus_image_pivots():
    case = torch.load(FIXTURES[-1], weights_only=True)
    keys, ctx, _ = _fixture_inputs(case)
    for budget in (64, 128, 192):
        sel = tp.get_strategy("dart", faithful=True).select(keys, None, _coords(576), budget, ctx)
        assert sel.info["counts"] == [budget + 4]
    assert tp.get_strategy("dart", faithful=True).exact_budget is False


def test_faithful_visit_order_depends_on_image_start():
    case = torch.load(FIXTURES[-1], weights_only=True)
    keys, ctx, budget = _fixture_inputs(case)
    strategy = tp.get_strategy("dart", faithful=True)
    orders = set()
    for start in (0, 5, 35, 600, 1000):
        ctx.extras["image_start"] = start
        sel = strategy.select(keys, None, _coords(576), budget, ctx)
        slots = [start + int(i) for i in sel.info["image_pivots"][0]]
        slots += [start + 576 + int(t) for t in sel.info["text_pivots"][0]]
        expected = [slots.index(g) for g in list(set(slots))]
        assert sel.info["visit_order"][0].tolist() == expected
        orders.add(tuple(expected))
    assert len(orders) > 1


def test_faithful_needs_image_start():
    case = torch.load(FIXTURES[0], weights_only=True)
    keys, ctx, budget = _fixture_inputs(case)
    del ctx.extras["image_start"]
    strategy = tp.get_strategy("dart", faithful=True)
    assert strategy.required_extras == ("image_start",)
    with pytest.raises(StrategyInputError, match="dart.*image_start"):
        strategy.select(keys, None, _coords(case["N"]), budget, ctx)
    ctx.extras["image_start"] = [35, 36]  # one per sample, but the batch has one sample
    with pytest.raises(StrategyInputError, match="image_start"):
        strategy.select(keys, None, _coords(case["N"]), budget, ctx)


def _random_inputs(seed, batch=1, n=40, t=9, d=24, dk=16):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, n, d, generator=gen) + torch.randn(d, generator=gen)
    text_hidden = torch.randn(batch, t, d, generator=gen)
    proj = torch.randn(d, dk, generator=gen)
    ctx = Context(hidden=hidden, text_keys=text_hidden @ proj, text_hidden=text_hidden,
                  final_norm=RMSNorm(1 + 0.1 * torch.randn(d, generator=gen), 1e-5))
    return hidden @ proj, ctx


def reference_exact_budget(keys, text_keys, image_states, text_states, budget, p_img=4, p_txt=4):
    """The documented default for one sample, written plainly (lists, F.cosine_similarity)."""
    n_img = min(p_img, budget)
    image_pivots = torch.sort(keys.abs().sum(-1), descending=True, stable=True).indices[:n_img].tolist()
    text_pivots = torch.sort(text_keys.abs().sum(-1), descending=True, stable=True).indices[:p_txt].tolist()
    pivots = [image_states[i] for i in image_pivots] + [text_states[t] for t in text_pivots]
    rest = budget - n_img
    quotas = [rest // len(pivots) + (1 if i < rest % len(pivots) else 0) for i in range(len(pivots))]
    pool = [i for i in range(keys.shape[0]) if i not in image_pivots]
    order = list(image_pivots)
    for pivot, quota in zip(pivots, quotas):
        sims = F.cosine_similarity(pivot[None], image_states[pool], dim=-1)
        chosen = [pool[j] for j in torch.sort(sims, stable=True).indices[:quota].tolist()]
        order += chosen
        pool = [i for i in pool if i not in chosen]
    return order


@pytest.mark.parametrize("budget", [1, 3, 4, 5, 13, 20, 40])
def test_exact_budget_default_matches_reference(budget):
    keys, ctx = _random_inputs(seed=budget)
    sel = tp.get_strategy("dart").select(keys, None, _coords(40), budget, ctx)
    expected = reference_exact_budget(keys[0], ctx.text_keys[0], ctx.final_norm(ctx.hidden)[0],
                                      ctx.final_norm(ctx.text_hidden)[0], budget)
    assert sel.info["order"][0].tolist() == expected
    assert sel.keep[0].tolist() == sorted(expected)
    assert sel.info["counts"] == [budget]


def test_quota_remainder_goes_to_the_first_pivots():
    keys, ctx = _random_inputs(seed=7)
    sel = tp.get_strategy("dart").select(keys, None, _coords(40), 15, ctx)  # 11 over 8 pivots
    assert sel.info["quota"][0].tolist() == [2, 2, 2, 1, 1, 1, 1, 1]
    assert sel.info["visit_order"][0].tolist() == list(range(8))


def test_ragged_text_batch_honours_text_mask():
    keys, ctx = _random_inputs(seed=11, batch=3, t=9)
    real = torch.tensor([9, 6, 2])  # sample 2 has fewer text tokens than pivots
    mask = torch.arange(9)[None] < real[:, None]
    ctx.text_keys[~mask] = 1e4  # padding that would win every L1 ranking if it were read
    ctx.text_mask = mask
    ctx.extras["image_start"] = torch.tensor([5, 35, 2])
    for faithful in (False, True):
        strategy = tp.get_strategy("dart", faithful=faithful)
        together = strategy.select(keys, None, _coords(40), 24, ctx)
        for b in range(3):
            t = int(real[b])
            alone_ctx = Context(hidden=ctx.hidden[b:b + 1], text_keys=ctx.text_keys[b:b + 1, :t],
                                text_hidden=ctx.text_hidden[b:b + 1, :t], final_norm=ctx.final_norm,
                                extras={"image_start": int(ctx.extras["image_start"][b])})
            alone = strategy.select(keys[b:b + 1], None, _coords(40), 24, alone_ctx)
            row = together.keep[b][together.keep[b] >= 0]
            assert torch.equal(row, alone.keep[0]), (faithful, b)
        if faithful:  # 4 image pivots + 3 per text-or-image pivot
            assert together.info["counts"] == [4 + 8 * 3, 4 + 8 * 3, 4 + 6 * 3]
            assert together.keep[2, -1] == -1
        else:
            assert together.info["counts"] == [24, 24, 24]
            assert (together.info["text_pivots"][2, 2:] == -1).all()


def test_no_text_tokens_uses_image_pivots_only():
    keys, ctx = _random_inputs(seed=3, t=0)
    sel = tp.get_strategy("dart").select(keys, None, _coords(40), 12, ctx)
    assert sel.info["counts"] == [12]
    assert sel.info["quota"][0].tolist() == [2, 2, 2, 2, 0, 0, 0, 0]
    ctx.extras["image_start"] = 35
    sel = tp.get_strategy("dart", faithful=True).select(keys, None, _coords(40), 16, ctx)
    assert sel.info["counts"] == [4 + 4 * 2]  # k = 16 // 8 for each of the 4 image pivots
    assert sel.info["visit_order"][0, 4:].tolist() == [4, 5, 6, 7]  # absent text pivots last


def test_faithful_pool_running_dry_keeps_everything():
    keys, ctx = _random_inputs(seed=5, n=10)
    ctx.extras["image_start"] = 35
    sel = tp.get_strategy("dart", faithful=True).select(keys, None, _coords(10), 10, ctx)
    assert sel.keep.tolist() == [list(range(10))]  # 4 pivots + 8 x 1 would be 12 > 10


def test_bad_text_mask_is_a_clear_error():
    keys, ctx = _random_inputs(seed=1)
    ctx.text_mask = torch.ones(1, 9)
    with pytest.raises(StrategyInputError, match="dart.*text_mask"):
        tp.get_strategy("dart").select(keys, None, _coords(40), 10, ctx)


def test_declaration():
    cls = tp.strategy_class("dart")
    assert (cls.stage, cls.layer) == ("llm", 2)
    assert cls.requires == frozenset({"keys", "hidden", "text_keys", "text_hidden", "final_norm"})
    params = cls.describe()["params"]
    assert (params["pivot_image_tokens"]["default"], params["pivot_text_tokens"]["default"]) == (4, 4)
    assert params["faithful"]["default"] is False
