"""CDPruner: official parity, greedy MAP against brute-force log-det greedy, relevance switches, guards."""
from pathlib import Path

import pytest
import torch

import tokenprune as tp
from tokenprune.testing.inputs import grid_coords
from tokenprune_plugins.cdpruner import (
    cosine_similarity_matrix,
    dpp_greedy_map,
    instruction_relevance,
    relevance_to_quality,
)

FIXTURES = sorted((Path(__file__).parent / "data" / "parity" / "cdpruner").glob("*.pt"))


def _load(path):
    case = torch.load(path, weights_only=True)
    B = case["in_image_features"].shape[0]
    ctx = tp.Context(image_embeds=case["in_image_embeds"], text_embeds=case["in_text_embeds"].expand(B, -1, -1).clone())
    return case, ctx


def _coords(n):
    return torch.stack([torch.arange(n) // 12, torch.arange(n) % 12], dim=1)


def _select(keys, image_embeds, text_embeds, budget, **params):
    ctx = tp.Context(image_embeds=image_embeds, text_embeds=text_embeds)
    return tp.get_strategy("cdpruner", **params).select(keys, None, _coords(keys.shape[1]), budget, ctx)


def _random_case(B=2, N=48, D=24, C=16, M=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, N, D, generator=g), torch.randn(B, N, C, generator=g), torch.randn(B, M, C, generator=g))


def test_fixtures_present():
    assert len(FIXTURES) == 7


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_faithful_parity_with_official(path):
    case, ctx = _load(path)
    H, W = case["grid_hw"]
    sel = tp.get_strategy("cdpruner", faithful=True).select(case["in_image_features"], None, grid_coords(H, W),
                                                             case["budget"], ctx)
    assert torch.equal(sel.keep, case["out_kept_idx"])
    assert torch.equal(sel.info["order"], case["out_selection_order"])
    assert sel.info["counts"] == [case["out_count"]] * case["cfg"]["batch_images"]
    assert torch.equal(sel.keep.new_zeros(case["out_index_masks"].shape, dtype=torch.bool)
                       .scatter_(1, sel.keep, True), case["out_index_masks"])
    # the relevance itself is bit-identical to the official (batch-global) one
    relevance = instruction_relevance(ctx.image_embeds, ctx.text_embeds, over_batch=True)
    assert torch.equal(relevance, case["dbg_relevance"])


def test_single_image_cases_match_in_the_default_mode_too():
    singles = [p for p in FIXTURES if torch.load(p, weights_only=True)["cfg"]["batch_images"] == 1]
    assert len(singles) == 6
    for path in singles:  # one image: per-sample and batch-global normalisation coincide
        case, ctx = _load(path)
        sel = _select(case["in_image_features"], ctx.image_embeds, ctx.text_embeds, case["budget"])
        assert torch.equal(sel.keep, case["out_kept_idx"]), path.stem


def test_multi_image_call_needs_batch_normalisation():
    (path,) = [p for p in FIXTURES if "_B3_" in p.name]
    case, ctx = _load(path)
    feats, budget = case["in_image_features"], case["budget"]
    per_sample = instruction_relevance(ctx.image_embeds, ctx.text_embeds, over_batch=False)
    assert not torch.allclose(per_sample, case["dbg_relevance"])  # the case really exercises the difference
    for b in range(3):
        assert per_sample[b].min() < 1e-4 and per_sample[b].max() > 0.999  # each image spans [0, 1] on its own
    explicit = _select(feats, ctx.image_embeds, ctx.text_embeds, budget, normalize="batch")
    assert torch.equal(explicit.keep, case["out_kept_idx"])
    default = _select(feats, ctx.image_embeds, ctx.text_embeds, budget)
    assert default.info["normalize"] == "sample" and explicit.info["normalize"] == "batch"
    # per-sample mode: each image is independent of the others in the call
    alone = _select(feats[1:2], ctx.image_embeds[1:2], ctx.text_embeds[1:2], budget)
    assert torch.equal(default.keep[1], alone.keep[0])
    faithful_per_sample = _select(feats, ctx.image_embeds, ctx.text_embeds, budget, faithful=True, normalize="sample")
    assert torch.equal(faithful_per_sample.keep, default.keep)  # an explicit normalize wins over faithful


def brute_force_logdet_greedy(kernel, count):
    """Greedy argmax_j log det(L[S + j]) with explicit determinants (first index on ties)."""
    picks = []
    for _ in range(count):
        best, best_j = -float("inf"), None
        for j in range(kernel.shape[0]):
            if j in picks:
                continue
            idx = torch.tensor(picks + [j])
            sign, logdet = torch.linalg.slogdet(kernel[idx][:, idx])
            value = logdet.item() if sign > 0 else -float("inf")
            if value > best:
                best, best_j = value, j
        picks.append(best_j)
    return picks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_map_equals_brute_force_logdet_greedy(seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, 30, 16, generator=g, dtype=torch.float64) + 0.5
    quality = torch.rand(1, 30, generator=g, dtype=torch.float64) + 0.05
    sim = cosine_similarity_matrix(feats)
    kernel = quality[0, :, None] * sim[0] * quality[0, None, :]
    order = dpp_greedy_map(sim, quality, 10)
    assert order[0].tolist() == brute_force_logdet_greedy(kernel, 10)
    assert int(order[0, 0]) == int(quality[0].argmax())  # first pick: largest quality (diag of L)


def test_strategy_picks_follow_logdet_greedy_on_its_kernel():
    keys, img, txt = _random_case(B=1, N=24, D=12, seed=3)
    sel = _select(keys.double(), img.double(), txt.double(), 7)
    quality = instruction_relevance(img.double(), txt.double())
    sim = cosine_similarity_matrix(keys.double())
    kernel = quality[0, :, None] * sim[0] * quality[0, None, :]
    assert sel.info["order"][0].tolist() == brute_force_logdet_greedy(kernel, 7)
    assert torch.equal(sel.keep[0], sel.info["order"][0].sort().values)


def test_relevance_sign_switch():
    keys, img, txt = _random_case(seed=4)
    neg = instruction_relevance(img, txt, negate=True)
    pos = instruction_relevance(img, txt, negate=False)
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)  # M = 1
    assert torch.equal(neg.argmax(dim=1), cos.argmin(dim=1))  # official: least text-similar is most relevant
    assert torch.equal(pos.argmax(dim=1), cos.argmax(dim=1))
    sel_neg = _select(keys, img, txt, 6)
    sel_pos = _select(keys, img, txt, 6, negate=False)
    assert torch.equal(sel_neg.info["order"][:, 0], cos.argmin(dim=1))
    assert torch.equal(sel_pos.info["order"][:, 0], cos.argmax(dim=1))


def test_relevance_is_min_max_normalised_with_official_offset():
    _, img, txt = _random_case(N=20, seed=5)
    r = instruction_relevance(img, txt)
    raw = -torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    lo, hi = raw.min(dim=1, keepdim=True).values, raw.max(dim=1, keepdim=True).values
    torch.testing.assert_close(r, (raw - lo + 1e-6) / (hi - lo))


def test_theta_weighting():
    keys, img, txt = _random_case(seed=6)
    relevance = instruction_relevance(img, txt)
    sim = cosine_similarity_matrix(keys)
    # theta = 0.5 -> alpha = 0.5, q = exp(0.5 r); the per-sample shift only rescales the kernel
    expected = dpp_greedy_map(sim, torch.exp(0.5 * relevance), 10)
    assert torch.equal(_select(keys, img, txt, 10, theta=0.5).info["order"], expected)
    torch.testing.assert_close(relevance_to_quality(relevance, 0.5) * torch.exp(0.5 * relevance.max(1, True).values),
                               torch.exp(0.5 * relevance))
    # theta = 0: no conditioning at all, any instruction gives the same tokens
    other_text = torch.randn_like(txt)
    assert torch.equal(_select(keys, img, txt, 10, theta=0.0).keep, _select(keys, img, other_text, 10, theta=0.0).keep)
    assert not torch.equal(_select(keys, img, txt, 10).keep, _select(keys, img, other_text, 10).keep)


def test_theta_one_is_rejected():
    with pytest.raises(tp.ParamError, match="theta"):
        tp.get_strategy("cdpruner", theta=1.0)


def test_large_theta_does_not_overflow():
    keys, img, txt = _random_case(seed=7)
    sel = _select(keys, img, txt, 12, theta=0.99)  # alpha = 49.5: exp would overflow q^2 without the shift
    assert sel.info["counts"] == [12, 12]


def test_budget_near_rank_gives_no_nan_and_falls_back_to_quality_order():
    # keys of rank 4: the official greedy would take sqrt of a non-positive gain after 4 picks
    g = torch.Generator().manual_seed(8)
    keys = torch.randn(2, 40, 4, generator=g)
    _, img, txt = _random_case(B=2, N=40, seed=8)
    sel = _select(keys, img, txt, 39)
    assert sel.info["counts"] == [39, 39]
    quality = instruction_relevance(img, txt)
    for b in range(2):
        order = sel.info["order"][b]
        assert len(set(order.tolist())) == 39
        # the first picks are the exact DPP greedy (float64 brute force), at most rank-many of them
        sim = cosine_similarity_matrix(keys[b:b + 1].double())[0]
        q = quality[b].double()
        assert order[:3].tolist() == brute_force_logdet_greedy(q[:, None] * sim * q[None, :], 3)
        # once the rank is exhausted the rest come in descending quality order
        tail = quality[b][order[4:]]
        assert bool((tail[1:] <= tail[:-1]).all())


def test_zero_text_rows_are_padding():
    keys, img, txt = _random_case(B=2, M=2, seed=9)
    padded = torch.cat([txt[:, :1], torch.zeros_like(txt[:, :1])], dim=1)  # sample texts of M = 1, padded to 2
    assert torch.equal(_select(keys, img, padded, 8).keep, _select(keys, img, txt[:, :1], 8).keep)
    ragged = torch.stack([txt[0], padded[1]])  # sample 0 has two chunks, sample 1 one
    together = _select(keys, img, ragged, 8)
    assert torch.equal(together.keep[0], _select(keys[:1], img[:1], txt[:1], 8).keep[0])
    assert torch.equal(together.keep[1], _select(keys[1:], img[1:], txt[1:, :1], 8).keep[0])


def test_relevance_averages_text_chunks():
    _, img, txt = _random_case(M=3, seed=10)
    raw = -(torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).transpose(1, 2))
    raw = raw.mean(dim=2)
    lo, hi = raw.min(1, True).values, raw.max(1, True).values
    torch.testing.assert_close(instruction_relevance(img, txt), (raw - lo + 1e-6) / (hi - lo))


def test_constant_relevance_is_uniform_not_nan():
    keys, img, txt = _random_case(seed=11)
    same = img[:, :1].expand_as(img).clone()  # every token equally (ir)relevant
    assert bool((instruction_relevance(same, txt) == 1).all())
    assert torch.equal(_select(keys, same, txt, 9).keep, _select(keys, img, txt, 9, theta=0.0).keep)


@pytest.mark.parametrize("what, make, message", [
    ("zero text", lambda i, t: (i, torch.zeros_like(t)), "only zero"),
    ("width", lambda i, t: (i, t[..., :5]), "width 5 differs"),
    ("image shape", lambda i, t: (i[:, :10], t), "image_embeds must have shape"),
    ("text batch", lambda i, t: (i, t[:1]), "text_embeds must have shape"),
])
def test_bad_embeddings_are_clear_errors(what, make, message):
    keys, img, txt = _random_case(seed=12)
    img, txt = make(img, txt)
    with pytest.raises(tp.StrategyInputError, match=f"cdpruner.*{message}"):
        _select(keys, img, txt, 4)


def test_low_precision_keys_and_relevance_space_echo():
    keys, img, txt = _random_case(seed=13)
    ctx = tp.Context(image_embeds=img.bfloat16(), text_embeds=txt.bfloat16(), extras={"relevance_space": "llm_embed"})
    sel = tp.get_strategy("cdpruner").select(keys.bfloat16(), None, _coords(keys.shape[1]), 8, ctx)
    assert sel.info["counts"] == [8, 8] and sel.info["relevance_space"] == "llm_embed"


def test_show_documents_the_fallback_contract():
    doc = tp.strategy_class("cdpruner").describe()["doc"]
    for phrase in ("ctx.text_embeds", "ctx.image_embeds", "embed_tokens", "relevance_space", "normalize: batch"):
        assert phrase in doc


def test_low_quality_tokens_with_real_residual_still_follow_the_greedy():
    # qualities down to 1e-3 (diag(L) down to 1e-6): small gains that are real, not rounding noise
    g = torch.Generator().manual_seed(14)
    feats = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))[0][:12][None]  # orthonormal rows
    feats = feats + 0.3 * torch.randn(1, 12, 16, generator=g, dtype=torch.float64)
    quality = torch.logspace(0, -3, 12, dtype=torch.float64)[torch.randperm(12, generator=g)][None]
    sim = cosine_similarity_matrix(feats)
    kernel = quality[0, :, None] * sim[0] * quality[0, None, :]
    expected = brute_force_logdet_greedy(kernel, 12)
    assert dpp_greedy_map(sim.float(), quality.float(), 12)[0].tolist() == expected
