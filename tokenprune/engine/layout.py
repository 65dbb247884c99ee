"""Which prompt positions survive a prefill, and how every per-token tensor follows them.

A :class:`Layout` maps the pruned sequence back to the full prompt: slot ``s`` of
sample ``b`` holds prompt position ``src[b, s]``. Samples may keep different
numbers of tokens (different N per sample, keep_ratio, faithful strategies that
under- or over-fill); shorter rows are left-padded with dead slots
(``valid[b, s] == False``) so shapes stay rectangular, and every attention mask
is rewritten so nothing attends to a dead slot.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Layout:
    """Kept prompt positions per sample.

    src    [B, L'] int64, ascending prompt positions per row (dead slots hold 0)
    valid  [B, L'] bool, False for the dead left-padding slots; None when every slot is live
    full   L, the unpruned prompt length
    """

    src: torch.Tensor
    valid: torch.Tensor | None
    full: int

    @classmethod
    def from_rows(cls, rows: list[torch.Tensor], full: int) -> "Layout":
        """Left-pad per-sample ascending position lists to a common length."""
        width = max(int(r.numel()) for r in rows)
        device = rows[0].device
        src = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        valid = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
        for b, r in enumerate(rows):
            n = int(r.numel())
            src[b, width - n:] = r
            valid[b, width - n:] = True
        return cls(src=src, valid=None if bool(valid.all()) else valid, full=full)

    @property
    def batch(self) -> int:
        return self.src.shape[0]

    @property
    def length(self) -> int:
        return self.src.shape[1]

    def is_identity(self) -> bool:
        return self.valid is None and self.length == self.full

    def live(self) -> torch.Tensor:
        """[B, L'] bool, True for real slots."""
        return torch.ones_like(self.src, dtype=torch.bool) if self.valid is None else self.valid

    def extended(self, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(src, live) over a key axis of ``total`` = L + tokens appended after the prompt.

        Positions past the prompt (decoded tokens) are never pruned, so they map one to one.
        """
        extra = total - self.full
        if extra < 0:
            raise ValueError(f"key length {total} is shorter than the pruned prompt ({self.full})")
        tail = torch.arange(self.full, total, device=self.src.device).expand(self.batch, extra)
        live_tail = torch.ones(self.batch, extra, dtype=torch.bool, device=self.src.device)
        return torch.cat([self.src, tail], dim=1), torch.cat([self.live(), live_tail], dim=1)


def take(t: torch.Tensor, src: torch.Tensor, *, batch_dim: int, seq_dim: int) -> torch.Tensor:
    """Gather ``t`` along ``seq_dim`` with a different index row per sample (batch size may broadcast from 1)."""
    B = src.shape[0]
    if t.shape[batch_dim] == 1 and B > 1:
        shape = list(t.shape)
        shape[batch_dim] = B
        t = t.expand(*shape)
    moved = t.movedim((batch_dim, seq_dim), (0, 1))
    rows = torch.arange(B, device=src.device)[:, None]
    out = moved[rows, src.to(moved.device)]
    return out.movedim((0, 1), (batch_dim, seq_dim))


def blocked_value(mask: torch.Tensor):
    """The entry that blocks attention in this mask format (bool: False, additive float: dtype min)."""
    return False if mask.dtype == torch.bool else torch.finfo(mask.dtype).min


def open_value(mask: torch.Tensor):
    return True if mask.dtype == torch.bool else 0.0


def prefill_mask4d(mask: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Rows and columns of a [B|1, h, L, L] prompt mask gathered to the kept slots.

    Dead slots are blocked as keys; a dead query row keeps only its diagonal so
    the softmax never sees an all-blocked row (which would give NaN).
    """
    out = take(mask, layout.src, batch_dim=0, seq_dim=2)
    out = take(out, layout.src, batch_dim=0, seq_dim=3)
    if layout.valid is None:
        return out
    out = out.clone()
    dead = ~layout.valid
    out.masked_fill_(dead[:, None, None, :], blocked_value(mask))
    eye = torch.eye(layout.length, dtype=torch.bool, device=out.device)
    out.masked_fill_((dead[:, None, :, None] & eye)[:, :, :, :], open_value(mask))
    return out


def decode_mask4d(mask: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Key axis of a [B|1, h, q, L + t] mask mapped onto the pruned cache (queries are new tokens)."""
    src, live = layout.extended(mask.shape[-1])
    out = take(mask, src, batch_dim=0, seq_dim=3)
    if layout.valid is not None:
        out = out.masked_fill(~live[:, None, None, :], blocked_value(mask))
    return out


def mask2d(mask: torch.Tensor, layout: Layout) -> torch.Tensor:
    """A [B, L + t] padding mask (1 = attend) mapped onto the pruned sequence or cache."""
    src, live = layout.extended(mask.shape[-1])
    out = take(mask, src, batch_dim=0, seq_dim=1)
    if layout.valid is not None:
        out = out * live.to(out.dtype) if out.dtype != torch.bool else out & live
    return out


def built_mask4d(layout: Layout, q: int, total: int, *, dtype: torch.dtype, fmt: str) -> torch.Tensor:
    """A [B, 1, q, total'] mask for the pruned sequence when the model passed none (dead slots exist).

    ``total`` is the unpruned key length; the last ``q`` keys are the queries themselves (causal among them).
    ``fmt`` is "bool" (SDPA: True = attend) or "float" (eager: 0 / dtype min).
    """
    _, live = layout.extended(total)
    k = live.shape[1]
    qi = torch.arange(q, device=live.device)[:, None] + (k - q)
    ki = torch.arange(k, device=live.device)[None, :]
    allowed = (ki <= qi)[None, None] & live[:, None, None, :]
    allowed = allowed | ((ki == qi)[None, None] & torch.ones_like(allowed))  # dead query rows keep their diagonal
    if fmt == "bool":
        return allowed
    zero = torch.zeros((), dtype=dtype, device=live.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)
