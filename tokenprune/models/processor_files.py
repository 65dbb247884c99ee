"""A checkpoint's processor files, found as transformers finds them: the chat template and the
video processor's settings (for the input builders that run without transformers' processors)."""
from __future__ import annotations

import json
import os

from transformers.utils import cached_file

PROCESSOR_CONFIG = "processor_config.json"  # transformers 5 saves every processor part nested in here
VIDEO_CONFIG = "video_preprocessor_config.json"
IMAGE_CONFIG = "preprocessor_config.json"


def checkpoint_file(checkpoint: str, name: str) -> str | None:
    """Path of ``name`` in a local checkpoint folder or the hub cache; None when the checkpoint has none."""
    if os.path.isdir(checkpoint):
        path = os.path.join(checkpoint, name)
    else:
        path = cached_file(checkpoint, name, _raise_exceptions_for_missing_entries=False)
    return path if path and os.path.exists(path) else None


def _json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def chat_template(checkpoint: str, tokenizer) -> str | None:
    """The tokenizer's chat template, else the checkpoint's chat_template.jinja / chat_template.json."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    for name in ("chat_template.jinja", "chat_template.json"):
        path = checkpoint_file(checkpoint, name)
        if path:
            if name.endswith(".json"):
                return _json(path)["chat_template"]
            with open(path, encoding="utf-8") as f:
                return f.read()
    return None


def video_processor_config(checkpoint: str) -> dict:
    """The video processor's settings in transformers' order of precedence: the "video_processor" entry of
    processor_config.json, else video_preprocessor_config.json, else preprocessor_config.json (a checkpoint
    without a video config gets a video processor built from its image processor's config)."""
    path = checkpoint_file(checkpoint, PROCESSOR_CONFIG)
    if path:
        nested = _json(path).get("video_processor")
        if nested is not None:
            return nested
    for name in (VIDEO_CONFIG, IMAGE_CONFIG):
        path = checkpoint_file(checkpoint, name)
        if path:
            return _json(path)
    return {}
