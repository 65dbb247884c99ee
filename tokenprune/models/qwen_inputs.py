"""Qwen-VL inputs without torchvision: the tokenizer, the PIL image processor and the video processor's rules.

transformers' Qwen processors need torchvision (their video processors do). This builder gives the
same inputs: it renders the chat template, expands each ``<|image_pad|>`` to one token per merged
patch and each ``<|video_pad|>`` likewise (Qwen3-VL: one ``<t seconds><|vision_start|>...<|vision_end|>``
block per temporal patch), patchifies images with ``Qwen2VLImageProcessorPil`` and videos as the
family's video processor does, with the settings of the checkpoint's video processor config, and
returns ``mm_token_type_ids`` (0 text, 1 image, 2 video), which 5.x requires. Video frames are
resized with PIL, so their pixel values can differ from torchvision's by rounding; grids, token
counts and text are the official ones.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import numpy as np
import torch
from transformers import BatchFeature

from .input_builder import BuilderProcessor, expand_placeholders
from .processor_files import VIDEO_CONFIG, video_processor_config
from .video_clip import FrameNorm, VideoClip

IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


def _pil_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil


@dataclass(frozen=True)
class VideoRules:
    """The settings of a Qwen video processor that decide its output (named as in its config)."""

    processor_type: str
    min_pixels: int  # size["shortest_edge"]
    max_pixels: int  # size["longest_edge"]
    patch_size: int
    temporal_patch_size: int = 2
    merge_size: int = 2
    norm: FrameNorm = FrameNorm()
    joint: bool = False  # Qwen3-VL sizes a clip over frames x height x width, Qwen2-VL each frame alone

    def with_config(self, cfg: dict) -> "VideoRules":
        """These defaults overridden by a video processor config (``size``, or Qwen2-VL's legacy min/max_pixels)."""
        size = dict(cfg.get("size") or {})
        changes = {"min_pixels": cfg.get("min_pixels", size.get("shortest_edge")),
                   "max_pixels": cfg.get("max_pixels", size.get("longest_edge"))}
        for key in ("patch_size", "temporal_patch_size", "merge_size"):
            changes[key] = cfg.get(key)
        changes["norm"] = self.norm.with_config(cfg)
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def load(cls, checkpoint: str, defaults: "VideoRules") -> "VideoRules":
        return defaults.with_config(video_processor_config(checkpoint))

    def to_config(self) -> dict:
        """The settings as a video_preprocessor_config.json that transformers reads back to the same processor."""
        return {"video_processor_type": self.processor_type,
                "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
                "patch_size": self.patch_size, "temporal_patch_size": self.temporal_patch_size,
                "merge_size": self.merge_size, **self.norm.to_config()}

    def frame_size(self, frames: int, height: int, width: int) -> tuple[int, int]:
        """(height, width) every frame of a ``frames``-frame clip is resized to: the video processor's smart_resize."""
        factor = self.patch_size * self.merge_size
        if self.joint:
            from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as clip_resize

            if frames < self.temporal_patch_size:
                raise ValueError(f"a Qwen3-VL video needs at least {self.temporal_patch_size} frames "
                                 f"(its video processor refuses fewer); got {frames}")
            return clip_resize(frames, height, width, temporal_factor=self.temporal_patch_size, factor=factor,
                               min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        return smart_resize(height, width, factor=factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) in patches of a ``frames``-frame clip: the last frame repeats up to whole temporal patches."""
        resized_height, resized_width = self.frame_size(frames, height, width)
        temporal = -(-frames // self.temporal_patch_size)
        return temporal, resized_height // self.patch_size, resized_width // self.patch_size

    def pixels(self, clip: VideoClip) -> tuple[torch.Tensor, torch.Tensor]:
        """(patches [t*h*w, C*tp*p*p], grid [t, h, w]): frames resized, rescaled, normalised, then patchified
        with the last frame repeated up to whole temporal patches, in the video processor's layout."""
        first = clip.frames[0]
        height, width = self.frame_size(len(clip.frames), first.height, first.width)
        video = np.stack([self.norm.pixels(f, height, width) for f in clip.frames])
        video = np.concatenate([video, np.repeat(video[-1:], -len(video) % self.temporal_patch_size, axis=0)])
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        gt, gh, gw = len(video) // tp, height // p, width // p
        patches = video.reshape(gt, tp, video.shape[1], gh // m, m, p, gw // m, m, p)
        # (t, h/m, w/m, m, m, C, tp, p, p): Qwen2VLVideoProcessor.patchify's order
        patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gt * gh * gw, -1)
        return torch.from_numpy(np.ascontiguousarray(patches)), torch.tensor([gt, gh, gw])


# The video processors' class defaults, for keys a checkpoint's config leaves out.
QWEN2_VIDEO = VideoRules("Qwen2VLVideoProcessor", min_pixels=128 * 28 * 28, max_pixels=28 * 28 * 768, patch_size=14)
QWEN3_VIDEO = VideoRules("Qwen3VLVideoProcessor", min_pixels=128 * 32 * 32, max_pixels=32 * 32 * 768, patch_size=16,
                         norm=FrameNorm(image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)), joint=True)


def frame_timestamps(indices, fps: float, temporal_patch_size: int) -> list[float]:
    """Qwen3-VL's seconds per temporal patch: the indices padded with the last one to whole patches,
    each patch at the mean time of its first and last frame (``Qwen3VLProcessor._calculate_timestamps``)."""
    indices = list(indices) + [indices[-1]] * (-len(indices) % temporal_patch_size)
    seconds = [i / fps for i in indices]
    tp = temporal_patch_size
    return [(seconds[i] + seconds[i + tp - 1]) / 2 for i in range(0, len(seconds), tp)]


class QwenProcessor(BuilderProcessor):
    """Tokenizer + PIL image processor + video rules. ``timestamps``: Qwen3-VL's per-patch "<t seconds>"
    prompt; ``seconds_per_grid``: Qwen2.5-VL's ``second_per_grid_ts``."""

    def __init__(self, tokenizer, image_processor, chat_template=None, *, video: VideoRules = QWEN2_VIDEO,
                 timestamps=False, seconds_per_grid=False):
        super().__init__(tokenizer, image_processor, chat_template)
        self.video_rules = video
        self.timestamps = timestamps
        self.seconds_per_grid = seconds_per_grid

    @classmethod
    def from_pretrained(cls, checkpoint: str, *, video: VideoRules = QWEN2_VIDEO, **kwargs) -> "QwenProcessor":
        return cls(*cls.load_parts(checkpoint, _pil_image_processor()), video=VideoRules.load(checkpoint, video),
                   **kwargs)

    def save_pretrained(self, path: str):
        super().save_pretrained(path)
        with open(os.path.join(path, VIDEO_CONFIG), "w", encoding="utf-8") as f:
            json.dump(self.video_rules.to_config(), f, indent=2)

    # ------------------------------------------------------------------ text
    def _video_text(self, grid: torch.Tensor, clip: VideoClip) -> str:
        per_frame = VIDEO_PAD * int(grid[1] * grid[2] // self.video_rules.merge_size ** 2)
        if not self.timestamps:
            return per_frame * int(grid[0])
        seconds = frame_timestamps(clip.indices, clip.rate, self.video_rules.temporal_patch_size)
        return "".join(f"<{t:.1f} seconds>{VISION_START}{per_frame}{VISION_END}" for t in seconds[:int(grid[0])])

    def _expand(self, text: str, image_grids: list, video_grids: list, clips: list[VideoClip]) -> str:
        merge2 = self.image_processor.merge_size ** 2
        images, videos = iter(image_grids), iter(zip(video_grids, clips))
        return expand_placeholders(text, {IMAGE_PAD: lambda: IMAGE_PAD * int(next(images).prod() // merge2),
                                          VIDEO_PAD: lambda: self._video_text(*next(videos))})

    def __call__(self, texts: list[str], images: list[list], videos: list[list[VideoClip]]) -> BatchFeature:
        """texts[i] holds one placeholder per entry of images[i] / videos[i]."""
        out = {}
        flat_images = [im for group in images for im in group]
        if flat_images:
            enc = self.image_processor(images=flat_images, return_tensors="pt")
            out = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
        image_grids = list(out.get("image_grid_thw", []))
        clips = [clip for group in videos for clip in group]
        encoded = [self.video_rules.pixels(clip) for clip in clips]
        if encoded:
            out["pixel_values_videos"] = torch.cat([e[0] for e in encoded])
            out["video_grid_thw"] = torch.stack([e[1] for e in encoded])
            if self.seconds_per_grid:
                out["second_per_grid_ts"] = torch.tensor(
                    [self.video_rules.temporal_patch_size / clip.sampled_fps for clip in clips])
        video_grids = [e[1] for e in encoded]
        expanded, i_img, i_vid = [], 0, 0
        for text, ims, vids in zip(texts, images, videos):
            expanded.append(self._expand(text, image_grids[i_img:i_img + len(ims)],
                                         video_grids[i_vid:i_vid + len(vids)], clips[i_vid:i_vid + len(vids)]))
            i_img, i_vid = i_img + len(ims), i_vid + len(vids)
        enc = self.tokenize(expanded)
        ids = enc["input_ids"]
        image_id, video_id = (self.tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_PAD, VIDEO_PAD))
        types = torch.zeros_like(ids, dtype=torch.int32)
        types[ids == image_id] = 1
        types[ids == video_id] = 2
        return BatchFeature({**enc, "mm_token_type_ids": types, **out})

