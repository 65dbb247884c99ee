"""Spatial diagnostics of a kept set (the paper's analysis): edge tokens, spread, redundancy."""
from __future__ import annotations

import torch


def edge_token_count(coords: torch.Tensor, keep: torch.Tensor) -> int:
    """Kept tokens on the border of their frame's grid."""
    c = coords[keep].long()
    rows, cols = c[:, -2], c[:, -1]
    h, w = int(coords[:, -2].max()) + 1, int(coords[:, -1].max()) + 1
    return int(((rows == 0) | (cols == 0) | (rows == h - 1) | (cols == w - 1)).sum())


def mean_nearest_kept_distance(coords: torch.Tensor, keep: torch.Tensor) -> float | None:
    """Mean grid distance from each kept token to its nearest other kept token (same frame)."""
    if keep.numel() < 2:
        return None
    c = coords[keep].float()
    d = torch.cdist(c, c)
    if c.shape[1] == 3:  # different frames are not neighbours
        d = d.masked_fill(c[:, None, 0] != c[None, :, 0], float("inf"))
    d.fill_diagonal_(float("inf"))
    nearest = d.min(dim=1).values
    finite = nearest[torch.isfinite(nearest)]
    return float(finite.mean()) if finite.numel() else None


def redundancy(features: torch.Tensor, keep: torch.Tensor) -> float | None:
    """Mean pairwise cosine similarity of the kept tokens' features (off-diagonal)."""
    if keep.numel() < 2:
        return None
    f = torch.nn.functional.normalize(features[keep].float(), dim=-1)
    sim = f @ f.T
    k = f.shape[0]
    return float((sim.sum() - sim.diagonal().sum()) / (k * (k - 1)))


def diagnose(coords: torch.Tensor, keep: torch.Tensor, features: torch.Tensor | None) -> dict:
    keep = keep[keep >= 0]
    return {
        "edge_tokens": edge_token_count(coords, keep),
        "nn_distance": mean_nearest_kept_distance(coords, keep),
        "redundancy": redundancy(features, keep) if features is not None else None,
    }
