"""Synthetic select() inputs for tests: spatially smooth features on a token grid.

Used by the conformance suite; third-party authors can use it in their own tests.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..selection import Context


def grid_coords(h: int, w: int, t: int = 1) -> torch.Tensor:
    """(row, col) raster coords of an h x w grid, or (t, row, col) for t > 1 frames."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rc = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    if t == 1:
        return rc
    frames = torch.arange(t).repeat_interleave(h * w)[:, None]
    return torch.cat([frames, rc.repeat(t, 1)], dim=1)


def smooth_features(b: int, h: int, w: int, d: int, gen: torch.Generator, t: int = 1) -> torch.Tensor:
    """[b, t*h*w, d] features: shared DC + a smooth field + noise, like projector outputs."""
    n = t * h * w
    dc = torch.randn(1, 1, d, generator=gen)
    coarse = torch.randn(b * t, d, 4, 4, generator=gen)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    field = field.reshape(b, t, d, h * w).permute(0, 1, 3, 2).reshape(b, n, d)
    noise = torch.randn(b, n, d, generator=gen)
    return (0.8 * dc + field + 0.3 * noise).contiguous()


class RMSNorm(torch.nn.Module):
    def __init__(self, d: int, gen: torch.Generator, eps: float = 1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(d, generator=gen), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps) * self.weight).to(x.dtype)


def make_inputs(strategy, *, batch: int = 2, h: int = 12, w: int = 12, frames: int = 1, dk: int = 64,
                d: int = 96, text_len: int = 7, seed: int = 0, only_required: bool = True):
    """(keys, attn, coords, ctx) for ``strategy``; signals it does not require are None when only_required."""
    gen = torch.Generator().manual_seed(seed)
    need = set(strategy.requires) if only_required else {
        "keys", "attn", "hidden", "text_keys", "text_hidden", "final_norm", "text_embeds", "image_embeds"}
    n = frames * h * w
    hidden = smooth_features(batch, h, w, d, gen, t=frames)
    proj = torch.randn(d, dk, generator=gen) / d**0.5
    keys = hidden @ proj + 0.05 * torch.randn(batch, n, dk, generator=gen)
    attn = torch.softmax(torch.randn(batch, n, generator=gen) * 2, dim=-1)
    text_hidden = torch.randn(batch, text_len, d, generator=gen)
    ctx = Context(
        hidden=hidden if "hidden" in need else None,
        text_keys=(text_hidden @ proj) if "text_keys" in need else None,
        text_hidden=text_hidden if "text_hidden" in need else None,
        final_norm=RMSNorm(d, gen) if "final_norm" in need else None,
        text_embeds=torch.randn(batch, 2, 32, generator=gen) if "text_embeds" in need else None,
        image_embeds=(hidden[..., :32] + 0.1 * torch.randn(batch, n, 32, generator=gen))
        if "image_embeds" in need else None,
        grid=(frames, h, w),
        generator=[torch.Generator().manual_seed(1000 * seed + b) for b in range(batch)],
        layer=getattr(strategy, "prune_layer", None),
        batch_size=batch,
        extras={"image_start": 5},  # as if a 5-token prefix came before the image (DART's faithful mode)
    )
    return (keys if "keys" in need else None, attn if "attn" in need else None,
            grid_coords(h, w, frames), ctx)


def take_sample(keys, attn, ctx, b: int):
    """The inputs of sample ``b`` alone, as a batch of one (for batch-equals-singles checks)."""
    def one(t):
        return None if t is None else t[b:b + 1]

    gens = ctx.generator
    single = Context(
        hidden=one(ctx.hidden), text_keys=one(ctx.text_keys), text_hidden=one(ctx.text_hidden),
        text_mask=one(ctx.text_mask), final_norm=ctx.final_norm, text_embeds=one(ctx.text_embeds),
        image_embeds=one(ctx.image_embeds), grid=ctx.grid,
        generator=None if gens is None else [gens[b]] if not isinstance(gens, torch.Generator) else gens,
        layer=ctx.layer, batch_size=1, extras=dict(ctx.extras),
    )
    return one(keys), one(attn), single
