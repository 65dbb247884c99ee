"""Two-stage pruning (a pre_llm prune, then one at layer K in the same prefill), through `saint_hybrid`
on the tiny LLaVA: equivalences with one-stage SAINT, a hand-run LLM, the no-cache recompute and
single-sample runs, the records, the FLOPs accounting, and the refusals."""
from __future__ import annotations

import pytest
import torch

import tokenprune
import tiny_models as tm
from test_engine import (ADAPTERS, assert_unpatched, forward_logits, generate, get_case, hook_count, n_visual,
                         replaying, slow_reference)
from tokenprune import diagnostics
from tokenprune import ParamError, PluginError, Selection, Strategy
from tokenprune.benchmarks.base import Sample
from tokenprune.engine import PruneError
from tokenprune import TwoStage

K = 2  # the tiny models have 4 decoder layers


def hybrid(**params):
    return tokenprune.get_strategy("saint_hybrid", layer=K, **params)


def llava():
    return get_case("llava")[0]


def two_image_sample(seed=0) -> Sample:
    """A sample with two images (72 visual tokens), so a batch has different N per sample."""
    return Sample(id="two", prompt="compare these pictures .", references=None, images=tm.images(2, seed=seed))


# ---------------------------------------------------------------------------------------- (a) stage 1 keeps all
def test_stage_one_keeping_everything_equals_saint_alone():
    vlm = llava()
    inputs = vlm.build_inputs(tm.samples(2, seed=3))
    with tokenprune.apply(vlm, "saint", budget=9, layer=K) as alone:
        logits_alone, tokens_alone = forward_logits(vlm, inputs), generate(vlm, inputs, max_new_tokens=4)
    with tokenprune.apply(vlm, hybrid(vit_keep_ratio=1.0), budget=9) as both:
        logits_both, tokens_both = forward_logits(vlm, inputs), generate(vlm, inputs, max_new_tokens=4)
    assert [r["kept"] for r in both.records] == [r["kept"] for r in alone.records]
    assert all(r["info"]["stage1_count"] == r["n_visual"] == 36 for r in both.records)
    torch.testing.assert_close(logits_both, logits_alone, rtol=1e-4, atol=1e-5)
    assert torch.equal(tokens_both, tokens_alone)


# ---------------------------------------------------------------------------------------- (b) hand-run oracle
def _oracle_logits(vlm, inputs, cuts: dict[int, torch.Tensor]):
    """Last-token logits from the LLM's own layers called one by one; before layer i the rows
    ``cuts[i]`` (prompt positions) are kept, with their original position ids."""
    model, lm = vlm.model, vlm.language_model
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        feats = model.model.get_image_features(inputs["pixel_values"], return_dict=True).pooler_output
        feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats])
        h = embeds.masked_scatter((inputs["input_ids"] == vlm.image_token_id)[..., None], feats.to(embeds.dtype))
        pos = torch.arange(h.shape[1])[None]
        alive = torch.arange(h.shape[1])  # prompt positions of the current rows
        for i, block in enumerate(lm.layers):
            if i in cuts:
                rows = torch.searchsorted(alive, cuts[i])
                assert torch.equal(alive[rows], cuts[i]), "a cut may only keep rows that are still there"
                h, pos, alive = h[:, rows], pos[:, rows], cuts[i]
            h = block(h, attention_mask=None, position_ids=pos, position_embeddings=lm.rotary_emb(h, pos))
        return model.lm_head(lm.norm(h))[:, -1]


def _prompt_positions(inputs, image_token_id, kept_visual):
    """Prompt positions that survive when only ``kept_visual`` of the image tokens stay."""
    image = (inputs["input_ids"][0] == image_token_id).nonzero().flatten()
    keep = torch.ones(inputs["input_ids"].shape[1], dtype=torch.bool)
    keep[image] = False
    keep[image[kept_visual]] = True
    return keep.nonzero().flatten()


def test_logits_equal_a_hand_run_llm_cut_twice():
    vlm = llava()  # sdpa, batch of one: the oracle runs plain causal attention
    inputs = vlm.build_inputs(tm.samples(1, seed=19))
    with tokenprune.apply(vlm, hybrid(), budget=7) as handle, torch.inference_mode():
        logits = vlm.model(**inputs).logits[:, -1]
    rec = handle.records[0]
    stage1, final = rec["info"]["stage1_kept"], rec["kept"]
    assert len(stage1) == 23 and len(final) == 7 and set(final) < set(stage1)
    cuts = {0: _prompt_positions(inputs, vlm.image_token_id, stage1),
            K: _prompt_positions(inputs, vlm.image_token_id, final)}
    oracle = _oracle_logits(vlm, inputs, cuts)
    assert torch.allclose(logits, oracle, atol=1e-5)
    # and the second cut mattered: cutting only before the LLM gives other logits
    assert not torch.allclose(logits, _oracle_logits(vlm, inputs, {0: cuts[0]}), atol=1e-5)


def test_second_stage_reads_the_keys_of_the_shorter_sequence():
    """Stage 2 selects on layer K-1's keys of the N1 survivors, in the order the LLM received them."""
    seen = []

    class Spy(Strategy):
        name = "test_spy_llm"
        stage = "llm"
        layer = K
        requires = frozenset({"keys", "attn"})

        def select(self, keys, attn, coords, budget, ctx):
            seen.append((keys.shape, attn.shape, coords.clone(), ctx.extras["image_start"]))
            return Selection(keep=torch.arange(budget).expand(keys.shape[0], budget).clone())

    class Chain(TwoStage):
        name = "test_chain"
        layer = K
        part_classes = (tokenprune.strategy_class("uniform"), Spy)

        def part_params(self):
            return {}, {}

        def first_budget(self, n, budget):
            return n // 2

    vlm = llava()
    inputs = vlm.build_inputs(tm.samples(1, seed=2))
    with tokenprune.apply(vlm, Chain(), budget=5) as handle:
        forward_logits(vlm, inputs)
    (keys_shape, attn_shape, coords, image_start), = seen
    stage1 = handle.records[0]["info"]["stage1_kept"]
    assert keys_shape[1] == attn_shape[1] == 18 == len(stage1)
    uniform_coords = torch.stack([torch.arange(36) // 6, torch.arange(36) % 6], dim=1)[stage1]
    assert torch.equal(coords, uniform_coords)  # the survivors' own grid coordinates
    assert handle.records[0]["kept"] == stage1[:5]
    assert image_start == [int((inputs["input_ids"][0] == vlm.image_token_id).nonzero()[0])]


# ---------------------------------------------------------------------------------------- (c) cache equivalence
@pytest.mark.parametrize("seed,budget", [(3, 6), (4, 12)])
def test_cached_generation_equals_slow_recompute(seed, budget):
    vlm = llava()
    inputs = vlm.build_inputs(tm.samples(1, seed=seed))
    s = replaying(hybrid())
    with tokenprune.apply(vlm, s, budget) as handle:
        cached = generate(vlm, inputs)
    assert handle.records[0]["count"] == budget
    assert torch.equal(cached, slow_reference(vlm, inputs, replaying(hybrid()), budget))


@pytest.mark.parametrize("adapter", sorted(set(ADAPTERS) - {"llava"}))
def test_cached_generation_equals_slow_recompute_on_every_adapter(adapter):
    vlm, make = get_case(adapter)
    inputs = vlm.build_inputs(make(1, seed=3))
    budget = max(1, n_visual(vlm, inputs) // 4)
    with tokenprune.apply(vlm, replaying(hybrid()), budget) as handle:
        cached = generate(vlm, inputs)
    rec = handle.records[0]
    assert rec["count"] == budget < rec["info"]["stage1_count"] < rec["n_visual"]
    assert torch.equal(cached, slow_reference(vlm, inputs, replaying(hybrid()), budget))


def test_eager_attention_cached_generation_equals_slow_recompute():
    vlm = tm.llava(layers=4, attn_implementation="eager")  # float 4-D masks
    inputs = vlm.build_inputs(tm.samples(1, seed=6))
    with tokenprune.apply(vlm, replaying(hybrid()), 8):
        cached = generate(vlm, inputs)
    assert torch.equal(cached, slow_reference(vlm, inputs, replaying(hybrid()), 8))


# ---------------------------------------------------------------------------------------- (d) batches
@pytest.mark.parametrize("params,amount", [({}, {"budget": 8}),
                                           ({}, {"keep_ratio": 0.25}),
                                           ({"faithful": True, "threshold": 0.2}, {"budget": 8})])
def test_left_padded_batch_equals_single_runs(params, amount):
    """Prompts of different lengths and N (one sample has two images), so both stages keep ragged counts."""
    vlm = llava()
    samples = tm.samples(2, seed=5) + [two_image_sample(seed=5)]
    batch = vlm.build_inputs(samples)
    assert batch["attention_mask"].sum(dim=1).unique().numel() == 3, "prompts must differ in length"
    with tokenprune.apply(vlm, hybrid(**params), **amount) as handle:
        together = generate(vlm, batch, max_new_tokens=6)
        batch_records = list(handle.records)
        handle.clear()
        singles = [generate(vlm, vlm.build_inputs([x]), max_new_tokens=6) for x in samples]
        single_records = list(handle.records)
    for key in ("kept", "count"):
        assert [r[key] for r in batch_records] == [r[key] for r in single_records]
    assert [r["info"]["stage1_kept"] for r in batch_records] == [r["info"]["stage1_kept"] for r in single_records]
    assert len({r["info"]["stage1_count"] for r in batch_records}) == 2
    if params.get("faithful") or "keep_ratio" in amount:
        assert len({r["count"] for r in batch_records}) > 1, "want ragged final counts"
    for i, single in enumerate(singles):
        assert torch.equal(together[i, :single.shape[1]], single[0]), f"sample {i}"


@pytest.mark.parametrize("adapter", sorted(set(ADAPTERS) - {"llava"}))
def test_left_padded_batch_equals_single_runs_on_every_adapter(adapter):
    vlm, make = get_case(adapter)
    samples = make(3, seed=5)
    batch = vlm.build_inputs(samples)
    with tokenprune.apply(vlm, hybrid(), keep_ratio=0.25) as handle:
        together = generate(vlm, batch, max_new_tokens=6)
        batch_kept = [(r["kept"], r["info"]["stage1_kept"]) for r in handle.records]
        handle.clear()
        singles = [generate(vlm, vlm.build_inputs([x]), max_new_tokens=6) for x in samples]
        single_kept = [(r["kept"], r["info"]["stage1_kept"]) for r in handle.records]
    assert batch_kept == single_kept
    for i, single in enumerate(singles):
        assert torch.equal(together[i, :single.shape[1]], single[0]), f"sample {i}"


# ---------------------------------------------------------------------------------------- (e) records
@pytest.mark.parametrize("budget,stage1", [(8, 23), (30, 30), (36, 36)])
def test_records_hold_both_counts(budget, stage1):
    """Stage 1 keeps round(0.651 * 36) = 23, never fewer than the final budget."""
    vlm = llava()
    inputs = vlm.build_inputs(tm.samples(2, seed=8))
    with tokenprune.apply(vlm, hybrid(), budget) as handle:
        generate(vlm, inputs, max_new_tokens=2)
    assert len(handle.records) == 2
    for r in handle.records:
        info = r["info"]
        assert (r["n_visual"], r["budget"], r["count"], len(r["kept"])) == (36, budget, budget, budget)
        assert info["stage1_count"] == info["stage1_budget"] == len(info["stage1_kept"]) == stage1
        assert set(r["kept"]) <= set(info["stage1_kept"]) and r["kept"] == sorted(r["kept"])
        assert bool(info["stage1_info"]["schedule"]) == (stage1 < 36)  # saint_vit's rounds, none when all stay
        assert info["rounds"] >= (budget < stage1)
        assert r["grid"] == [1, 6, 6] and r["diagnostics"] is not None
        grid = torch.stack(torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij"), -1).reshape(-1, 2)
        # measured on the full grid, on the final (original-index) kept set
        assert r["diagnostics"]["edge_tokens"] == diagnostics.edge_token_count(grid, torch.tensor(r["kept"]))


def test_keep_ratio_sets_the_final_count():
    vlm = llava()
    inputs = vlm.build_inputs([two_image_sample()])
    with tokenprune.apply(vlm, hybrid(vit_keep_ratio=0.5), keep_ratio=0.25) as handle:
        forward_logits(vlm, inputs)
    r = handle.records[0]
    assert (r["n_visual"], r["info"]["stage1_count"], r["count"]) == (72, 36, 18)


def test_flops_count_stage_one_tokens_below_k():
    from tokenprune import flops
    from tokenprune.runner import metrics

    shape = flops.LLMShape.from_config(llava().model.config)
    assert flops.alive_per_layer(shape, 50, 36, 8, K, first_kept=23) == [37, 37, 22, 22]
    assert flops.alive_per_layer(shape, 50, 36, 8, K) == [50, 50, 22, 22]
    records = [{"prompt_tokens": 50, "n_visual": 36, "count": 8, "stage1_count": 23, "new_tokens": 1}]
    stats = metrics.flops_stats(records, shape, K, 4)
    assert stats["layer_avg_visual_tokens"] == (23 + 23 + 8 + 8) / 4
    assert metrics.token_stats(records)["stage1_kept_mean"] == 23


# ---------------------------------------------------------------------------------------- (f) errors
@pytest.mark.parametrize("params,match", [({"vit_keep_ratio": 1.5}, "vit_keep_ratio"),
                                          ({"vit_step_divisor": 0}, "vit_step_divisor"),
                                          ({"threshold": 2.0}, "threshold"),
                                          ({"unknown": 1}, "unknown")])
def test_bad_params_are_clear_errors(params, match):
    with pytest.raises(ParamError, match=match):
        tokenprune.get_strategy("saint_hybrid", **params)


def test_layer_outside_the_llm_is_refused():
    vlm = llava()
    with pytest.raises(PruneError, match="layer K=8"):
        tokenprune.apply(vlm, "saint_hybrid", budget=4)  # default K = 8, the tiny LLM has 4 layers
    assert_unpatched(vlm)


def test_reindexed_positions_are_refused():
    vlm = llava()
    with pytest.raises(PruneError, match="original position ids"):
        tokenprune.apply(vlm, hybrid(), budget=4, positions="reindex")
    assert_unpatched(vlm)


def test_adapter_without_two_stage_support_is_named(monkeypatch):
    vlm = llava()
    monkeypatch.setattr(vlm, "supports_two_stage", False)
    before = hook_count(vlm.model)
    with pytest.raises(PruneError, match="saint_hybrid.*not supported on model adapter 'llava'"):
        tokenprune.apply(vlm, hybrid(), budget=4)
    assert_unpatched(vlm, before)


def test_part_declaration_is_checked():
    class Backwards(TwoStage):
        name = "test_backwards"
        layer = K
        part_classes = (tokenprune.strategy_class("saint"), tokenprune.strategy_class("saint_vit"))

    with pytest.raises(PluginError, match="part_classes"):
        Backwards.check_declaration()


def test_bad_first_budget_is_named():
    class Greedy(TwoStage):
        name = "test_greedy"
        layer = K
        part_classes = (tokenprune.strategy_class("uniform"), tokenprune.strategy_class("saint"))

        def part_params(self):
            return {}, {}

        def first_budget(self, n, budget):
            return budget - 1  # fewer than the final budget

    vlm = llava()
    handle = tokenprune.apply(vlm, Greedy(), budget=5)
    with pytest.raises(PruneError, match="test_greedy.*first_budget"):
        forward_logits(vlm, vlm.build_inputs(tm.samples(1)))
    assert not handle.active
    assert_unpatched(vlm)


def test_show_explains_both_stages():
    from tokenprune.cli import format_strategy

    text = format_strategy(tokenprune.strategy_class("saint_hybrid").describe())
    assert "pre_llm: saint_vit -> llm: saint" in text
    assert "vit_keep_ratio = 0.651" in text and "stage1_count" in text
