"""The engine's parts on their own: the position policies, the refusals (checks.py) and the vision timer."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import tokenprune
import tiny_models as tm
from tokenprune import Strategy, TwoStage
from tokenprune.engine import PruneError
from tokenprune.engine import positions as pos_ops
from tokenprune.engine.checks import check_attach, check_decode
from tokenprune.engine.layout import Layout
from tokenprune.engine.stages import prune_points
from tokenprune.engine.vision_timer import VisionTimer


@pytest.fixture(scope="module")
def vlm():
    return tm.llava(layers=4)


def _layout():
    # sample 0 keeps prompt positions 0, 1, 3 of 4; sample 1 keeps 2, 3 (one dead slot on the left)
    return Layout.from_rows([torch.tensor([0, 1, 3]), torch.tensor([2, 3])], full=4)


PADDING = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
PREFILL = SimpleNamespace(L=4, padding=PADDING)


def _positions_seen_by_rotary(hidden, position_ids):
    return position_ids  # stands in for (cos, sin): what the rotary embedding was asked for


# ---------------------------------------------------------------------------------------- positions policy
def test_policy_is_chosen_by_name(vlm):
    assert isinstance(pos_ops.policy("original", vlm), pos_ops.OriginalPositions)
    reindex = pos_ops.policy("reindex", vlm)
    assert isinstance(reindex, pos_ops.ReindexPositions) and reindex.mrope is False and reindex.rewrites_decode
    with pytest.raises(ValueError, match="'compact'"):
        pos_ops.policy("compact", vlm)


def test_original_positions_gather_the_kept_ids_and_continue_from_the_full_length():
    policy, layout = pos_ops.OriginalPositions(), _layout()
    assert policy.renumber(layout, PREFILL, None) is None and not policy.rewrites_decode
    assert policy.lm_prefill_ids(None, layout, None, "cpu").tolist() == [[0, 1, 3], [0, 2, 3]]
    mrope = torch.arange(12).view(3, 1, 4)
    assert policy.layer_prefill_ids(mrope, layout, None)[:, 1].tolist() == [[0, 2, 3], [4, 6, 7], [8, 10, 11]]
    # decoding without ids: the LLM would count its pruned cache (3); the sequence had 4 + 2 decoded tokens
    assert policy.lm_decode_ids(None, None, seen=5, removed=1, q=1, device="cpu").tolist() == [[6]]
    assert policy.lm_decode_ids(None, None, seen=5, removed=0, q=1, device="cpu") is None
    given = torch.tensor([[9]])
    assert policy.lm_decode_ids(given, None, seen=5, removed=1, q=1, device="cpu") is given


def test_reindex_numbers_real_kept_tokens_and_shifts_decoding():
    policy, layout = pos_ops.ReindexPositions(_positions_seen_by_rotary, mrope=True), _layout()
    r = policy.renumber(layout, PREFILL, None)  # no ids from the model: the prompt counts 0..L-1
    assert r.plain.tolist() == [[0, 1, 2], [0, 0, 1]]  # dead slot and padding get 0, as generate() numbers padding
    assert r.delta.tolist() == [1, 2]  # next original position (4, 4) minus next reindexed (3, 2)
    assert policy.lm_prefill_ids(torch.zeros(3, 2, 4), layout, r, "cpu").shape == (3, 2, 3)
    assert policy.layer_prefill_ids(None, layout, r) is None
    assert policy.layer_prefill_ids(torch.zeros(2, 4), layout, r) is r.plain
    # M-RoPE without a template: every row of the rotary input is the plain index
    rope = policy.layer_prefill_rope(None, layout, r, hidden=None)
    assert rope.shape == (3, 2, 3) and all(torch.equal(row, r.plain) for row in rope)
    assert policy.lm_decode_ids(torch.tensor([[6], [6]]), r, seen=0, removed=0, q=1, device="cpu").tolist() == \
        [[5], [4]]
    # a decode step without ids continues from the cache length, shifted per sample, on all M-RoPE rows
    dec = policy.layer_decode_rope(torch.zeros(2, 1, 8), r, seen=6, lm_positions=None)
    assert dec[:, :, 0].tolist() == [[5, 4]] * 3


def test_reindex_keeps_the_models_position_layout():
    # Qwen's 4-row ids (a text row, then the 3 M-RoPE rows): the rotary embedding gets the last 3
    policy, layout = pos_ops.ReindexPositions(_positions_seen_by_rotary, mrope=True), _layout()
    template = torch.zeros(4, 2, 4, dtype=torch.long)
    r = policy.renumber(layout, PREFILL, template)
    assert policy.layer_prefill_rope(None, layout, r, hidden=None).shape == (3, 2, 3)
    plain = pos_ops.ReindexPositions(_positions_seen_by_rotary, mrope=False)
    r2 = plain.renumber(layout, PREFILL, None)
    assert plain.layer_prefill_rope(None, layout, r2, hidden=None) is r2.plain
    assert plain.layer_decode_rope(torch.zeros(2, 1, 8), r2, seen=6, lm_positions=None).tolist() == [[5], [4]]


# ---------------------------------------------------------------------------------------- refusals
class _Pre(Strategy):
    name = "test_pre_extras"
    stage = "pre_llm"

    def select(self, keys, attn, coords, budget, ctx):  # pragma: no cover - never called
        raise AssertionError


class _PreAttn(_Pre):
    name = "test_pre_attn"
    requires = frozenset({"attn"})


class _AttnFirst(TwoStage):
    name = "test_attn_first"
    layer = 2
    part_classes = (_PreAttn, tokenprune.strategy_class("fastv"))

    def part_params(self):
        return {}, {}

    def first_budget(self, n, budget):  # pragma: no cover - never called
        return n


def _with_extras(base, extras):
    return type("WithExtras", (base,), {"required_extras": extras})()


@pytest.mark.parametrize("make,kw,match", [
    (lambda: _with_extras(_Pre, ("nope",)), {}, r"cannot provide ctx.extras \['nope'\]; it fills image_start"),
    (lambda: _with_extras(_Pre, ("attn_all_queries",)), {}, r"attn_all_queries'\] needs an llm-stage strategy"),
    (lambda: _AttnFirst(), {}, r"'test_attn_first' on model 'llava' .*\(its pre_llm part 'test_pre_attn'\): "
                               r"'attn' needs an LLM layer"),
    (lambda: tokenprune.get_strategy("fastv", layer=4), {}, r"layer K=4 must be between 1 and 3"),
    (lambda: tokenprune.get_strategy("downsample"), {"budget": None}, "give budget, not keep_ratio"),
], ids=["unknown-extra", "all-queries-before-llm", "two-stage-part", "layer", "resize-by-ratio"])
def test_attach_refusals_name_strategy_and_model(vlm, make, kw, match):
    strategy = make()
    points = prune_points(strategy, lambda n: n, vlm.head_dim)
    with pytest.raises(PruneError, match=match):
        check_attach(vlm, strategy, points, **{"positions": "original", "budget": 4, **kw})
    assert not hasattr(vlm.model, "_tokenprune_handle")


def test_refusals_at_call_time_detach_every_hook(vlm):
    inputs = vlm.build_inputs(tm.samples(1))
    embeds = vlm.model.get_input_embeddings()(inputs["input_ids"])
    calls = [
        (dict(inputs_embeds=embeds, pixel_values=inputs["pixel_values"]), "call the model with input_ids"),
        ({**inputs, "attention_mask": inputs["attention_mask"][:, None, None, :]}, "only 2-D attention masks"),
    ]
    for kwargs, match in calls:
        handle = tokenprune.apply(vlm, "fastv", budget=4)
        with pytest.raises(PruneError, match=match), torch.inference_mode():
            vlm.model(**kwargs)
        assert not handle.active and not hasattr(vlm.model, "_tokenprune_handle")
    handle = tokenprune.apply(vlm, "fastv", budget=4)
    with torch.inference_mode():
        cache = vlm.model(**inputs, use_cache=True).past_key_values
        with pytest.raises(PruneError, match="visual tokens arrived after the prefill"):
            vlm.model(**inputs, past_key_values=cache)  # a cached continuation that brings the image again
    assert not handle.active


def test_mrope_decode_after_pre_llm_pruning_needs_ids():
    model = SimpleNamespace(label="'qwen2_vl' (tiny)", mrope=True, has_media=lambda kwargs: False)
    strategy = tokenprune.get_strategy("random")
    with pytest.raises(PruneError, match="'random' on model 'qwen2_vl' .*needs explicit position_ids"):
        check_decode(model, strategy, {}, _layout())
    check_decode(model, strategy, {"position_ids": torch.zeros(3, 2, 1)}, _layout())
    check_decode(model, strategy, {}, Layout(torch.arange(4).expand(2, 4), None, 4))  # nothing was removed
    check_decode(model, strategy, {}, None)  # pruned at layer K: the LLM numbers its input itself


# ---------------------------------------------------------------------------------------- vision timer
def test_vision_timer_adds_every_tower_run_until_its_hooks_are_removed():
    tower = torch.nn.Linear(64, 64)
    timer = VisionTimer(SimpleNamespace(vision_modules=[tower], device=torch.device("cpu")))
    hooks = timer.attach()
    x = torch.randn(256, 64)
    tower(x)
    first = timer.seconds
    tower(x)
    assert 0 < first < timer.seconds
    for h in hooks:
        h.remove()
    total = timer.seconds
    tower(x)
    assert timer.seconds == total
