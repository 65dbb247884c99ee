"""Adapters: where the visual tokens sit on the grid (both ways each family can tell), loading, inputs, results."""
from __future__ import annotations

import pytest
import torch

import tokenprune
import tiny_models as tm
import tokenprune.models as models


@pytest.fixture(scope="module")
def built():
    from test_engine import get_case

    return lambda name: get_case(name)[0]  # the same tiny models as the engine tests


def _mixed(n_images=1, frames=4):
    return tm.samples(1, image_sizes=[(56, 42)]) + tm.samples(2, frames=frames, seed=4, image_sizes=[(56, 42)])[1:]


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_grid_from_grid_thw_equals_grid_from_mrope_ids(built, name):
    vlm = built(name)
    inputs = vlm.build_inputs(_mixed())
    direct = vlm.visuals(inputs["input_ids"], dict(inputs))
    vlm.prepare_generation()
    kwargs = {k: inputs[k] for k in ("image_grid_thw", "video_grid_thw", "mm_token_type_ids", "attention_mask")}
    if "second_per_grid_ts" in inputs:
        kwargs["second_per_grid_ts"] = inputs["second_per_grid_ts"]
    rope, _ = vlm.model.model.get_rope_index(inputs["input_ids"], **kwargs)
    from_rope = vlm.visuals(inputs["input_ids"], {"position_ids": rope})
    image, video = direct
    assert image.grid == (1, 3, 4) and image.coords.shape[1] == 2  # 56 wide x 42 high, patch 7, 2x2 merge
    assert video.grid == (2, 3, 4) and video.n == 24  # 4 frames -> 2 temporal patches
    assert [s[0] for s in video.segments] == (["video", "video"] if name == "qwen3_vl" else ["video"])
    for a, b in zip(direct, from_rope):
        assert torch.equal(a.positions, b.positions) and torch.equal(a.coords, b.coords) and a.grid == b.grid


def test_qwen_without_grid_information_is_refused(built):
    vlm = built("qwen2_vl")
    inputs = vlm.build_inputs(tm.samples(1))
    with pytest.raises(ValueError, match="neither image_grid_thw nor M-RoPE"):
        vlm.visuals(inputs["input_ids"], {})


@pytest.mark.parametrize("name", ["llava_next", "llava_onevision"])
def test_anyres_geometry_from_marker_packing_equals_packed_features(built, name):
    vlm = built(name)
    inputs = vlm.build_inputs(tm.samples(2, image_sizes=[(56, 40), (28, 28)]))
    direct = vlm.visuals(inputs["input_ids"], dict(inputs))
    with torch.inference_mode():
        enc = vlm.model.model.get_image_features(inputs["pixel_values"], inputs["image_sizes"], return_dict=True)
    packed = vlm.visuals(inputs["input_ids"], {"mm_encoder_outputs": {"image": enc}})
    for a, b in zip(direct, packed):
        assert torch.equal(a.coords, b.coords) and a.segments == b.segments
    wide = direct[0]  # 40 x 56 image: 4 x 4 base, then a 2 x 2 crop grid unpadded to 6 x 8, + newline column
    assert wide.segments == [("base", 0, 16), ("highres", 16, 70)] and wide.grid == (2, 6, 9)
    assert wide.coords[:16].tolist() == [[0, r, c] for r in range(4) for c in range(4)]
    assert wide.coords[16:25].tolist() == [[1, 0, c] for c in range(9)]  # col 8 is the newline token
    assert len({tuple(c) for c in wide.coords.tolist()}) == wide.n


def test_onevision_video_tokens(built):
    vlm = built("llava_onevision")
    inputs = vlm.build_inputs(tm.samples(2, frames=3)[1:])
    (v,) = vlm.visuals(inputs["input_ids"], dict(inputs))
    assert v.n == 3 * 2 * 2 + 1 and v.grid == (3, 2, 3) and v.segments == [("video", 0, 13)]
    assert v.coords[-1].tolist() == [2, 1, 2]  # the closing newline, one column past the last frame's last row


def test_llava_several_images_are_frames(built):
    from tokenprune.benchmarks.base import Sample

    vlm = built("llava")
    inputs = vlm.build_inputs([Sample(id="x", prompt="which is red ?", references=None, images=tm.images(2))])
    (v,) = vlm.visuals(inputs["input_ids"], dict(inputs))
    assert v.n == 72 and v.grid == (2, 6, 6) and v.segments == [("image0", 0, 36), ("image1", 36, 72)]
    assert v.coords[36].tolist() == [1, 0, 0]


def test_qwen3_deepstack_follows_the_pruning(built):
    vlm = built("qwen3_vl")
    inputs = vlm.build_inputs(tm.samples(2, image_sizes=[(56, 56), (84, 56)]))
    seen = {}

    def spy(module, args, kwargs):
        seen["mask"], seen["deep"] = kwargs["visual_pos_masks"], kwargs["deepstack_visual_embeds"]

    with torch.inference_mode():
        full = vlm.model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"],
                                                  return_dict=True).deepstack_features
    for strategy, layer in (("uniform", None), ("fastv", 1), ("fastv", 2)):
        params = {} if layer is None else {"layer": layer}
        with tokenprune.apply(vlm, strategy, budget=5, **params) as handle:
            hook = vlm.language_model.register_forward_pre_hook(spy, with_kwargs=True)
            try:
                with torch.inference_mode():
                    vlm.model(**inputs)
            finally:
                hook.remove()
        if layer is None:  # pre_llm: only the kept tokens, with their own features
            assert int(seen["mask"].sum()) == 10 and len(seen["deep"]) == 3
            offsets = [0, 16]
            rows = torch.cat([torch.tensor(r["kept"]) + off for r, off in zip(handle.records, offsets)])
            first = full[0] if isinstance(full[0], torch.Tensor) else torch.cat(full[0])  # split per image in 5.23
            assert torch.equal(seen["deep"][0], first[rows])
        else:  # llm inside the DeepStack layers: the LLM adds the first K, the engine the rest
            assert len(seen["deep"]) == layer


def test_load_local_directory_and_registry(built):
    vlm = built("llava")
    again = models.load("llava", vlm.checkpoint)
    assert again.checkpoint == vlm.checkpoint and again.name == "llava" and again.dtype == torch.float32
    assert models.adapter_class("qwen3_vl").name == "qwen3_vl"
    assert set(tokenprune.registry.names("models")) == {"llava", "llava_next", "llava_onevision", "qwen2_vl",
                                                        "qwen2_5_vl", "qwen3_vl"}
    with pytest.raises(tokenprune.UnknownNameError, match="registered models: llava"):
        models.adapter_class("blip")
    assert models.as_vlm(vlm.model).name == "llava" and models.as_vlm(vlm) is vlm


def test_generation_result(built):
    vlm = built("llava")
    result = vlm.generate(vlm.build_inputs(tm.samples(2)), max_new_tokens=3)
    assert len(result.texts) == 2 and all(isinstance(t, str) for t in result.texts)
    assert all(1 <= n <= 3 for n in result.new_tokens)
    t = result.timings
    assert 0 < t["prefill_s"] <= t["total_s"] and t["decode_s_per_token"] >= 0


def test_prompt_without_chat_template_uses_llava_format(built):
    from tokenprune.models import prompts

    conv = prompts.user_turn("what is it ?", n_images=1)

    class Bare:
        chat_template = None

    assert prompts.render(Bare(), conv, prompts.vicuna_fallback) == "USER: <image>\nwhat is it ? ASSISTANT:"
