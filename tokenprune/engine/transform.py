"""Rewriting the keyword arguments a model hands to its LLM and decoder layers after pruning.

Decoder layers in transformers 5.x receive ``hidden_states`` plus
``attention_mask`` (None, a 2-D padding mask or a 4-D mask), ``position_ids``
(2-D text positions, or None) and ``position_embeddings`` = (cos, sin) of shape
[B|1, L, head_dim], all shared by every layer. At prefill they are gathered to
the kept slots; while decoding only the key axis of the mask changes (layers
>= K cache fewer keys than layer 0, from which the model sizes its masks).
:class:`Rewriter` applies these to the LLM's call (pre_llm pruning) and to every
decoder layer >= K (llm pruning); the position ids come from the handle's
position policy (positions.py).
"""
from __future__ import annotations

import torch

from . import layout as lay
from .layout import Layout

MASK_FORMATS = {"sdpa": "bool", "eager": "float"}


def mask_format(attn_implementation: str | None) -> str:
    impl = attn_implementation or "eager"
    if impl in MASK_FORMATS:
        return MASK_FORMATS[impl]
    if impl.startswith("flash_attention"):
        return "2d"
    raise ValueError(f"attention implementation {impl!r} is not supported by the pruning engine "
                     "(use 'sdpa' or 'eager'; flash attention is accepted but untested)")


def positions(pos: torch.Tensor | None, layout: Layout) -> torch.Tensor | None:
    """Gather position ids [B|1, L] or [R, B|1, L] (M-RoPE rows) to the kept slots."""
    if pos is None:
        return None
    if pos.dim() == 2:
        return lay.take(pos, layout.src, batch_dim=0, seq_dim=1)
    if pos.dim() == 3:
        return lay.take(pos, layout.src, batch_dim=1, seq_dim=2)
    raise ValueError(f"position_ids of shape {list(pos.shape)} are not supported")


def rotary(pe, layout: Layout):
    """Gather (cos, sin), each [B|1, L, d] (or [R, B|1, L, d]), to the kept slots."""
    if pe is None:
        return None
    out = []
    for t in pe:
        if t.dim() == 3:
            out.append(lay.take(t, layout.src, batch_dim=0, seq_dim=1))
        elif t.dim() == 4:
            out.append(lay.take(t, layout.src, batch_dim=1, seq_dim=2))
        else:
            raise ValueError(f"position_embeddings of shape {list(t.shape)} are not supported")
    return tuple(out)


def prefill_mask(mask, layout: Layout, fmt: str, dtype: torch.dtype):
    """The attention mask a decoder layer >= K sees at prefill."""
    if mask is None:
        if layout.valid is None:
            return None
        if fmt == "2d":
            return layout.live().long()
        return lay.built_mask4d(layout, layout.length, layout.full, dtype=dtype, fmt=fmt)
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        return lay.prefill_mask4d(mask, layout)
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return lay.mask2d(mask, layout)
    raise ValueError(f"attention mask of type {type(mask).__name__} is not supported by the pruning engine")


def decode_mask(mask, layout: Layout, q: int, total: int, fmt: str, dtype: torch.dtype):
    """The attention mask a decoder layer >= K sees while decoding; ``total`` is the unpruned key length."""
    if mask is None:
        if layout.valid is None:
            return None
        if fmt == "2d":
            return layout.extended(total)[1].long()
        return lay.built_mask4d(layout, q, total, dtype=dtype, fmt=fmt)
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        return lay.decode_mask4d(mask, layout)
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return lay.mask2d(mask, layout)
    raise ValueError(f"attention mask of type {type(mask).__name__} is not supported by the pruning engine")


class Memo:
    """Per-forward cache of rewritten kwargs: every layer >= K gets the same objects, rewritten once.

    Keyed by the input object's identity, so a model that hands different layers different masks
    (sliding-window and full layers) gets each rewritten once. ``get(name, obj, make, *args)`` returns
    the rewrite of ``obj``, calling ``make(obj, *args)`` only the first time (no closure per layer).
    """

    __slots__ = ("_done",)

    def __init__(self):
        self._done: dict[tuple[str, int], tuple[object, object]] = {}

    def get(self, name: str, obj, make, *args):
        hit = self._done.get((name, id(obj)))
        if hit is not None and hit[0] is obj:
            return hit[1]
        new = make(obj, *args)
        self._done[(name, id(obj))] = (obj, new)
        return new


class Rewriter:
    """The keyword rewriting of one handle: its mask format and position policy are fixed at apply().

    ``p`` is the pass (state.Pass) being served, ``step`` the model call in progress (state.Forward).
    Keyword dicts are rewritten in place: each is the call's own (Python builds a fresh one per call).
    The per-layer methods go through ``step.memo``, so layers >= K share one rewritten object each and
    a layer after the first only looks them up.
    """

    def __init__(self, fmt: str, positions):
        self.fmt = fmt
        self.positions = positions

    # ------------------------------------------------------------------ the LLM's call (pre_llm pruning)
    def lm_prefill(self, kwargs: dict, outcome, p) -> dict:
        """The LLM's inputs with only the kept tokens."""
        layout = outcome.layout
        embeds = kwargs["inputs_embeds"]
        kwargs["inputs_embeds"] = outcome.gather(embeds)
        mask = kwargs.get("attention_mask")
        if mask is None:
            # an explicit all-ones mask also stops transformers from reading gapped ids as packed sequences
            kwargs["attention_mask"] = layout.live().long()
        else:
            kwargs["attention_mask"] = lay.mask2d(mask, layout)
        kwargs["position_ids"] = self.positions.lm_prefill_ids(kwargs.get("position_ids"), layout, p.renumbering,
                                                               embeds.device)
        return kwargs

    def lm_decode(self, kwargs: dict, p, step) -> dict:
        """A decode step after pre_llm pruning: the 2-D mask (or one for the dead slots) over the pruned cache."""
        layout = p.lm_layout
        q = kwargs["inputs_embeds"].shape[1]
        removed = layout.full - layout.length
        mask = kwargs.get("attention_mask")
        if mask is not None:
            kwargs["attention_mask"] = lay.mask2d(mask, layout)
        elif layout.valid is not None:
            kwargs["attention_mask"] = layout.extended(step.seen + removed + q)[1].long()
        kwargs["position_ids"] = self.positions.lm_decode_ids(kwargs.get("position_ids"), p.renumbering, seen=step.seen,
                                                              removed=removed, q=q,
                                                              device=kwargs["inputs_embeds"].device)
        return kwargs

    # ------------------------------------------------------------------ decoder layers >= K (llm pruning)
    def layer_prefill(self, kwargs: dict, hidden, p, step) -> None:
        layout, memo, policy = p.outcome.layout, step.memo, self.positions
        kwargs["attention_mask"] = memo.get("mask", kwargs.get("attention_mask"), prefill_mask, layout, self.fmt,
                                            hidden.dtype)
        kwargs["position_ids"] = memo.get("pos", kwargs.get("position_ids"), policy.layer_prefill_ids, layout,
                                          p.renumbering)
        kwargs["position_embeddings"] = memo.get("rope", kwargs.get("position_embeddings"),
                                                 policy.layer_prefill_rope, layout, p.renumbering, hidden)

    def layer_decode(self, kwargs: dict, hidden, index: int, p, step) -> bool:
        """Layer ``index`` while decoding; False (kwargs untouched) when nothing needs rewriting.

        Layers >= K hold fewer keys than the model sizes its masks for; a mask the model passes must
        follow, and dead slots need one built. With no mask (SDPA's causal path) and none built, nothing
        changes unless the position policy renumbers decoding.
        """
        mask = kwargs.get("attention_mask")
        layout, policy = p.outcome.layout, self.positions
        # layers >= K cache other keys than the model sizes its masks for, unless every token was kept
        masks = not layout.is_identity() and (mask is not None or layout.valid is not None)
        if not masks and not policy.rewrites_decode:
            return False
        memo = step.memo
        if masks:
            kwargs["attention_mask"] = memo.get("mask", mask, _layer_decode_mask, layout, hidden,
                                                kwargs.get("past_key_values"), index, self.fmt)
        if policy.rewrites_decode:
            kwargs["position_ids"] = memo.get("pos", kwargs.get("position_ids"), policy.layer_decode_ids,
                                              p.renumbering)
            kwargs["position_embeddings"] = memo.get("rope", kwargs.get("position_embeddings"), _layer_decode_rope,
                                                     policy, hidden, p.renumbering, step)
        return True


def _layer_decode_mask(mask, layout: Layout, hidden, cache, index: int, fmt: str):
    q = hidden.shape[1]
    return decode_mask(mask, layout, q, _unpruned_keys(cache, index, layout, q), fmt, hidden.dtype)


def _layer_decode_rope(_, policy, hidden, renumbering, step):
    # fresh (cos, sin) at the shifted positions; the model's own ones are not reused
    return policy.layer_decode_rope(hidden, renumbering, seen=step.seen, lm_positions=step.lm_positions)


def _unpruned_keys(cache, index: int, layout: Layout, q: int) -> int:
    """Keys layer ``index`` would hold after this step without pruning (the model sizes masks from layer 0)."""
    cached = cache.get_seq_length(index) if cache is not None else layout.length
    return cached + layout.full - layout.length + q
