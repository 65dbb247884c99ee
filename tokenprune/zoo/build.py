"""Building a bundled model from its recipe, offline: tokenizer, processor, LLaVA model.

The model is a stock ``LlavaForConditionalGeneration`` (CLIP vision tower,
2-layer MLP projector, Llama), so every adapter and hook written for real
LLaVA-1.5 checkpoints runs on it unchanged.
"""
from __future__ import annotations

import torch
from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.processors import TemplateProcessing
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from ..benchmarks.shapes_scene import vocabulary
from .recipe import Recipe

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<image>")
PROMPT_WORDS = ("user", "assistant", ":")

# LLaVA-1.5's conversation format: "USER: <image>\n{question} ASSISTANT:" (our tokenizer lower-cases).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | upper }}: "
    "{% for part in message['content'] if part['type'] == 'image' %}<image>\n{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }} {% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the benchmark's words; lower-cases, splits on spaces and punctuation."""
    words = list(SPECIALS) + list(PROMPT_WORDS) + [w for w in vocabulary() if w not in PROMPT_WORDS]
    core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    core.add_special_tokens(list(SPECIALS))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        padding_side="left",  # batched generation appends to the right
        model_max_length=4096,
    )
    return tok


def build_processor(recipe: Recipe) -> LlavaProcessor:
    # The PIL backend: torchvision is not a dependency. Scenes are rendered at image_size,
    # so resize and crop are the identity; they matter only for foreign images.
    images = CLIPImageProcessorPil(
        size={"shortest_edge": recipe.image_size},
        crop_size={"height": recipe.image_size, "width": recipe.image_size},
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=build_tokenizer(),
        patch_size=recipe.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )


def build_config(recipe: Recipe, tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=recipe.vision_hidden,
        intermediate_size=recipe.vision_mlp,
        num_hidden_layers=recipe.vision_layers,
        num_attention_heads=recipe.vision_heads,
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
        hidden_act="gelu",
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.text_hidden,
        intermediate_size=recipe.text_mlp,
        num_hidden_layers=recipe.text_layers,
        num_attention_heads=recipe.text_heads,
        num_key_value_heads=recipe.text_kv_heads,
        max_position_embeddings=recipe.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": recipe.rope_theta},
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=recipe.visual_tokens,
        tie_word_embeddings=True,
    )


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes [grid*grid, dim], rows then columns (MAE-style).

    Half the channels encode the row, half the column, so a cell of the 3x3
    layout is a linearly separable set of codes from the first step on.
    """
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    codes = []
    for pos in (rows.flatten(), cols.flatten()):
        angle = pos[:, None].double() * freq[None, :]
        codes += [angle.sin(), angle.cos()]
    return torch.cat(codes, dim=1).float()


def build_model(recipe: Recipe, tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    """A freshly initialised model (seeded) with fixed 2-D sinusoid patch positions in the vision tower."""
    torch.manual_seed(recipe.seed)
    model = LlavaForConditionalGeneration(build_config(recipe, tokenizer))
    # CLIPVisionModel nests its embeddings differently across transformers 5.x releases
    emb = next(m for m in model.modules() if isinstance(m, CLIPVisionEmbeddings)).position_embedding
    with torch.no_grad():
        emb.weight.zero_()  # the CLS position stays zero
        emb.weight[1:] = sincos_2d(recipe.grid, recipe.vision_hidden)
    emb.weight.requires_grad_(False)  # frozen: the grid geometry is given, not learned
    return model


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

