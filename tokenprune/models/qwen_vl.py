"""Qwen2-VL and Qwen2.5-VL: dynamic resolution, 2x2 patch merge, M-RoPE.

The visual tokens are the ``<|image_pad|>`` / ``<|video_pad|>`` positions of the
input ids. Each image (or video) is a (t, h, w) grid of merged patches in raster
order. The grid comes from ``image_grid_thw`` / ``video_grid_thw`` when the
forward receives them; under ``generate()`` (transformers >= 5.23 encodes the
media before the prefill and drops those kwargs) it is read from the M-RoPE
position ids instead, whose (t, h, w) rows are exactly these grid indices plus an
offset. Frames are numbered across all images and videos of a sample.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from .contract import Visuals, raster, visuals_from_blocks
from . import official_inputs, prompts
from .base import VLM
from .qwen_inputs import QWEN2_VIDEO, QwenProcessor, VideoRules
from .video_clip import VideoClip


def _type_runs(row: torch.Tensor, image_id: int, video_id: int) -> list[tuple[int, int, str]]:
    """[start, stop, "image"|"video"] runs of consecutive visual tokens of one kind."""
    out = []
    for i, t in enumerate(row.tolist()):
        kind = "image" if t == image_id else "video" if t == video_id else None
        if kind is None:
            continue
        if out and out[-1][1] == i and out[-1][2] == kind:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1, kind])
    return [tuple(r) for r in out]


class _Grids:
    """Walks image_grid_thw / video_grid_thw rows in prompt order (a video may span several runs)."""

    def __init__(self, kwargs, merge: int):
        self.merge = merge
        self.rows = {k: list(kwargs[f"{k}_grid_thw"].tolist()) if kwargs.get(f"{k}_grid_thw") is not None else None
                     for k in ("image", "video")}
        self.left = {"image": 0, "video": 0}  # frames left in the current item

    def available(self, kind: str) -> bool:
        return self.rows[kind] is not None

    def take(self, kind: str, n: int) -> tuple[int, int, int]:
        """(frames, h, w) of the next ``n`` tokens of ``kind``."""
        if self.left[kind] == 0:
            if not self.rows[kind]:
                raise ValueError(f"more {kind} tokens in the prompt than {kind}_grid_thw rows")
            self.current = getattr(self, "current", {})
            t, h, w = self.rows[kind].pop(0)
            self.current[kind] = (h // self.merge, w // self.merge)
            self.left[kind] = t
        h, w = self.current[kind]
        frames = n // (h * w)
        if frames * h * w != n or frames > self.left[kind]:
            raise ValueError(f"a run of {n} {kind} tokens does not match the {kind} grid ({h} x {w} per frame)")
        self.left[kind] -= frames
        return frames, h, w


def _from_rope(pos: torch.Tensor) -> torch.Tensor:
    """(t, row, col) from the 3 M-RoPE rows [3, n] of one run: rows and cols relative, t counting the
    frames' raster restarts at (0, 0). The temporal row cannot tell frames apart: Qwen2.5-VL's is
    t * second_per_grid_ts * tokens_per_second truncated to an int, equal for neighbours when that
    step is below 1 (a clip sampled above 4 fps, or read as 24 fps when its metadata has no rate)."""
    rows, cols = pos[1] - pos[1].min(), pos[2] - pos[2].min()
    t = torch.cumsum(((rows == 0) & (cols == 0)).long(), dim=0) - 1
    return torch.stack([t, rows, cols], dim=1).cpu()


class Qwen2VLAdapter(VLM):
    """Qwen2-VL (``Qwen2VLForConditionalGeneration``).

    checkpoints: Qwen/Qwen2-VL-2B-Instruct, Qwen/Qwen2-VL-7B-Instruct
    """

    name = "qwen2_vl"
    model_classes = ("Qwen2VLForConditionalGeneration",)
    mrope = True
    timestamps = False  # Qwen3-VL: "<t seconds>" before every frame of a video
    seconds_per_grid = False  # Qwen2.5-VL: second_per_grid_ts for video M-RoPE
    video_defaults: ClassVar[VideoRules] = QWEN2_VIDEO  # the video processor's class defaults

    @classmethod
    def load_processor(cls, checkpoint: str):
        return official_inputs.load_processor(cls.name, checkpoint, lambda: QwenProcessor.from_pretrained(
            checkpoint, video=cls.video_defaults, timestamps=cls.timestamps, seconds_per_grid=cls.seconds_per_grid))

    @classmethod
    def max_visual_tokens(cls, config, preprocessor):
        """Dynamic resolution: at most the image processor's largest pixel count over the pixels of one
        merged patch (``max_pixels``, or ``size.longest_edge`` in the newer format, which max_pixels overrides)."""
        most = preprocessor.get("max_pixels") or (preprocessor.get("size") or {}).get("longest_edge")
        if not most:
            return None
        vc = config.vision_config
        return int(most) // (vc.patch_size * vc.spatial_merge_size) ** 2, False

    @property
    def vision_modules(self):
        return [self.model.model.visual]

    def prepare_generation(self):
        # rope_deltas cached by a previous call must not leak into an independent one
        self.model.model.rope_deltas = None

    def visuals(self, input_ids, kwargs) -> list[Visuals]:
        cfg = self.model.config
        grids = _Grids(kwargs, cfg.vision_config.spatial_merge_size)
        pos = kwargs.get("position_ids")
        rope = pos[-3:] if isinstance(pos, torch.Tensor) and pos.dim() == 3 and pos.shape[0] >= 3 else None
        out = []
        for b, row in enumerate(input_ids):
            blocks, segments, positions, t0, start = [], [], [], 0, 0
            for lo, hi, kind in _type_runs(row, cfg.image_token_id, cfg.video_token_id):
                n = hi - lo
                if grids.available(kind):
                    frames, h, w = grids.take(kind, n)
                    block = raster(h, w, frames, t0=t0)
                elif rope is not None:
                    block = _from_rope(rope[:, b if rope.shape[1] > 1 else 0, lo:hi])
                    frames = int(block[:, 0].max()) + 1
                    block[:, 0] += t0
                else:
                    raise ValueError("cannot place the visual tokens on a grid: the forward got neither "
                                     f"{kind}_grid_thw nor M-RoPE position_ids")
                blocks.append(block)
                positions.append(torch.arange(lo, hi, device=row.device))
                segments.append((kind, start, start + n))
                t0, start = t0 + frames, start + n
            pos_b = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.long, device=row.device)
            out.append(visuals_from_blocks(pos_b, blocks, segments))
        return out

    supports_resize = True  # dynamic resolution: any grid of merged patches

    def build_inputs(self, samples):
        texts, images, videos = [], [], []
        self.native_visual = [] if self.resize_plan is not None else None
        for s in samples:
            imgs, _ = prompts.media(s)
            clip = VideoClip.from_sample(s)
            if self.resize_plan is not None:
                if clip:
                    raise ValueError(f"model adapter {self.name!r}: input resizing handles images, not video "
                                     f"(sample {s.id!r})")
                imgs, native = zip(*(self._resize(im) for im in imgs)) if imgs else ((), ())
                imgs = list(imgs)
                self.native_visual.append(sum(native))
            conv = prompts.user_turn(s.prompt, n_images=len(imgs), n_videos=1 if clip else 0)
            texts.append(prompts.render(self.processor, conv, _qwen_fallback))
            images.append(imgs)
            videos.append([clip] if clip else [])
        inputs = self.processor(texts, images, videos)
        if self.resize_plan is not None and "image_grid_thw" in inputs:
            merge = self.processor.image_processor.merge_size
            got = [int(g.prod()) // merge ** 2 for g in inputs["image_grid_thw"]]
            want = [im.size[0] * im.size[1] // self._factor ** 2 for group in images for im in group]
            if got != want:
                raise ValueError(f"model adapter {self.name!r}: the image processor changed the resized images' "
                                 f"grids ({got} tokens instead of {want}); its min_pixels/max_pixels forbid them")
        return inputs

    @property
    def _factor(self) -> int:
        """Pixels per merged visual token along each side."""
        ip = self.processor.image_processor
        return ip.patch_size * ip.merge_size

    def _resize(self, image):
        """(image resized to the planned grid, its native token count)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        ip, f = self.processor.image_processor, self._factor
        size = ip.size if isinstance(getattr(ip, "size", None), dict) else {}
        lo = size.get("shortest_edge", getattr(ip, "min_pixels", None) or 56 * 56)
        hi = size.get("longest_edge", getattr(ip, "max_pixels", None) or 28 * 28 * 1280)
        height, width = smart_resize(image.height, image.width, factor=f, min_pixels=lo, max_pixels=hi)
        rows, cols = self.resize_plan.grid((height // f, width // f))
        resized = image.convert("RGB").resize((cols * f, rows * f), self.resize_plan.pil_filter)
        return resized, (height // f) * (width // f)


def _qwen_fallback(conversation) -> str:
    return prompts.plain_prompt(conversation, placeholders={"image": "<|vision_start|><|image_pad|><|vision_end|>",
                                                            "video": "<|vision_start|><|video_pad|><|vision_end|>"},
                                before="<|im_start|>user\n", after="<|im_end|>\n<|im_start|>assistant\n")


class Qwen25VLAdapter(Qwen2VLAdapter):
    """Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``); window attention lives in the vision tower only.

    checkpoints: Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct
    """

    name = "qwen2_5_vl"
    model_classes = ("Qwen2_5_VLForConditionalGeneration",)
    seconds_per_grid = True
