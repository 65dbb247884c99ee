"""Full-size VLM architectures built from their configs with random weights (timing needs no trained weights).

Only the shapes matter: LLaVA-1.5-7B (CLIP ViT-L/14-336 + Llama-2-7B, 576 visual tokens),
Qwen2-VL-7B (675M ViT with 2x2 merge + Qwen2-7B), and llava-mid (LLaVA-1.5's layout at a size a
CPU prefills in seconds). A word-level tokenizer stands in for the real one.
"""
from __future__ import annotations

import tempfile

import torch

WORDS = "what is in this image describe the picture how many are there USER ASSISTANT : ? . yes no".split()
QWEN_MEDIA = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _tokenizer(media=("<image>",)):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *media] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": list(media)})
    return fast


LLAVA_15_7B = {  # llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 and Llama-2-7B
    "vision": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   image_size=336, patch_size=14, projection_dim=768),
    "text": dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
}

# LLaVA-1.5's layout at a size whose prefill takes seconds on 2 CPU cores, so that compute, not per-call
# overhead, dominates: the same 24 x 24 grid of 576 visual tokens from a 336-pixel image, a Llama LLM of
# 16 layers, 1024 wide (16 heads of 64, no GQA, FFN 2752 = LLaVA's 11008/4096 ratio, vocabulary 32064),
# and a 4-layer, 384-wide CLIP tower sized so that tower + projector are ~4 % of the prefill FLOPs, as
# CLIP ViT-L is for LLaVA-1.5-7B.
LLAVA_MID = {
    "vision": dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=6,
                   image_size=336, patch_size=14, projection_dim=384),
    "text": dict(vocab_size=32064, hidden_size=1024, intermediate_size=2752, num_hidden_layers=16,
                 num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=4096),
}


def llava_config(sizes, image_token_id: int):
    """The LlavaConfig of a LLaVA-1.5-architecture VLM of these ``sizes`` (no weights)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    return LlavaConfig(vision_config=CLIPVisionConfig(**sizes["vision"]), text_config=LlamaConfig(**sizes["text"]),
                       image_token_id=image_token_id, vision_feature_layer=-2,
                       vision_feature_select_strategy="default", pad_token_id=0)


def llava(dtype=torch.bfloat16, device="cuda", attn_implementation="sdpa", sizes=LLAVA_15_7B,
          name="llava-1.5-7b"):
    """A random-weight LLaVA-1.5-architecture VLM, saved with a processor and loaded through the `llava` adapter."""
    from transformers import LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from ..models.llava import LlavaAdapter

    tok = _tokenizer()
    config = llava_config(sizes, image_token_id=tok.convert_tokens_to_ids("<image>"))
    vision = config.vision_config
    config._attn_implementation = attn_implementation
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype).eval()
    side = vision.image_size
    processor = LlavaProcessor(
        image_processor=LlavaImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tok, patch_size=vision.patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
                       "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} "
                       "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"))
    path = tempfile.mkdtemp(prefix="tokenprune-arch-")
    processor.save_pretrained(path)
    return LlavaAdapter(model, LlavaAdapter.load_processor(path), checkpoint=f"random:{name}")


def llava_15_7b(dtype=torch.bfloat16, device="cuda", attn_implementation="sdpa"):
    """A random-weight LLaVA-1.5-7B."""
    return llava(dtype, device, attn_implementation)


def llava_mid(dtype=torch.float32, device="cpu", attn_implementation="sdpa"):
    """A random-weight mid-size LLaVA-1.5-architecture VLM (LLAVA_MID) for CPU timing."""
    return llava(dtype, device, attn_implementation, sizes=LLAVA_MID, name="llava-mid")


QWEN2_VL_7B = {  # Qwen/Qwen2-VL-7B-Instruct config.json
    "vision": dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2),
    "text": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                 rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}),
}
QWEN_BENCH_IMAGE = (1120, 896)  # width x height: a 40 x 32 grid of merged patches = 1280 visual tokens


def qwen2_vl_7b(dtype=torch.bfloat16, device="cuda", attn_implementation="sdpa", sizes=QWEN2_VL_7B,
                image_size=QWEN_BENCH_IMAGE):
    """A random-weight Qwen2-VL-7B (``sizes``: the config dimensions; tests pass smaller ones)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from ..models.qwen_inputs import QwenProcessor
    from ..models.qwen_vl import Qwen2VLAdapter

    tok = _tokenizer(QWEN_MEDIA)
    ids = {f"{k}_token_id": tok.convert_tokens_to_ids(t) for k, t in
           (("vision_start", "<|vision_start|>"), ("vision_end", "<|vision_end|>"), ("image", "<|image_pad|>"),
            ("video", "<|video_pad|>"))}
    config = Qwen2VLConfig(vision_config=dict(sizes["vision"]), text_config=dict(sizes["text"]), **ids)
    config._attn_implementation = attn_implementation
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype).eval()
    factor = sizes["vision"]["patch_size"] * sizes["vision"]["spatial_merge_size"]
    image_processor = Qwen2VLImageProcessorPil(patch_size=sizes["vision"]["patch_size"],
                                               merge_size=sizes["vision"]["spatial_merge_size"],
                                               temporal_patch_size=sizes["vision"]["temporal_patch_size"],
                                               min_pixels=4 * factor * factor, max_pixels=16384 * factor * factor)
    chat = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}"
            "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
            "{% endif %}")
    vlm = Qwen2VLAdapter(model, QwenProcessor(tok, image_processor, chat), checkpoint="random:qwen2-vl-7b")
    vlm.bench_image_size = image_size
    return vlm


ARCHS = {"llava-1.5-7b": llava_15_7b, "llava-mid": llava_mid, "qwen2-vl-7b": qwen2_vl_7b}
SHAPES = {"llava-1.5-7b": LLAVA_15_7B, "llava-mid": LLAVA_MID}  # the LLaVA-layout archs, by their config sizes


def config_of(name: str):
    """The config (no weights) of the LLaVA-layout architecture ``name``."""
    from ..errors import ConfigError

    if name not in SHAPES:
        raise ConfigError(f"--arch {name!r}: the model shape is known for {', '.join(SHAPES)}")
    return llava_config(SHAPES[name], image_token_id=_tokenizer().convert_tokens_to_ids("<image>"))
