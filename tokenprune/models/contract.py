"""The engine side of a model adapter: what ``tokenprune.apply`` needs to prune a transformers VLM.

The engine reads a model only through these members (docs/adapters.md describes each one, with the
LLaVA adapter as the worked example). The defaults fit transformers' usual layout
(``model.model.language_model.layers``); a family overrides what differs and implements ``visuals``.
The runner side (loading, input building, timed generation) is :class:`tokenprune.models.base.VLM`,
which extends this class.

Also exported here for adapter authors: :class:`Visuals` (what ``visuals`` returns), ``raster``
(coordinates of a grid in raster order), ``runs`` (runs of True in a mask, e.g. of placeholder tokens)
and ``visuals_from_blocks`` (a sample's ``Visuals`` from its coordinate blocks).
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..engine.spans import Visuals, raster, runs, visuals_from_blocks

__all__ = ["EngineAdapter", "Visuals", "raster", "runs", "visuals_from_blocks"]


class EngineAdapter:
    """One transformers VLM family as the pruning engine sees it.

    Required: ``name`` and ``visuals``. Everything else has a default that fits transformers' usual
    layout; override what your family does differently.

    Attributes set here: ``model`` (the transformers model), ``checkpoint`` (a label for messages),
    ``resize_plan`` and ``native_visual`` (input-stage strategies; see ``supports_resize``).
    """

    name: ClassVar[str] = ""
    mrope: ClassVar[bool] = False  # position ids have 3 rows (t, h, w), as Qwen-VL's M-RoPE
    needs_after_layer: ClassVar[bool] = False  # the engine must call after_layer() on decoder outputs
    supports_resize: ClassVar[bool] = False  # build_inputs can render images at a chosen token grid
    # two-stage strategies: prune_lm_kwargs / after_layer follow a pre_llm cut and then a layer-K cut
    # (called once per point, the second on the survivors' prefill); an adapter that cannot sets False
    supports_two_stage: ClassVar[bool] = True

    def __init__(self, model, checkpoint: str | None = None):
        self.model = model
        self.checkpoint = checkpoint or getattr(model, "name_or_path", "") or type(model).__name__
        # Input-stage strategies: while set (by the engine, an engine.resize.ResizePlan), build_inputs resizes every
        # image to the token grid the plan gives for its native grid, and native_visual holds each
        # sample's visual-token count at native resolution for the last batch built.
        self.resize_plan = None
        self.native_visual: list[int] | None = None

    @property
    def label(self) -> str:
        """How error messages name the model: ``'llava' (llava-hf/llava-1.5-7b-hf)``."""
        return f"{self.name!r} ({self.checkpoint})"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ where things are
    @property
    def vlm_module(self) -> torch.nn.Module:
        """The inner model whose forward receives input ids, pixel inputs and the cache."""
        return self.model.model

    @property
    def language_model(self) -> torch.nn.Module:
        """The LLM: called with ``inputs_embeds``, holds ``layers``, ``norm`` and ``rotary_emb``."""
        return self.model.model.language_model

    @property
    def decoder_layers(self):
        return self.language_model.layers

    @property
    def final_norm(self) -> torch.nn.Module:
        return self.language_model.norm

    @property
    def vision_modules(self) -> list[torch.nn.Module]:
        """Modules whose forward time is the vision encoding (records' ``vision_s``)."""
        return [self.model.model.vision_tower]

    @property
    def text_config(self):
        return self.language_model.config

    @property
    def head_dim(self) -> int:
        cfg = self.text_config
        return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    def attention_of(self, layer) -> torch.nn.Module:
        """The self-attention module of a decoder layer (its config's attention implementation is probed)."""
        return layer.self_attn

    def rotary(self, hidden, position_ids):
        """(cos, sin) for ``position_ids`` from the LLM's own rotary embedding."""
        return self.language_model.rotary_emb(hidden, position_ids)

    # ------------------------------------------------------------------ the visual tokens
    def has_media(self, kwargs: dict) -> bool:
        """Whether a forward call of ``vlm_module`` brings images or video (or their encoded features)."""
        return any(kwargs.get(k) is not None for k in ("pixel_values", "pixel_values_videos", "mm_encoder_outputs"))

    def visuals(self, input_ids: torch.Tensor, kwargs: dict) -> list[Visuals]:  # pragma: no cover - abstract
        """Per sample of ``input_ids`` [B, L]: its visual tokens (``Visuals``: positions, (t, row, col)
        coordinates, grid, segments). ``kwargs`` are the keyword arguments of the prefill call of
        ``vlm_module`` (pixel inputs, grids, position ids, or media ``generate()`` already encoded)."""
        raise NotImplementedError(f"model adapter {self.name!r} does not implement visuals()")

    # ------------------------------------------------------------------ optional hooks
    def check_strategy(self, strategy, who: str) -> None:
        """Refuse, at ``apply``, a strategy this family cannot run: raise an error whose message starts with ``who``."""

    def new_stash(self) -> Any:
        """The adapter's scratch for one pass (a prefill and its decode steps): a fresh object, made at each
        prefill and handed as ``stash=`` to every ``prune_lm_kwargs`` and ``after_layer`` call of that pass."""
        return {}

    def prune_lm_kwargs(self, kwargs: dict, *, stage: str, layer: int | None, outcome, prefill, stash) -> dict:
        """The LLM's keyword arguments at prefill, rewritten for family-specific inputs that must follow the
        pruning (e.g. Qwen3-VL's DeepStack features). ``stage="pre_llm"``: ``outcome`` says what survived;
        ``stage="llm"``: the cut comes at decoder ``layer`` (``outcome`` None). Returns the new kwargs."""
        return kwargs

    def after_layer(self, index: int, output, *, outcome, prefill, stash):
        """With ``needs_after_layer``: called on the output of every decoder layer >= K at prefill once the
        tokens are cut; return a replacement output, or None to keep it."""
        return None

    def resize_hooks(self) -> list:
        """With ``supports_resize``: removable hooks the model needs to run on resized images
        (e.g. position interpolation); the engine removes them with the strategy."""
        return []
