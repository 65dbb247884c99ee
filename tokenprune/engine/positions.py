"""The ``positions`` policy: which position ids the kept tokens get, chosen once per handle.

``original`` (the default): kept tokens keep their position ids, gaps included.
``reindex``: the prompt is numbered as if the dropped tokens had never been
there, every M-RoPE row gets the same plain index, and decoding continues from
the pruned length: each sample's decode positions are shifted down by ``delta``
= (next original position) - (next reindexed position).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import layout as lay
from . import transform
from .layout import Layout


def real_slots(layout: Layout, padding: torch.Tensor | None) -> torch.Tensor:
    """[B, L'] True where a slot holds a real (not padding, not dead) prompt token."""
    live = layout.live()
    if padding is None:
        return live
    return live & lay.take(padding.bool(), layout.src, batch_dim=0, seq_dim=1)


def reindexed(real: torch.Tensor) -> torch.Tensor:
    """[B, L'] plain positions over the real slots (0 elsewhere, as generate() numbers padding)."""
    pos = real.long().cumsum(dim=1) - 1
    return pos.masked_fill(~real, 0)


def next_original(full_positions: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """[B] one past the largest original position of each sample's real tokens.

    ``full_positions`` is [B|1, L] or [R, B|1, L] (M-RoPE rows: the max over rows; Qwen's 4-row ids lead
    with a plain text index, which decoding does not continue from, so it is left out).
    """
    pos = full_positions if full_positions.dim() == 3 else full_positions[None]
    if pos.shape[0] == 4:
        pos = pos[1:]
    pos = pos.amax(dim=0)
    if padding is not None:
        pos = pos.expand(padding.shape[0], -1).masked_fill(~padding.bool().to(pos.device), -1)
    return pos.amax(dim=1) + 1


def like(pos_template: torch.Tensor | None, plain: torch.Tensor) -> torch.Tensor:
    """``plain`` [B, L] shaped like the model's position ids (2-D, or R identical M-RoPE rows)."""
    if pos_template is not None and pos_template.dim() == 3:
        return plain[None].expand(pos_template.shape[0], -1, -1)
    return plain


def shifted(pos: torch.Tensor | None, delta: torch.Tensor) -> torch.Tensor | None:
    """Decode position ids [B|1, q] or [R, B|1, q] moved down by each sample's ``delta`` [B]."""
    if pos is None:
        return None
    if pos.dim() == 2:
        return pos - delta[:, None].to(pos.device)
    return pos - delta[None, :, None].to(pos.device)


# ---------------------------------------------------------------------------------------- the policy
# The handle picks one policy at apply() and asks it for position ids (and, for reindex, fresh (cos, sin))
# wherever pruning moves tokens: the LLM's input (pre_llm), decoder layers >= K (llm), and decoding.
# The methods named *_ids / *_rope build new values; they run once per forward (memoised by the caller).


@dataclass
class Renumbering:
    """positions="reindex" state of one prefill.

    plain     [B, L'] the kept slots' plain positions (``reindexed``)
    delta     [B] decode position shift per sample (next original minus next reindexed position)
    template  the LLM-level position ids of the prefill (their shape is copied), or None
    """

    plain: torch.Tensor
    delta: torch.Tensor
    template: torch.Tensor | None


class OriginalPositions:
    """Kept tokens keep their original position ids, gaps included (the default)."""

    name = "original"
    rewrites_decode = False  # decoded tokens' ids and (cos, sin) of layers >= K stay as the model made them

    def renumber(self, layout: Layout, prefill, lm_positions) -> None:
        return None

    def lm_prefill_ids(self, pos, layout: Layout, renumbering, device):
        """pre_llm: position ids of the kept tokens entering the LLM."""
        if pos is None:
            pos = torch.arange(layout.full, device=device)[None].expand(layout.batch, -1)
        return transform.positions(pos, layout)

    def lm_decode_ids(self, pos, renumbering, *, seen: int, removed: int, q: int, device):
        """pre_llm decoding: without ids the LLM would number new tokens from its (pruned) cache length
        ``seen``; they continue from the full one instead."""
        if pos is None and removed:
            start = seen + removed
            return torch.arange(start, start + q, device=device)[None]
        return pos

    def layer_prefill_ids(self, pos, layout: Layout, renumbering):
        return transform.positions(pos, layout)

    def layer_prefill_rope(self, pe, layout: Layout, renumbering, hidden):
        return transform.rotary(pe, layout)


class ReindexPositions:
    """Kept tokens are renumbered 0..n-1; decoding continues from the pruned length (module docstring)."""

    name = "reindex"
    rewrites_decode = True

    def __init__(self, rotary, mrope: bool):
        self.rotary = rotary  # (hidden, position_ids) -> (cos, sin), the LLM's own rotary embedding
        self.mrope = mrope

    def renumber(self, layout: Layout, prefill, lm_positions) -> Renumbering:
        full = lm_positions
        if full is None:
            full = torch.arange(prefill.L, device=layout.src.device)[None]
        real = real_slots(layout, prefill.padding)
        delta = next_original(full, prefill.padding) - real.sum(dim=1)
        return Renumbering(plain=reindexed(real), delta=delta, template=lm_positions)

    def lm_prefill_ids(self, pos, layout: Layout, renumbering: Renumbering, device):
        return like(pos, renumbering.plain)

    def lm_decode_ids(self, pos, renumbering: Renumbering, *, seen: int, removed: int, q: int, device):
        return shifted(pos, renumbering.delta)

    def layer_prefill_ids(self, pos, layout: Layout, renumbering: Renumbering):
        return None if pos is None else renumbering.plain

    def layer_prefill_rope(self, pe, layout: Layout, renumbering: Renumbering, hidden):
        template = renumbering.template
        if template is None and self.mrope:
            template = torch.zeros(3, 1, 1, dtype=torch.long)  # a stand-in with the right number of rows
        return self.rotary(hidden, _rotary_rows(like(template, renumbering.plain)))

    def layer_decode_ids(self, pos, renumbering: Renumbering):
        return shifted(pos, renumbering.delta)

    def layer_decode_rope(self, hidden, renumbering: Renumbering, *, seen: int, lm_positions):
        """(cos, sin) of the decoded tokens at their shifted positions; ``lm_positions`` are the ids the
        LLM got for this step (None: numbered from ``seen``, the tokens already cached)."""
        full = lm_positions
        if full is None:
            q = hidden.shape[1]
            full = torch.arange(seen, seen + q, device=hidden.device)[None]
            if self.mrope:
                full = full[None].expand(3, -1, -1)
        return self.rotary(hidden, _rotary_rows(shifted(full, renumbering.delta)))


def _rotary_rows(pos: torch.Tensor) -> torch.Tensor:
    # Qwen's 4-row ids carry text positions first; the rotary embedding takes the 3 M-RoPE rows
    return pos[1:] if pos.dim() == 3 and pos.shape[0] == 4 else pos


POLICIES = ("original", "reindex")


def policy(name: str, vlm) -> OriginalPositions | ReindexPositions:
    """The position policy ``name`` (one of POLICIES) for this model."""
    if name == "reindex":
        return ReindexPositions(vlm.rotary, bool(getattr(vlm, "mrope", False)))
    if name == "original":
        return OriginalPositions()
    raise ValueError(f"positions must be one of {', '.join(POLICIES)}, got {name!r}")
