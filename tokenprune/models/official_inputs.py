"""Which processor builds a model's inputs: transformers' own, or tokenprune's builder.

The Qwen-VL and LLaVA-OneVision processors of transformers need torchvision (their video
processors do). Where torchvision is importable they are used as they are; elsewhere tokenprune's
builders (``qwen_inputs.QwenProcessor``, ``llava_onevision.OnevisionProcessor``) give the same
input ids, grids and text, with pixel values from the PIL image processors. The environment
variable ``TOKENPRUNE_INPUT_BUILDER`` chooses: ``auto`` (the default: official where importable),
``official`` (an error without torchvision) or ``tokenprune``. A run records the builder each
cell used as ``environment.input_builder`` in its metrics.json.
"""
from __future__ import annotations

import os
from typing import Callable

from ..errors import ConfigError

ENV = "TOKENPRUNE_INPUT_BUILDER"
CHOICES = ("auto", "official", "tokenprune")


def use_official(family: str) -> bool:
    """Whether ``family``'s transformers processor builds the inputs (see the module doc)."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ConfigError(f"{ENV}={choice!r}: use one of {', '.join(CHOICES)}")
    if choice == "tokenprune":
        return False
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return True
    if choice == "official":
        raise ConfigError(f"{ENV}=official: transformers' {family} processor needs torchvision, which is not "
                          f"importable here; install it, or set {ENV}=tokenprune (or auto)")
    return False


def load_processor(family: str, checkpoint: str, build: Callable[[], object]):
    """``checkpoint``'s transformers processor (as an OfficialProcessor) where ``use_official(family)``,
    else ``build()``: tokenprune's builder for it."""
    if use_official(family):
        return OfficialProcessor.from_pretrained(checkpoint)
    return build()


class OfficialProcessor:
    """A transformers processor behind the builders' call ``(texts, images, videos) -> BatchFeature``:
    images[i] and videos[i] are sample i's images and ``VideoClip`` s; frames are passed as sampled,
    with their metadata (``do_sample_frames=False``)."""

    input_builder = "official"

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        self.tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(cls, checkpoint: str) -> "OfficialProcessor":
        from transformers import AutoProcessor

        return cls(AutoProcessor.from_pretrained(checkpoint))

    @property
    def chat_template(self):
        return self.processor.chat_template

    def apply_chat_template(self, conversation, **kwargs):
        return self.processor.apply_chat_template(conversation, **kwargs)

    def save_pretrained(self, path: str):
        self.processor.save_pretrained(path)

    def __call__(self, texts: list[str], images: list[list], videos: list[list], **_):
        kwargs = {}
        groups = [group for group in images if group]
        if groups:
            kwargs["images"] = groups  # nested per sample: OneVision counts a sample's images (batch_num_images)
        clips = [clip for group in videos for clip in group]
        if clips:
            kwargs.update(videos=[list(c.frames) for c in clips], video_metadata=[c.metadata() for c in clips],
                          do_sample_frames=False)
        return self.processor(text=texts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
