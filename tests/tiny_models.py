"""Tiny random-weight VLMs of every supported family, built offline from configs (no downloads).

Each builder saves the model and its processor (or tokenizer + PIL image
processor) with ``save_pretrained`` into a directory and loads it back through
the adapter, so the same ``from_pretrained`` path as a real checkpoint is used.
Weights are drawn with a larger initializer range than real models so greedy
tokens are decided by clear margins.
"""
from __future__ import annotations

import torch

from tokenprune.testing import tiny
from tokenprune.testing.tiny import PROMPTS, WORDS, images, samples  # noqa: F401
from tokenprune.testing.tiny import seeded as _seeded

LLAVA_CHAT = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
              "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'video' %}<video>\n"
              "{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}"
              "{% if add_generation_prompt %}ASSISTANT:{% endif %}")

QWEN_CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
             "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
             "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
             "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<video>", "<|image_pad|>", "<|video_pad|>",
            "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"]


def tokenizer(padding_side="left"):
    """A word-level tokenizer over a few dozen words plus every family's special tokens."""
    return tiny.word_tokenizer(SPECIALS, padding_side=padding_side)


def token_id(name: str) -> int:
    return SPECIALS.index(name)


VOCAB = len(SPECIALS) + len(dict.fromkeys(WORDS))


def text_config(layers: int, vocab_size: int = VOCAB, **extra) -> dict:
    return tiny.text_config(layers, vocab_size, **extra)


class ProcessorConfig:
    """A processor_config.json with these values, saved beside a processor's parts."""

    def __init__(self, **values):
        self.values = values

    def save_pretrained(self, path: str):
        import json
        import os

        with open(os.path.join(path, "processor_config.json"), "w", encoding="utf-8") as f:
            json.dump(self.values, f, indent=2)


def _finish(model, processor, adapter: str, *, attn_implementation="sdpa"):
    """Save model + processor, then load them back through the registered adapter."""
    parts = () if processor is None else processor if isinstance(processor, (list, tuple)) else (processor,)
    return tiny.load_saved(model, parts, adapter, attn_implementation=attn_implementation)


@_seeded
def llava(layers: int = 4, attn_implementation: str = "sdpa"):
    """LLaVA-1.5 shape: CLIP tower (42 px, patch 7: 6x6 = 36 tokens per image) + Llama with GQA."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                              image_size=42, patch_size=7, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=LlamaConfig(**text_config(layers)),
                         image_token_id=token_id("<image>"), vision_feature_layer=-2,
                         vision_feature_select_strategy="default", pad_token_id=0)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(
        image_processor=LlavaImageProcessorPil(size={"shortest_edge": 42}, crop_size={"height": 42, "width": 42}),
        tokenizer=tokenizer(), patch_size=7, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_CHAT)
    return _finish(model, processor, "llava", attn_implementation=attn_implementation)


def special_ids() -> list[int]:
    """Tokens generation must never produce in tests (media placeholders, padding, end of sequence)."""
    return list(range(len(SPECIALS)))


def _qwen_processor(patch: int, timestamps=False, seconds_per_grid=False):
    """Images and video share the pixel limits (a checkpoint without a video config); Qwen3-VL
    (``timestamps``) sizes video over the whole clip."""
    from dataclasses import replace

    from tokenprune.models.qwen_inputs import QWEN2_VIDEO, QWEN3_VIDEO, QwenProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    factor = patch * 2
    limits = dict(min_pixels=factor * factor * 4, max_pixels=factor * factor * 48)
    image_processor = Qwen2VLImageProcessorPil(patch_size=patch, merge_size=2, temporal_patch_size=2, **limits)
    video = replace(QWEN3_VIDEO if timestamps else QWEN2_VIDEO, patch_size=patch, **limits)
    return QwenProcessor(tokenizer(), image_processor, QWEN_CHAT, video=video, timestamps=timestamps,
                         seconds_per_grid=seconds_per_grid)


def _qwen_ids():
    return dict(image_token_id=token_id("<|image_pad|>"), video_token_id=token_id("<|video_pad|>"),
                vision_start_token_id=token_id("<|vision_start|>"), vision_end_token_id=token_id("<|vision_end|>"))


QWEN_ROPE = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}


@_seeded
def qwen2_vl(layers: int = 4, attn_implementation: str = "sdpa"):
    """Qwen2-VL shape: patch 7, 2x2 merge (a 56 x 56 image gives 4 x 4 = 16 tokens), M-RoPE, GQA."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=7, spatial_merge_size=2,
                           temporal_patch_size=2, mlp_ratio=2, initializer_range=0.15),
        text_config=text_config(layers, rope_parameters=dict(QWEN_ROPE)), **_qwen_ids())
    model = Qwen2VLForConditionalGeneration(config).eval()
    return _finish(model, _qwen_processor(7), "qwen2_vl", attn_implementation=attn_implementation)


@_seeded
def qwen2_5_vl(layers: int = 4, attn_implementation: str = "sdpa"):
    """Qwen2.5-VL shape (window attention in the vision tower, RMSNorm merger), same LLM-side grid as Qwen2-VL."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        vision_config=dict(depth=2, hidden_size=32, out_hidden_size=64, intermediate_size=48, num_heads=2,
                           patch_size=7, spatial_merge_size=2, temporal_patch_size=2, window_size=28,
                           fullatt_block_indexes=[1], initializer_range=0.15),
        text_config=text_config(layers, rope_parameters=dict(QWEN_ROPE)), **_qwen_ids())
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return _finish(model, _qwen_processor(7, seconds_per_grid=True), "qwen2_5_vl",
                   attn_implementation=attn_implementation)


@_seeded
def qwen3_vl(layers: int = 4, attn_implementation: str = "sdpa"):
    """Qwen3-VL shape: DeepStack after LLM layers 0, 1 and 2 (so the default K = 2 lands inside them),
    q/k norms, interleaved M-RoPE, per-frame video timestamps."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    rope = dict(QWEN_ROPE, mrope_interleaved=True)
    config = Qwen3VLConfig(
        vision_config=dict(depth=3, hidden_size=32, intermediate_size=48, num_heads=2, patch_size=7,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                           num_position_embeddings=64, deepstack_visual_indexes=[0, 1, 2], initializer_range=0.15),
        text_config=text_config(layers, head_dim=16, rope_parameters=rope), **_qwen_ids())
    model = Qwen3VLForConditionalGeneration(config).eval()
    return _finish(model, _qwen_processor(7, timestamps=True), "qwen3_vl", attn_implementation=attn_implementation)


PINPOINTS = [[28, 56], [56, 28], [56, 56]]


@_seeded
def llava_next(layers: int = 4, attn_implementation: str = "sdpa"):
    """LLaVA-NeXT shape: 28 px base (4 x 4 tokens) plus up to 2 x 2 crops, unpadded, a newline per row."""
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextProcessor)
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                              image_size=28, patch_size=7, projection_dim=32)
    config = LlavaNextConfig(vision_config=vision, text_config=LlamaConfig(**text_config(layers)),
                             image_token_id=token_id("<image>"), vision_feature_layer=-2,
                             vision_feature_select_strategy="default", image_grid_pinpoints=PINPOINTS,
                             pad_token_id=0)
    model = LlavaNextForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.model.image_newline.normal_()
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                                 image_grid_pinpoints=PINPOINTS)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer(), patch_size=7,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=LLAVA_CHAT)
    return _finish(model, processor, "llava_next", attn_implementation=attn_implementation)


@_seeded
def llava_onevision(layers: int = 4, attn_implementation: str = "sdpa"):
    """LLaVA-OneVision shape: SigLIP tower (28 px, 4 x 4 tokens, no CLS), anyres crops, Qwen2 LLM;
    video frames pooled to 2 x 2 tokens each plus one newline."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config, SiglipVisionConfig
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )
    from tokenprune.models.llava_onevision import OnevisionProcessor

    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                image_size=28, patch_size=7)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=Qwen2Config(**text_config(layers)),
                                  image_token_id=token_id("<image>"), video_token_id=token_id("<video>"),
                                  vision_feature_layer=-1, vision_feature_select_strategy="full",
                                  image_grid_pinpoints=PINPOINTS, vision_aspect_ratio="anyres_max_9")
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.model.image_newline.normal_()
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28}, image_grid_pinpoints=PINPOINTS)
    processor = OnevisionProcessor(tokenizer(), image_processor, LLAVA_CHAT)
    # what transformers' OneVision processor saves besides its parts (read where it runs, with torchvision)
    extra = ProcessorConfig(processor_class="LlavaOnevisionProcessor", num_image_tokens=16,
                            vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    return _finish(model, (processor, extra), "llava_onevision", attn_implementation=attn_implementation)
