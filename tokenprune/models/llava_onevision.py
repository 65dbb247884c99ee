"""LLaVA-OneVision / LLaVA-Video (``LlavaOnevisionForConditionalGeneration``): anyres images and videos.

Images: as LLaVA-NeXT (base frame + stitched crop grid with newlines; OneVision
may downsample a large crop grid, which the model's own packing decides).
Several images in one prompt are not cropped (the model's rule).
Videos: every frame is pooled to ceil(side/2) x ceil(side/2) tokens; frames are
t = 0..F-1 of the grid, and one newline token closes the video (placed one
column past the last row of the last frame).

Inputs come from transformers' OneVision processor where torchvision is importable, else from
``OnevisionProcessor`` (tokenizer + PIL image processor + the video processor's settings), whose
placeholder count per image comes from the model's own packing (see official_inputs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import BatchFeature

from .contract import raster
from . import anyres, official_inputs, prompts
from .input_builder import BuilderProcessor, expand_placeholders
from .llava_next import LlavaNextAdapter
from .processor_files import video_processor_config
from .video_clip import FrameNorm, VideoClip


@dataclass(frozen=True)
class FrameRules:
    """``LlavaOnevisionVideoProcessor``'s settings: every frame resized to height x width, then normalised
    (its class defaults, overridden by the checkpoint's video processor config)."""

    height: int = 384
    width: int = 384
    norm: FrameNorm = FrameNorm()

    @classmethod
    def load(cls, checkpoint: str) -> "FrameRules":
        cfg = video_processor_config(checkpoint)
        size = cfg.get("size") or {}
        return cls(size.get("height", cls.height), size.get("width", cls.width), cls.norm.with_config(cfg))

    def pixels(self, clip: VideoClip) -> torch.Tensor:
        """[F, C, H, W] for one clip."""
        return torch.from_numpy(np.stack([self.norm.pixels(f, self.height, self.width) for f in clip.frames]))


class OnevisionProcessor(BuilderProcessor):
    """Tokenizer + PIL image processor (+ chat template and frame rules); the number of tokens per image
    comes from the caller (the model's packing)."""

    def __init__(self, tokenizer, image_processor, chat_template=None, frames: FrameRules | None = None):
        super().__init__(tokenizer, image_processor, chat_template)
        self.frame_rules = frames or FrameRules()

    @classmethod
    def from_pretrained(cls, checkpoint: str):
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil,
        )

        return cls(*cls.load_parts(checkpoint, LlavaOnevisionImageProcessorPil), FrameRules.load(checkpoint))

    def __call__(self, texts: list[str], images: list[list], videos: list[list[VideoClip]], *,
                 count_image_tokens, pooled: int) -> BatchFeature:
        """texts[i] holds one placeholder per entry of images[i] / videos[i]; ``count_image_tokens(pixel
        inputs, images per sample)`` gives each image's token count, ``pooled`` a frame's pooled side."""
        out = {}
        per_sample = [len(g) for g in images]
        if any(per_sample):
            enc = self.image_processor(images=[g for g in images if g], return_tensors="pt")
            out = {"pixel_values": enc["pixel_values"], "image_sizes": enc["image_sizes"]}
            if any(n > 1 for n in per_sample):
                out["batch_num_images"] = torch.tensor([n for n in per_sample if n])
        image_counts = iter(count_image_tokens(out, per_sample))
        clips = [clip for group in videos for clip in group]
        frames = [self.frame_rules.pixels(c) for c in clips]
        if frames:
            if len({f.shape for f in frames}) > 1:
                raise ValueError("videos of one batch must have the same number of frames")
            out["pixel_values_videos"] = torch.stack(frames)
        clip_frames = iter(len(c.frames) for c in clips)
        expansions = {"<image>": lambda: "<image>" * next(image_counts),
                      "<video>": lambda: "<video>" * (next(clip_frames) * pooled ** 2 + 1)}
        expanded = [expand_placeholders(text, expansions) for text in texts]
        return BatchFeature({**self.tokenize(expanded), **out})


class LlavaOnevisionAdapter(LlavaNextAdapter):
    """LLaVA-OneVision and LLaVA-Video checkpoints (images and videos).

    checkpoints: llava-hf/llava-onevision-qwen2-0.5b-ov-hf, llava-hf/llava-onevision-qwen2-7b-ov-hf,
    llava-hf/LLaVA-Video-7B-Qwen2-hf
    """

    name = "llava_onevision"
    model_classes = ("LlavaOnevisionForConditionalGeneration",)

    @classmethod
    def load_processor(cls, checkpoint: str):
        return official_inputs.load_processor(cls.name, checkpoint,
                                              lambda: OnevisionProcessor.from_pretrained(checkpoint))

    @property
    def video_token_id(self) -> int:
        return self.model.config.video_token_id

    @property
    def pooled(self) -> int:
        return math.ceil(self.side / 2)

    def _need_patching(self, n_images: int, batch_num_images) -> list[bool]:
        if batch_num_images is None:
            return [True] * n_images
        return [int(n) == 1 for n in batch_num_images for _ in range(int(n))]

    def num_patches(self, image_sizes, batch_num_images=None) -> list[int]:
        counts = super().num_patches(image_sizes)
        return [c if p else 1 for c, p in zip(counts, self._need_patching(len(counts), batch_num_images))]

    def pack_kwargs(self) -> dict:
        return {"vision_aspect_ratio": self.model.config.vision_aspect_ratio}

    def video_coords(self, n: int, t0: int) -> tuple[torch.Tensor, int]:
        p = self.pooled
        frames, rest = divmod(n - 1, p * p)
        if rest or frames < 1:
            raise ValueError(f"{n} video tokens is not F x {p} x {p} + 1 newline")
        coords = torch.cat([raster(p, p, frames, t0), torch.tensor([[t0 + frames - 1, p - 1, p]])])
        return coords, frames

    # ------------------------------------------------------------------ inputs
    def _image_token_counts(self, pixel: dict, per_sample: list[int]) -> list[int]:
        if not pixel:
            return []
        flags = self.marker_flags(pixel["image_sizes"], [n for n in per_sample if n])
        return [int(f.numel()) for f in flags]

    def build_inputs(self, samples):
        texts, images, videos = [], [], []
        for s in samples:
            imgs, _ = prompts.media(s)
            clip = VideoClip.from_sample(s)
            conv = prompts.user_turn(s.prompt, n_images=len(imgs), n_videos=1 if clip else 0)
            texts.append(prompts.render(self.processor, conv, prompts.vicuna_fallback))
            images.append(imgs)
            videos.append([clip] if clip else [])
        return self.processor(texts, images, videos, count_image_tokens=self._image_token_counts, pooled=self.pooled)
