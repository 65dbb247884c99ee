"""The `downsample` baseline: the input-stage contract, the grid plan, and resized inputs in the engine and runner."""
import math

import pytest
import torch

import tiny_models as tiny
import tokenprune as tp
from tokenprune.engine import PruneError
from tokenprune.errors import PluginError, SelectionError
from tokenprune.testing.inputs import grid_coords


@pytest.mark.parametrize("grid", [(24, 24), (12, 12), (32, 40), (6, 10), (17, 5)])
def test_plan_fits_the_budget_inside_the_grid(grid):
    ds = tp.get_strategy("downsample")
    rows, cols = grid
    for budget in range(1, rows * cols + 1, 7):
        r, c = ds.planned_grid(grid, budget)
        assert r * c >= budget and r <= rows and c <= cols
        # minimal: removing a row or a column would no longer hold the budget
        assert (r - 1) * c < budget and r * (c - 1) < budget
        if budget >= 4 * max(rows, cols) / min(rows, cols):  # room for at least 2 tokens on the short side
            assert abs(math.log((r / c) / (rows / cols))) <= math.log(2)  # aspect kept roughly


def test_plan_is_exact_where_the_budget_is_a_scaled_grid():
    ds = tp.get_strategy("downsample")
    assert ds.planned_grid((24, 24), 64) == (8, 8)
    assert ds.planned_grid((12, 12), 16) == (4, 4)
    assert ds.planned_grid((12, 12), 144) == (12, 12)
    assert ds.planned_grid((12, 12), 500) == (12, 12)


def test_select_trims_the_resized_grid_to_the_budget():
    sel = tp.get_strategy("downsample").select(None, None, grid_coords(7, 7), 48, tp.Context(batch_size=2))
    assert sel.info["counts"] == [48, 48]
    assert torch.equal(sel.keep[0], tp.get_strategy("uniform").select(
        None, None, grid_coords(7, 7), 48, tp.Context(batch_size=1)).keep[0])


def test_input_stage_without_input_grid_is_refused():
    class NoPlan(tp.Strategy):
        name, stage = "no_plan", "input"

        def select(self, keys, attn, coords, budget, ctx):  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(PluginError, match="must implement input_grid"):
        NoPlan.check_declaration()


@pytest.mark.parametrize("answer, message", [((3, 3), "fewer than the budget 12"), ((7, 2), "outside the native 6x6"),
                                             ("big", "must return \\(rows, cols\\) integers")])
def test_garbage_plan_names_the_plugin(monkeypatch, answer, message):
    ds = tp.get_strategy("downsample")
    monkeypatch.setattr(type(ds), "input_grid", lambda self, grid, budget: answer)
    with pytest.raises(SelectionError, match=f"strategy 'downsample': .*{message}"):
        ds.planned_grid((6, 6), 12)


def test_llava_renders_smaller_images_and_keeps_the_budget():
    vlm = tiny.llava()
    samples = tiny.samples(2)
    with tp.apply(vlm, "downsample", budget=8) as handle:
        inputs = vlm.build_inputs(samples)
        assert tuple(inputs["pixel_values"].shape[-2:]) == (21, 21)  # 3x3 patches of 7 px for 9 >= 8 tokens
        assert vlm.native_visual == [36, 36]
        assert [vlm.count_visual(row) for row in inputs["input_ids"]] == [9, 9]
        result = vlm.generate(inputs, max_new_tokens=2)
        assert len(result.texts) == 2
        assert [(r["n_visual"], r["count"]) for r in handle.records] == [(9, 8), (9, 8)]
    assert vlm.resize_plan is None
    assert tuple(vlm.build_inputs(samples)["pixel_values"].shape[-2:]) == (42, 42)


def test_llava_tower_interpolates_positions_only_while_attached():
    vlm = tiny.llava()
    samples = tiny.samples(1)
    with tp.apply(vlm, "downsample", budget=36):  # budget = N: the native image
        native = vlm.build_inputs(samples)
    assert torch.equal(native["pixel_values"], vlm.build_inputs(samples)["pixel_values"])
    inner, cfg = vlm.model.model, vlm.model.config
    with torch.no_grad():
        with tp.apply(vlm, "downsample", budget=16):
            small = vlm.build_inputs(samples)["pixel_values"]
            through_hook = inner.get_image_features(pixel_values=small, vision_feature_layer=-2,
                                                    vision_feature_select_strategy="default").pooler_output[0]
        states = inner.vision_tower(small, interpolate_pos_encoding=True, output_hidden_states=True).hidden_states
        direct = inner.multi_modal_projector(states[-2][:, 1:])[0]
        assert through_hook.shape == (16, cfg.text_config.hidden_size)
        torch.testing.assert_close(through_hook, direct, rtol=0, atol=0)
        with pytest.raises(ValueError, match="doesn't match"):  # hook removed: plain CLIP refuses the size
            inner.get_image_features(pixel_values=small, vision_feature_layer=-2,
                                     vision_feature_select_strategy="default")


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_images_are_resized_to_the_planned_merged_grid(family):
    vlm = getattr(tiny, family)()
    samples = tiny.samples(2, image_sizes=[(70, 56), (56, 56)])  # native merged grids 4x5 and 4x4
    with tp.apply(vlm, "downsample", budget=6) as handle:
        inputs = vlm.build_inputs(samples)
        assert vlm.native_visual == [20, 16]
        grids = inputs["image_grid_thw"].tolist()
        assert grids == [[1, 4, 6], [1, 6, 4]]  # 2x3 and 3x2 merged tokens (unmerged patches: x2)
        vlm.generate(inputs, max_new_tokens=2)
        assert [r["count"] for r in handle.records] == [6, 6]


def test_adapters_without_resizing_and_keep_ratio_are_clear_errors():
    with pytest.raises(PruneError, match="model adapter 'llava_next' cannot do"):
        tp.apply(tiny.llava_next(), "downsample", budget=8)
    with pytest.raises(PruneError, match="give budget, not keep_ratio"):
        tp.apply(tiny.llava(), "downsample", keep_ratio=0.25)


def test_video_samples_are_a_clear_error():
    vlm = tiny.qwen2_vl()
    with tp.apply(vlm, "downsample", budget=6):
        with pytest.raises(ValueError, match="handles images, not video"):
            vlm.build_inputs(tiny.samples(1, frames=2))
