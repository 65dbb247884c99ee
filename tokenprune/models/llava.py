"""LLaVA-1.5 (``LlavaForConditionalGeneration``), including the bundled tiny model.

Each image becomes side x side visual tokens (side = image_size / patch_size,
CLS dropped), spliced where the prompt's ``<image>`` tokens are. Several images
in one prompt are frames t = 0, 1, ... of the token grid.
"""
from __future__ import annotations

import inspect

from .contract import Visuals, raster, visuals_from_blocks
from . import prompts
from .base import VLM


def interpolate_positions(tower):
    """A removable hook making the vision tower interpolate its position embeddings for images
    whose size differs from its training size (transformers' ``interpolate_pos_encoding``)."""
    embeddings = getattr(getattr(tower, "vision_model", tower), "embeddings", None)
    if embeddings is None or "interpolate_pos_encoding" not in inspect.signature(embeddings.forward).parameters:
        raise ValueError(f"vision tower {type(tower).__name__} cannot interpolate its position embeddings, "
                         "so it cannot take resized images")
    size = embeddings.image_size

    def hook(module, args, kwargs):
        pixels = args[0] if args else kwargs["pixel_values"]
        if tuple(pixels.shape[-2:]) != (size, size):
            kwargs = {**kwargs, "interpolate_pos_encoding": True}
        return args, kwargs

    return embeddings.register_forward_pre_hook(hook, with_kwargs=True)


class LlavaAdapter(VLM):
    """LLaVA-1.5 and any ``LlavaForConditionalGeneration`` checkpoint (hub id or local directory).

    checkpoints: llava-hf/llava-1.5-7b-hf, llava-hf/llava-1.5-13b-hf, the bundled tiny model
    (tokenprune/zoo), any directory written by ``save_pretrained`` with its processor.
    """

    name = "llava"
    model_classes = ("LlavaForConditionalGeneration",)
    supports_resize = True  # smaller square-patch grids, with the tower's position embeddings interpolated

    @property
    def image_token_id(self) -> int:
        cfg = self.model.config
        return getattr(cfg, "image_token_id", None) or cfg.image_token_index

    def tokens_per_image(self) -> tuple[int, int]:
        """(side, tokens): the patch grid side and the visual tokens one image becomes."""
        return self.image_tokens(self.model.config)

    @staticmethod
    def image_tokens(cfg) -> tuple[int, int]:
        """(side, tokens) of one base image under the model config ``cfg``."""
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        tokens = side * side
        if cfg.vision_feature_select_strategy == "full" and "clip" in cfg.vision_config.model_type:
            tokens += 1  # CLS stays in: it has no place on the grid
        return side, tokens

    @classmethod
    def max_visual_tokens(cls, config, preprocessor):
        return cls.image_tokens(config)[1], True  # a fixed grid: every image is resized to the tower's size

    def check_strategy(self, strategy, who):
        side, tokens = self.tokens_per_image()
        if tokens != side * side:
            raise ValueError(f"{who}: vision_feature_select_strategy 'full' keeps the CLS token, which has no "
                             "grid coordinate; only 'default' is supported")

    def grid_of(self, pixel_values) -> tuple[int, int]:
        """(rows, cols) of the patch grid of images of this pixel size (a resized image has fewer).

        Without pixel values (transformers >= 5.2x encodes images before the prefill) it is the
        grid build_inputs resized to while a resize plan is on, else the native one.
        """
        if pixel_values is None:
            if self.resize_plan is not None and getattr(self, "resized_grid", None):
                return self.resized_grid
            side, _ = self.tokens_per_image()
            return side, side
        patch = self.model.config.vision_config.patch_size
        return pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch

    def visuals(self, input_ids, kwargs) -> list[Visuals]:
        rows, cols = self.grid_of(kwargs.get("pixel_values"))
        per_image = rows * cols
        out = []
        for row in input_ids:
            pos = (row == self.image_token_id).nonzero().flatten()
            if pos.numel() % per_image:
                raise ValueError(f"{pos.numel()} image tokens is not a multiple of {per_image} per image")
            n_images = pos.numel() // per_image
            coords = [raster(rows, cols, 1, t0=k) for k in range(n_images)]
            segments = [(f"image{k}", k * per_image, (k + 1) * per_image) for k in range(n_images)]
            out.append(visuals_from_blocks(pos, coords, segments))
        return out

    def build_inputs(self, samples):
        texts, per_sample = prompts.image_turns(self.processor, samples, prompts.vicuna_fallback, self.name)
        images = [im for group in per_sample for im in group]
        self.native_visual = None
        if self.resize_plan is None or not images:
            return self.processor(images=images or None, text=texts, padding=True, return_tensors="pt")
        side, per_image = self.tokens_per_image()
        rows, cols = self.resized_grid = self.resize_plan.grid((side, side))
        patch = self.model.config.vision_config.patch_size
        # the native pipeline (shortest edge, then centre crop) at the smaller size
        inputs = self.processor(images=images, text=texts, padding=True, return_tensors="pt",
                                size={"shortest_edge": max(rows, cols) * patch},
                                crop_size={"height": rows * patch, "width": cols * patch},
                                resample=self.resize_plan.pil_filter)
        self.native_visual = [per_image * len(group) for group in per_sample]
        return inputs

    def resize_hooks(self):
        return [interpolate_positions(self.model.model.vision_tower)]
