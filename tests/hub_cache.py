"""A local Hugging Face cache holding only the configs of the hub checkpoints the paper grids name,
laid out as huggingface_hub writes it (models--org--name/refs/main -> snapshots/<commit>/...), so the
run's pre-flight reads them offline through the same cache look-up a real run uses.

Each config keeps the fields the pre-flight reads from the real checkpoint (the LLM's depth, the vision
tower's geometry, anyres pinpoints, the image processor's pixel limits); transformers fills the rest
with its defaults, as it does for the real files.
"""
import json
from pathlib import Path

LLAVA_VISION = {"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14}
ANYRES_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

CONFIGS = {
    "llava-hf/llava-1.5-7b-hf": ({"model_type": "llava", "text_config": {"model_type": "llama", "num_hidden_layers": 32},
                                  "vision_config": LLAVA_VISION}, None),
    "llava-hf/llava-1.5-13b-hf": ({"model_type": "llava", "text_config": {"model_type": "llama", "num_hidden_layers": 40},
                                   "vision_config": LLAVA_VISION}, None),
    "llava-hf/llava-v1.6-vicuna-7b-hf": ({"model_type": "llava_next", "image_grid_pinpoints": ANYRES_PINPOINTS,
                                          "text_config": {"model_type": "llama", "num_hidden_layers": 32},
                                          "vision_config": LLAVA_VISION}, None),
    "llava-hf/LLaVA-Video-7B-Qwen2-hf": ({"model_type": "llava_onevision",
                                          "text_config": {"model_type": "qwen2", "num_hidden_layers": 28},
                                          "vision_config": {"model_type": "siglip_vision_model", "image_size": 384,
                                                            "patch_size": 14}}, None),
    "Qwen/Qwen2-VL-7B-Instruct": ({"model_type": "qwen2_vl", "text_config": {"model_type": "qwen2_vl_text",
                                                                             "num_hidden_layers": 28},
                                   "vision_config": {"patch_size": 14, "spatial_merge_size": 2}},
                                  {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "merge_size": 2}),
    "Qwen/Qwen3-VL-4B-Instruct": ({"model_type": "qwen3_vl", "text_config": {"model_type": "qwen3_vl_text",
                                                                             "num_hidden_layers": 36},
                                   "vision_config": {"patch_size": 16, "spatial_merge_size": 2}},
                                  {"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16,
                                   "merge_size": 2}),
}


def put(cache: Path, repo: str, config: dict, preprocessor: dict | None = None, commit: str = "0" * 40):
    """Write ``repo``'s config (and preprocessor config) into the cache folder ``cache``."""
    root = Path(cache) / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    if preprocessor is not None:
        (snapshot / "preprocessor_config.json").write_text(json.dumps(preprocessor))


def offline_cache(monkeypatch, cache: Path, configs=CONFIGS) -> Path:
    """Point huggingface_hub at ``cache``, offline, with ``configs`` in it."""
    from huggingface_hub import constants

    for repo, (config, preprocessor) in configs.items():
        put(cache, repo, config, preprocessor)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache
