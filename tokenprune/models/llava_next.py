"""LLaVA-NeXT / LLaVA-1.6 (``LlavaNextForConditionalGeneration``): anyres base image + crops + newlines.

Each image's tokens: frame 0 = the base image (side x side), frame 1 = the
stitched, unpadded crop grid with a newline token closing every row (column W).
Segments name the two parts per image ("base", "highres"), so strategies that
budget per crop can find them in ctx.extras["visual_segments"].
"""
from __future__ import annotations

import torch

from ..engine.spans import Visuals, finish
from . import anyres
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

    def tokens_per_image(self):
        side, _ = super().tokens_per_image()
        return side, side * side + (1 if self._keeps_cls() else 0)

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

    def _keeps_cls(self) -> bool:
        cfg = self.model.config
        return cfg.vision_feature_select_strategy == "full" and "clip" in cfg.vision_config.model_type

    def num_patches(self, image_sizes) -> list[int]:
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        cfg = self.model.config
        return [image_size_to_num_patches(image_size=s, grid_pinpoints=cfg.image_grid_pinpoints,
                                          patch_size=cfg.vision_config.image_size) for s in image_sizes]

    def image_flags(self, kwargs) -> list[torch.Tensor]:
        """Newline flags of every packed image of the batch, in order."""
        encoded = (kwargs.get("mm_encoder_outputs") or {}).get("image")
        if encoded is not None:
            return [anyres.newline_flags(f, self.model.model.image_newline) for f in encoded.pooler_output]
        if kwargs.get("pixel_values") is None:
            return []
        sizes = kwargs["image_sizes"]
        return anyres.marker_flags(self.model.model.pack_image_features, sizes, self.num_patches(sizes), self.side,
                                   vision_feature_select_strategy=self.model.config.vision_feature_select_strategy)

    def visuals(self, input_ids, kwargs) -> list[Visuals]:
        flags = self.image_flags(kwargs)
        counts = [int((row == self.image_token_id).sum()) for row in input_ids]
        assign = anyres.split_by_sample([int(f.numel()) for f in flags], counts)
        out = []
        for row, items in zip(input_ids, assign):
            blocks, segments, t0, start = [], [], 0, 0
            for k, i in enumerate(items):
                coords, frames, segs = anyres.image_coords(flags[i], self.side, t0)
                blocks.append(coords)
                segments += [(f"{name}{k}" if len(items) > 1 else name, start + a, start + b) for name, a, b in segs]
                t0, start = t0 + frames, start + int(flags[i].numel())
            out.append(finish((row == self.image_token_id).nonzero().flatten(), blocks, segments))
        return out
