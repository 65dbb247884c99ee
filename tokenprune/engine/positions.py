"""`positions: reindex`: renumber the kept tokens 0..n-1 instead of keeping their original ids (gaps).

Original ids are the default (DESIGN.md section 3). With reindex the prompt is
numbered as if the dropped tokens had never been there, every M-RoPE row gets
the same plain index, and decoding continues from the pruned length: each
sample's decode positions are shifted down by ``delta`` = (next original
position) - (next reindexed position).
"""
from __future__ import annotations

import torch

from . import layout as lay
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
