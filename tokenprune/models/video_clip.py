"""A benchmark's video as the processors receive it: the frames it sampled and where they came from.

Benchmarks sample the frames (``Sample.frames``: the protocol's frame count, drawn uniformly) and
may record in ``Sample.meta`` where they came from: ``frame_indices`` (each frame's index in the
source video), ``video_fps`` (the source's frame rate) and, with it, ``video_frames`` (the source's
length). Both input builders hand the frames over as they are, with this metadata
(``video_metadata`` and ``do_sample_frames=False`` for transformers' processors): Qwen3-VL's video
processor would otherwise re-sample at 2 fps, drawing again from frames already drawn (and, with no
frame rate known, reading them as 24 fps: 32 frames become 4). Missing values take transformers'
defaults for frames given without metadata: indices 0..n-1, a length of n, no frame rate (24 fps
where one is needed).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from transformers.image_transforms import normalize, rescale, resize
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ChannelDimension

DEFAULT_FPS = 24.0  # transformers' frame rate for a video whose metadata has none


@dataclass(frozen=True)
class VideoClip:
    frames: tuple
    indices: tuple[int, ...]  # each frame's index in the source video
    fps: float | None  # the source video's frame rate
    total: int  # frames in the source video

    @classmethod
    def from_sample(cls, sample) -> "VideoClip | None":
        frames = tuple(getattr(sample, "frames", None) or ())
        if not frames:
            return None
        meta = getattr(sample, "meta", None) or {}
        indices = tuple(int(i) for i in meta.get("frame_indices", range(len(frames))))
        if len(indices) != len(frames):
            raise ValueError(f"sample {sample.id!r}: meta['frame_indices'] has {len(indices)} entries for "
                             f"{len(frames)} frames")
        fps = meta.get("video_fps")
        if fps and "video_frames" not in meta:  # the sampled rate is frames / length * fps
            raise ValueError(f"sample {sample.id!r}: meta['video_fps'] needs meta['video_frames'], the source "
                             "video's length in frames")
        total = int(meta.get("video_frames", len(frames)))
        return cls(frames, indices, float(fps) if fps else None, total)

    @property
    def rate(self) -> float:
        """Frames per second of the source (timestamps are index / rate)."""
        return self.fps or DEFAULT_FPS

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sampled clip (``VideoMetadata.sampled_fps``; Qwen2.5-VL's temporal scale)."""
        if self.fps is None:
            return DEFAULT_FPS
        return len(self.indices) / self.total * self.fps

    def metadata(self) -> dict:
        """The clip's ``transformers.video_utils.VideoMetadata`` fields."""
        return {"total_num_frames": self.total, "fps": self.fps, "frames_indices": list(self.indices)}


@dataclass(frozen=True)
class FrameNorm:
    """How a video processor turns a frame into pixel values once its size is known (named as in its config)."""

    image_mean: tuple = tuple(OPENAI_CLIP_MEAN)
    image_std: tuple = tuple(OPENAI_CLIP_STD)
    rescale_factor: float = 1 / 255
    resample: int = 3  # PIL bicubic

    def with_config(self, cfg: dict) -> "FrameNorm":
        changes = {key: cfg.get(key) for key in ("rescale_factor", "resample")}
        changes.update({key: tuple(cfg[key]) for key in ("image_mean", "image_std") if cfg.get(key) is not None})
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_config(self) -> dict:
        return {"image_mean": list(self.image_mean), "image_std": list(self.image_std),
                "rescale_factor": self.rescale_factor, "resample": self.resample}

    def pixels(self, frame, height: int, width: int) -> np.ndarray:
        """One frame as [C, H, W] float32: resized, rescaled and normalised by the functions the PIL image
        processors use (the video processors do the same with torchvision, which can round differently)."""
        first = ChannelDimension.FIRST
        array = np.asarray(frame.convert("RGB")).transpose(2, 0, 1)
        array = resize(array, (height, width), resample=self.resample, data_format=first, input_data_format=first)
        array = rescale(array, self.rescale_factor, data_format=first, input_data_format=first)
        return normalize(array, self.image_mean, self.image_std, data_format=first, input_data_format=first)
