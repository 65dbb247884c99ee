"""LLaVA-NeXT / LLaVA-1.6 (``LlavaNextForConditionalGeneration``): anyres base image + crops + newlines.

Each image's tokens: frame 0 = the base image (side x side), frame 1 = the
stitched, unpadded crop grid with a newline token closing every row (column W).
Segments name the two parts per image ("base", "highres"; "base0", "highres0", ...
with several images), so strategies that budget per crop can find them in
ctx.extras["visual_segments"]. The layout is read off the model's own packing
(anyres.py); LLaVA-OneVision extends this with video.
"""
from __future__ import annotations

import torch

from . import anyres
from .contract import Visuals, runs, visuals_from_blocks
from .llava import LlavaAdapter


class LlavaNextAdapter(LlavaAdapter):
    """LLaVA-NeXT (LLaVA-1.6) checkpoints.

    checkpoints: llava-hf/llava-v1.6-vicuna-7b-hf, llava-hf/llava-v1.6-mistral-7b-hf
    """

    name = "llava_next"
    model_classes = ("LlavaNextForConditionalGeneration",)
    supports_resize = False  # anyres tiling decides the token count; a resize plan would fight it

    @property
    def side(self) -> int:
        vc = self.model.config.vision_config
        return vc.image_size // vc.patch_size

    @property
    def video_token_id(self) -> int | None:
        """The video placeholder id: None, LLaVA-NeXT takes images only (a family with video sets it and
        implements ``video_coords(n, t0) -> (coords, frames)`` for a run of n video tokens)."""
        return None

    @classmethod
    def max_visual_tokens(cls, config, preprocessor):
        """At most: the base grid, plus the largest crop grid of ``image_grid_pinpoints`` with a newline
        closing each row (unpadding and OneVision's downsampling only remove tokens)."""
        side, base = cls.image_tokens(config)
        if base != side * side:
            return None  # CLS kept: refused by check_strategy anyway
        size = config.vision_config.image_size
        crops = max((h // size * side) * (w // size * side + 1) for h, w in config.image_grid_pinpoints)
        return base + crops, False

    def num_patches(self, image_sizes, batch_num_images=None) -> list[int]:
        """Crops + base image of each image (``batch_num_images``: images per sample, where a family's rule
        depends on it)."""
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        cfg = self.model.config
        return [image_size_to_num_patches(image_size=s, grid_pinpoints=cfg.image_grid_pinpoints,
                                          patch_size=cfg.vision_config.image_size) for s in image_sizes]

    def pack_kwargs(self) -> dict:
        """The family's own arguments of ``pack_image_features`` besides the features and sizes."""
        return {"vision_feature_select_strategy": self.model.config.vision_feature_select_strategy}

    def marker_flags(self, image_sizes, batch_num_images=None) -> list[torch.Tensor]:
        """Newline flags of the model's packing of images of these sizes (no vision tower runs)."""
        return anyres.marker_flags(self.model.model.pack_image_features, image_sizes,
                                   self.num_patches(image_sizes, batch_num_images), self.side, **self.pack_kwargs())

    def image_flags(self, kwargs) -> list[torch.Tensor]:
        """Newline flags of every packed image of the batch, in order: read off the features generate()
        already packed, else from the model's packing of the images' sizes."""
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("image")
        if encoded is not None:
            return [anyres.newline_flags(f, self.model.model.image_newline) for f in encoded.pooler_output]
        if kwargs.get("pixel_values") is None:
            return []
        return self.marker_flags(kwargs["image_sizes"], kwargs.get("batch_num_images"))

    def visuals(self, input_ids, kwargs) -> list[Visuals]:
        flags = self.image_flags(kwargs)
        counts = [int((row == self.image_token_id).sum()) for row in input_ids]
        assign = anyres.split_by_sample([int(f.numel()) for f in flags], counts)
        return [self._sample_visuals(row, [flags[i] for i in items]) for row, items in zip(input_ids, assign)]

    def _sample_visuals(self, row: torch.Tensor, flags: list[torch.Tensor]) -> Visuals:
        """One sample's images (and videos) in prompt order, each image ``flags[k]``'s packed tokens;
        several images name their segments "base0", "highres0", "base1", ..."""
        media_ids = [t for t in (self.image_token_id, self.video_token_id) if t is not None]
        visual = torch.isin(row, torch.tensor(media_ids, device=row.device))
        ids, images = row.tolist(), iter(enumerate(flags))
        blocks, segments, t0, start = [], [], 0, 0
        for lo, hi in runs(visual):
            i = lo
            while i < hi:  # a run may hold several images back to back, or a video
                if ids[i] == self.image_token_id:
                    k, f = next(images)
                    n = int(f.numel())
                    coords, frames, segs = anyres.image_coords(f, self.side, t0)
                    segments += [(f"{name}{k}" if len(flags) > 1 else name, start + a, start + b)
                                 for name, a, b in segs]
                else:
                    n = next((j for j in range(i, hi) if ids[j] != ids[i]), hi) - i
                    coords, frames = self.video_coords(n, t0)
                    segments.append(("video", start, start + n))
                blocks.append(coords)
                t0, start, i = t0 + frames, start + n, i + n
        return visuals_from_blocks(visual.nonzero().flatten(), blocks, segments)
