"""The processor files of real hub checkpoints, for tiny offline copies of their processors.

The values are those of the checkpoints' preprocessor_config.json, video_preprocessor_config.json,
processor_config.json and chat templates (named per constant). The hub cannot be reached here: they
were taken from public copies of those files, and the checkpoint each comes from is named with it.
A checkpoint folder written by ``write_checkpoint`` holds them plus a byte-level tokenizer that gives
every character its own id and knows the family's special tokens, so input ids compare text exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Qwen/Qwen2-VL-7B-Instruct: preprocessor_config.json; the repo has no video_preprocessor_config.json,
# so transformers builds its Qwen2VLVideoProcessor from this file too.
QWEN2_VL_PREPROCESSOR = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
}
# Qwen/Qwen2.5-VL-7B-Instruct: the same values, its own processor class (no video config either).
QWEN2_5_VL_PREPROCESSOR = dict(QWEN2_VL_PREPROCESSOR, processor_class="Qwen2_5_VLProcessor")

# Qwen/Qwen2-VL-7B-Instruct and Qwen/Qwen2.5-VL-7B-Instruct: chat_template.json (the same template).
QWEN2_VL_CHAT = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# Qwen/Qwen3-VL-8B-Instruct (the 2B and 4B Instruct checkpoints carry the same files).
QWEN3_VL_PREPROCESSOR = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
}
QWEN3_VL_VIDEO_PREPROCESSOR = {
    "size": {"longest_edge": 25165824, "shortest_edge": 4096}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_sample_frames": True,
    "fps": 2, "min_frames": 4, "max_frames": 768, "resample": 3, "rescale_factor": 1 / 255,
    "processor_class": "Qwen3VLProcessor", "video_processor_type": "Qwen3VLVideoProcessor",
}
# Qwen/Qwen3-VL-8B-Instruct: chat_template.json (the Instruct template: no default system turn)
QWEN3_VL_CHAT = (Path(__file__).parent / "data" / "qwen3_vl_instruct_chat_template.jinja").read_text()

# llava-hf/llava-onevision-qwen2-7b-ov-hf: preprocessor_config.json and processor_config.json
ONEVISION_PINPOINTS = [[h, w] for h in range(384, 2305, 384) for w in range(384, 2305, 384)]
ONEVISION_PREPROCESSOR = {
    "do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True,
    "image_grid_pinpoints": ONEVISION_PINPOINTS, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "LlavaOnevisionImageProcessor", "processor_class": "LlavaOnevisionProcessor",
    "resample": 3, "rescale_factor": 1 / 255, "size": {"height": 384, "width": 384},
}
ONEVISION_PROCESSOR = {"image_token": "<image>", "num_image_tokens": 729, "processor_class": "LlavaOnevisionProcessor",
                       "video_token": "<video>", "vision_feature_select_strategy": "full"}
# its config.json: vision_aspect_ratio "anyres_max_9", SigLIP tower of 384 px in 14 px patches
ONEVISION_ASPECT_RATIO = "anyres_max_9"
ONEVISION_CHAT = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
ONEVISION_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

FAMILIES = {
    "qwen2_vl": {"files": {"preprocessor_config.json": QWEN2_VL_PREPROCESSOR}, "chat": QWEN2_VL_CHAT,
                 "specials": QWEN_SPECIALS},
    "qwen2_5_vl": {"files": {"preprocessor_config.json": QWEN2_5_VL_PREPROCESSOR}, "chat": QWEN2_VL_CHAT,
                   "specials": QWEN_SPECIALS},
    "qwen3_vl": {"files": {"preprocessor_config.json": QWEN3_VL_PREPROCESSOR,
                           "video_preprocessor_config.json": QWEN3_VL_VIDEO_PREPROCESSOR},
                 "chat": QWEN3_VL_CHAT, "specials": QWEN_SPECIALS},
    "llava_onevision": {"files": {"preprocessor_config.json": ONEVISION_PREPROCESSOR,
                                  "processor_config.json": ONEVISION_PROCESSOR},
                        "chat": ONEVISION_CHAT, "specials": ONEVISION_SPECIALS},
}


def byte_tokenizer(specials: list[str]):
    """Byte-level BPE without merges (one id per byte, as Qwen2's tokenizer before merging), the
    specials added as Qwen's are; padding with the first special."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tk = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=specials[0], eos_token=specials[2])
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    return tok


def write_checkpoint(family: str, path) -> Path:
    """A folder with ``family``'s processor files, chat template and a byte-level tokenizer."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    spec = FAMILIES[family]
    for name, values in spec["files"].items():
        (path / name).write_text(json.dumps(values, indent=2))
    (path / "chat_template.json").write_text(json.dumps({"chat_template": spec["chat"]}))
    byte_tokenizer(spec["specials"]).save_pretrained(path)
    return path
