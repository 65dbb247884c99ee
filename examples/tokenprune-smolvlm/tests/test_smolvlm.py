"""The plugin's own tests: tokenprune's adapter conformance suite on a tiny random SmolVLM (Idefics3),
and the geometry behind its coordinates checked against transformers' own image splitting and pixel
shuffle. Everything is built offline from configs."""
from __future__ import annotations

import pytest
import torch
from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, LlamaConfig
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

import tokenprune
from tokenprune import models
from tokenprune.benchmarks.base import Sample
from tokenprune.engine import PruneError
from tokenprune.testing import tiny
from tokenprune.testing.adapters import AdapterConformance

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<fake_token_around_image>", "<global-img>",
            "<end_of_utterance>", "<|im_start|>", "User", "Assistant"]
SPECIALS += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
CHAT = ("<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}"
        "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")

# a 32 px vision encoder with 4 px patches (8 x 8), pixel shuffle 2: 4 x 4 = 16 tokens per tile; images
# are resized to a 64 px longest edge, so up to 2 x 2 tiles of 32 px and the global image
SIZES = [(64, 64), (60, 28), (26, 58)]  # (width, height): 2 x 2 tiles, 1 x 2, 2 x 1


@tiny.seeded
def tiny_smolvlm(layers: int = 4):
    tokenizer = tiny.word_tokenizer(SPECIALS)
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=4, initializer_range=0.15)
    config = Idefics3Config(vision_config=vision, text_config=LlamaConfig(**tiny.text_config(layers, len(tokenizer))),
                            scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=0)
    model = Idefics3ForConditionalGeneration(config).eval()
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=16,
                                  chat_template=CHAT)
    return tiny.load_saved(model, [processor], "smolvlm")


class TestSmolVLM(AdapterConformance):
    suppress_tokens = tuple(range(len(SPECIALS)))

    def build(self, layers):
        return tiny_smolvlm(layers)

    def samples(self, n, seed=0):
        return tiny.samples(n, seed=seed, image_sizes=SIZES)


@pytest.fixture(scope="module")
def vlm():
    return tiny_smolvlm()


def test_the_plugin_registers_the_adapter(vlm):
    assert models.adapter_class("smolvlm").__name__ == "SmolVLMAdapter"
    assert models.as_vlm(vlm.model).name == "smolvlm"
    assert vlm.input_builder == "official" and type(vlm.processor).__name__ == "Idefics3Processor"


def test_tiles_are_stitched_and_the_global_image_follows(vlm):
    inputs = vlm.build_inputs(tiny.samples(3, image_sizes=SIZES))
    square, wide, tall = vlm.visuals(inputs["input_ids"], dict(inputs))
    assert square.n == 5 * 16 and square.grid == (2, 8, 8)
    assert square.segments == [("tiles", 0, 64), ("global", 64, 80)]
    # tile (1, 2) is the second run of 16 tokens: rows 0..3 of the stitched frame, columns 4..7
    assert square.coords[16:20].tolist() == [[0, 0, 4], [0, 0, 5], [0, 0, 6], [0, 0, 7]]
    assert square.coords[48].tolist() == [0, 4, 4]  # first token of tile (2, 2)
    assert square.coords[64:].tolist() == [[1, r, c] for r in range(4) for c in range(4)]
    assert wide.grid == (2, 4, 8) and wide.segments == [("tiles", 0, 32), ("global", 32, 48)]
    assert tall.grid == (2, 8, 4) and tall.coords[16].tolist() == [0, 4, 0]


def test_an_unsplit_image_is_one_frame_and_several_images_take_the_next_frames(vlm):
    prompt = vlm.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "what is it ?"}]}],
        add_generation_prompt=True)
    inputs = vlm.processor(text=[prompt], images=[tiny.images(2, size=(64, 30))], return_tensors="pt",
                           do_image_splitting=False)
    (v,) = vlm.visuals(inputs["input_ids"], dict(inputs))
    assert v.n == 32 and v.grid == (2, 4, 4) and v.segments == [("global0", 0, 16), ("global1", 16, 32)]
    inputs = vlm.processor(text=[prompt], images=[tiny.images(2, size=(64, 30))], return_tensors="pt")
    (v,) = vlm.visuals(inputs["input_ids"], dict(inputs))
    assert [name for name, _, _ in v.segments] == ["tiles0", "global0", "tiles1", "global1"]
    assert v.coords[48:52, 0].tolist() == [2] * 4  # the second image's tiles are frame 2


def test_pixel_shuffle_folds_neighbouring_patches_in_raster_order(vlm):
    """The connector's token k of a tile holds the s x s patch block (k // n, k % n): the raster order
    the coordinates assume, checked on the model's own pixel_shuffle."""
    side, s = 8, vlm.model.config.scale_factor
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    patches = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()[None]  # [1, 64, 2]: each patch's place
    folded = vlm.model.model.connector.pixel_shuffle(patches, s)[0].reshape(-1, s * s, 2)
    n = side // s
    for k, block in enumerate(folded):
        assert {tuple(p) for p in block.long().tolist()} == {(k // n * s + a, k % n * s + b)
                                                             for a in range(s) for b in range(s)}


def test_a_bare_model_is_refused_at_apply_with_a_way_out(vlm):
    with pytest.raises(PruneError, match=r"SmolVLMAdapter\(model, processor\)"):
        tokenprune.apply(vlm.model, "random", budget=8)


def test_video_is_refused_and_the_preflight_bound_holds(vlm):
    with pytest.raises(ValueError, match="takes images, not video"):
        vlm.build_inputs(tiny.samples(1, frames=2))
    preprocessor = vlm.processor.image_processor.to_dict()
    most, exact = type(vlm).max_visual_tokens(vlm.model.config, preprocessor)
    assert (most, exact) == (80, False)
    assert vlm.count_visual(vlm.build_inputs(tiny.samples(1, image_sizes=[(64, 64)]))["input_ids"][0]) == most


def test_text_only_and_image_samples_share_a_batch(vlm):
    text_only = Sample(id="t", prompt="is there a cat ?", references=None)
    inputs = vlm.build_inputs([text_only] + tiny.samples(1, image_sizes=SIZES))
    counts = [v.n for v in vlm.visuals(inputs["input_ids"], dict(inputs))]
    assert counts == [0, 80]
