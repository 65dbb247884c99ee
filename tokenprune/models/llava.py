"""LLaVA-1.5 (``LlavaForConditionalGeneration``), including the bundled tiny model.

Each image becomes side x side visual tokens (side = image_size / patch_size,
CLS dropped), spliced where the prompt's ``<image>`` tokens are. Several images
in one prompt are frames t = 0, 1, ... of the token grid.
"""
from __future__ import annotations

from ..engine.spans import Visuals, finish, raster
from . import prompts
from .base import VLM


class LlavaAdapter(VLM):
    """LLaVA-1.5 and any ``LlavaForConditionalGeneration`` checkpoint (hub id or local directory).

    checkpoints: llava-hf/llava-1.5-7b-hf, llava-hf/llava-1.5-13b-hf, the bundled tiny model
    (tokenprune/zoo), any directory written by ``save_pretrained`` with its processor.
    """

    name = "llava"
    model_classes = ("LlavaForConditionalGeneration",)

    @property
    def image_token_id(self) -> int:
        cfg = self.model.config
        return getattr(cfg, "image_token_id", None) or cfg.image_token_index

    def tokens_per_image(self) -> tuple[int, int]:
        """(side, tokens): the patch grid side and the visual tokens one image becomes."""
        cfg = self.model.config
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        tokens = side * side
        if cfg.vision_feature_select_strategy == "full" and "clip" in cfg.vision_config.model_type:
            tokens += 1  # CLS stays in: it has no place on the grid
        return side, tokens

    def check_strategy(self, strategy, who):
        side, tokens = self.tokens_per_image()
        if tokens != side * side:
            raise ValueError(f"{who}: vision_feature_select_strategy 'full' keeps the CLS token, which has no "
                             "grid coordinate; only 'default' is supported")

    def visuals(self, input_ids, kwargs) -> list[Visuals]:
        side, per_image = self.tokens_per_image()
        out = []
        for row in input_ids:
            pos = (row == self.image_token_id).nonzero().flatten()
            if pos.numel() % per_image:
                raise ValueError(f"{pos.numel()} image tokens is not a multiple of {per_image} per image")
            n_images = pos.numel() // per_image
            coords = [raster(side, side, 1, t0=k) for k in range(n_images)]
            segments = [(f"image{k}", k * per_image, (k + 1) * per_image) for k in range(n_images)]
            out.append(finish(pos, coords, segments))
        return out

    def build_inputs(self, samples):
        texts, images = [], []
        for s in samples:
            imgs, frames = prompts.media(s)
            if frames:
                raise ValueError(f"model adapter {self.name!r} takes images, not video frames (sample {s.id!r})")
            conv = prompts.user_turn(s.prompt, n_images=len(imgs))
            texts.append(prompts.render(self.processor, conv, prompts.vicuna_fallback))
            images.extend(imgs)
        return self.processor(images=images or None, text=texts, padding=True, return_tensors="pt")
