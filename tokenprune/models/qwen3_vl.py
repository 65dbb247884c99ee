"""Qwen3-VL: Qwen2-VL's grid and M-RoPE, plus DeepStack and per-frame video timestamps.

DeepStack adds vision features to the visual positions of the hidden states
after each of the first ``len(deepstack_visual_indexes)`` decoder layers, using
a mask over the full prompt. After pruning, those additions must land on the
kept tokens only:
  * pre_llm: the mask and the per-layer features are cut to the kept tokens
    before the LLM runs;
  * llm at a layer K inside the DeepStack layers: the LLM gets only the first K
    feature sets (its own loop adds them to the full sequence), and the engine
    adds the rest to the kept tokens after layers K, K+1, ... using the model's
    own ``_deepstack_process``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .qwen_inputs import QWEN3_VIDEO
from .qwen_vl import Qwen2VLAdapter


@dataclass
class DeepStackStash:
    """One pass's DeepStack state: the feature sets the engine still has to add after layers K, K+1, ...
    (llm stage), and the kept tokens' mask and feature rows, computed once per pass."""

    features: list | None = None
    kept: tuple[torch.Tensor, torch.Tensor] | None = None


class Qwen3VLAdapter(Qwen2VLAdapter):
    """Qwen3-VL (``Qwen3VLForConditionalGeneration``), dense LLM.

    checkpoints: Qwen/Qwen3-VL-2B-Instruct, Qwen/Qwen3-VL-4B-Instruct, Qwen/Qwen3-VL-8B-Instruct
    """

    name = "qwen3_vl"
    model_classes = ("Qwen3VLForConditionalGeneration",)
    timestamps = True
    video_defaults = QWEN3_VIDEO  # sizes a clip over frames x height x width
    needs_after_layer = True

    def new_stash(self) -> DeepStackStash:
        return DeepStackStash()

    def _kept(self, outcome, prefill):
        """(visual mask over the kept slots [B, L'], rows of the kept tokens in DeepStack's flat order)."""
        layout = outcome.layout
        mask = torch.zeros_like(layout.src, dtype=torch.bool)
        rows, offset = [], 0
        for b, v in enumerate(prefill.visuals):
            kept = outcome.kept_visual[b].to(layout.src.device)
            if v.n:
                kept_pos = v.positions.to(layout.src.device)[kept]
                mask[b] = torch.isin(layout.src[b], kept_pos) & layout.live()[b]
                rows.append(kept + offset)
            offset += v.n
        return mask, torch.cat(rows)

    def prune_lm_kwargs(self, kwargs, *, stage, layer, outcome, prefill, stash):
        deep = kwargs.get("deepstack_visual_embeds")
        if deep is None:
            return kwargs
        total = sum(v.n for v in prefill.visuals)
        if kwargs["visual_pos_masks"].sum() != total or any(d.shape[0] != total for d in deep):
            raise ValueError("DeepStack's visual mask does not match the image/video tokens of the prompt")
        if stage == "pre_llm":
            mask, rows = self._kept(outcome, prefill)
            kwargs["visual_pos_masks"] = mask
            kwargs["deepstack_visual_embeds"] = [d[rows.to(d.device)] for d in deep]
        elif layer < len(deep):
            stash.features = deep
            kwargs["deepstack_visual_embeds"] = deep[:layer]
        return kwargs

    def after_layer(self, index, hidden, *, outcome, prefill, stash):
        deep = stash.features
        if deep is None or index >= len(deep) or outcome is None:
            return None
        if stash.kept is None:
            stash.kept = self._kept(outcome, prefill)
        mask, rows = stash.kept
        return self.language_model._deepstack_process(hidden, mask, deep[index][rows.to(deep[index].device)])
