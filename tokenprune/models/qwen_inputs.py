"""Qwen-VL inputs without torchvision: the tokenizer plus the PIL image processor.

transformers' Qwen processors need torchvision (their video processor does).
This small processor does what they do for our purposes: render the chat
template, expand each ``<|image_pad|>`` / ``<|video_pad|>`` to one token per
merged patch, patchify images with ``Qwen2VLImageProcessorPil`` and video
frames with the same processor (frames paired into temporal patches), and
return ``mm_token_type_ids`` (0 text, 1 image, 2 video), which 5.x requires.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature
from transformers.utils import cached_file

IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


def _pil_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil


def _chat_template(checkpoint: str, tokenizer) -> str | None:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    for name in ("chat_template.jinja", "chat_template.json"):
        path = os.path.join(checkpoint, name) if os.path.isdir(checkpoint) else cached_file(
            checkpoint, name, _raise_exceptions_for_missing_entries=False)
        if path and os.path.exists(path):
            text = open(path, encoding="utf-8").read()
            if name.endswith(".json"):
                import json

                text = json.loads(text)["chat_template"]
            return text
    return None


class QwenProcessor:
    """Tokenizer + PIL image processor; ``timestamps``: Qwen3-VL's per-frame "<t seconds>" video prompt."""

    def __init__(self, tokenizer, image_processor, chat_template=None, *, timestamps=False, seconds_per_grid=False):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        self.timestamps = timestamps
        self.seconds_per_grid = seconds_per_grid
        self.tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(cls, checkpoint: str, **kwargs) -> "QwenProcessor":
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        image_processor = _pil_image_processor().from_pretrained(checkpoint)
        return cls(tokenizer, image_processor, _chat_template(checkpoint, tokenizer), **kwargs)

    def save_pretrained(self, path: str):
        if self.chat_template:
            self.tokenizer.chat_template = self.chat_template
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)

    def apply_chat_template(self, conversation, **kwargs):
        return self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template, **kwargs)

    @property
    def merge(self) -> int:
        return self.image_processor.merge_size

    # ------------------------------------------------------------------ media
    def images(self, images: list) -> dict:
        if not images:
            return {}
        out = self.image_processor(images=images, return_tensors="pt")
        return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}

    def video(self, frames: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(patches [t*h*w, C*tp*p*p], grid [t, h, w]) for one clip; frames are paired into temporal patches."""
        tp = self.image_processor.temporal_patch_size
        size = frames[0].size
        frames = [f.convert("RGB").resize(size) for f in frames]
        frames += [frames[-1]] * (-len(frames) % tp)  # pad to whole temporal patches, as Qwen's processor does
        per_frame = [self.image_processor(images=[f], return_tensors="np") for f in frames]
        grid = per_frame[0]["image_grid_thw"][0]
        n = int(grid[1] * grid[2])
        # each image patch holds its frame tp times along the temporal axis: keep one copy per frame
        single = [np.asarray(p["pixel_values"]).reshape(n, -1, tp, self.image_processor.patch_size ** 2)[:, :, 0]
                  for p in per_frame]
        groups = [np.stack(single[i:i + tp], axis=2).reshape(n, -1) for i in range(0, len(single), tp)]
        patches = torch.from_numpy(np.concatenate(groups, axis=0))
        return patches, torch.tensor([len(groups), int(grid[1]), int(grid[2])])

    # ------------------------------------------------------------------ text
    def _expand(self, text: str, image_grids: list, video_grids: list, fps: list) -> str:
        merge2 = self.merge ** 2
        parts, images, videos = [], iter(image_grids), iter(zip(video_grids, fps))
        for piece in _split_keep(text, (IMAGE_PAD, VIDEO_PAD)):
            if piece == IMAGE_PAD:
                grid = next(images)
                parts.append(IMAGE_PAD * int(grid.prod() // merge2))
            elif piece == VIDEO_PAD:
                grid, rate = next(videos)
                per_frame = int(grid[1] * grid[2] // merge2)
                if self.timestamps:
                    tp = self.image_processor.temporal_patch_size
                    parts.append("".join(f"<{(tp * t + (tp - 1) / 2) / rate:.1f} seconds>{VISION_START}"
                                         f"{VIDEO_PAD * per_frame}{VISION_END}" for t in range(int(grid[0]))))
                else:
                    parts.append(VIDEO_PAD * per_frame * int(grid[0]))
            else:
                parts.append(piece)
        return "".join(parts)

    def __call__(self, texts: list[str], images: list[list], videos: list[list], fps: list[list] | None = None):
        """texts[i] holds one placeholder per entry of images[i] / videos[i] (lists of frame lists)."""
        fps = fps or [[1.0] * len(v) for v in videos]
        flat_images = [im for group in images for im in group]
        out = self.images(flat_images)
        image_grids = list(out.get("image_grid_thw", []))
        clips = [self.video(frames) for group in videos for frames in group]
        if clips:
            out["pixel_values_videos"] = torch.cat([c[0] for c in clips])
            out["video_grid_thw"] = torch.stack([c[1] for c in clips])
            if self.seconds_per_grid:
                tp = self.image_processor.temporal_patch_size
                out["second_per_grid_ts"] = torch.tensor([tp / r for group in fps for r in group])
        video_grids = [c[1] for c in clips]
        expanded, i_img, i_vid = [], 0, 0
        for text, ims, vids, rates in zip(texts, images, videos, fps):
            expanded.append(self._expand(text, image_grids[i_img:i_img + len(ims)],
                                         video_grids[i_vid:i_vid + len(vids)], rates))
            i_img, i_vid = i_img + len(ims), i_vid + len(vids)
        enc = self.tokenizer(expanded, padding=True, return_tensors="pt", add_special_tokens=False)
        ids = enc["input_ids"]
        image_id, video_id = (self.tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_PAD, VIDEO_PAD))
        types = torch.zeros_like(ids, dtype=torch.int32)
        types[ids == image_id] = 1
        types[ids == video_id] = 2
        return BatchFeature({**enc, "mm_token_type_ids": types, **out})


def _split_keep(text: str, tokens: tuple[str, ...]) -> list[str]:
    """``text`` split around every occurrence of the given tokens, keeping them as separate pieces."""
    out, i, start = [], 0, 0
    while i < len(text):
        hit = next((t for t in tokens if text.startswith(t, i)), None)
        if hit:
            if start < i:
                out.append(text[start:i])
            out.append(hit)
            i += len(hit)
            start = i
        else:
            i += 1
    if start < len(text):
        out.append(text[start:])
    return out
