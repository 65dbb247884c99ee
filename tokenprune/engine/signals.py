"""Turning captured model states into the signals of the strategy contract (tokenprune.SIGNALS).

All functions take per-sample position lists so batches with padding, and
samples with different image spans, are handled the same way.
"""
from __future__ import annotations

import torch


def rows_at(t: torch.Tensor, positions: list[torch.Tensor]) -> torch.Tensor:
    """[G, N, D] rows of ``t`` [B, L, D] at the same-length position lists of G samples (in order)."""
    return torch.stack([t[b, p.to(t.device)] for b, p in enumerate(positions)])


def padded_rows(t: torch.Tensor, positions: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows at position lists of different lengths, zero-padded at the end; plus the [G, M] bool mask of real rows."""
    width = max([int(p.numel()) for p in positions] + [1])
    out = t.new_zeros(len(positions), width, t.shape[-1])
    mask = torch.zeros(len(positions), width, dtype=torch.bool, device=t.device)
    for g, p in enumerate(positions):
        n = int(p.numel())
        if n:
            out[g, :n] = t[g, p.to(t.device)]
            mask[g, :n] = True
    return out, mask


def heads_concat(keys: torch.Tensor) -> torch.Tensor:
    """[B, n_kv, L, hd] -> [B, L, n_kv * hd] (heads concatenated, KV heads not repeated)."""
    B, H, L, D = keys.shape
    return keys.permute(0, 2, 1, 3).reshape(B, L, H * D)


def _key_valid(keys_len: int, rows: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """[B, L] keys a query at ``rows`` may see: causal, and not padding."""
    j = torch.arange(keys_len, device=rows.device)
    valid = j[None, :] <= rows[:, None]
    if padding is not None:
        valid = valid & padding[:, :keys_len].to(valid.device).bool()
    return valid


def last_query_attention(query_rows: torch.Tensor, keys: torch.Tensor, scaling: float,
                         rows: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """Attention of one query per sample to every key, softmax over its whole causal row, mean over heads.

    query_rows [B, H, hd] (post-RoPE), keys [B, n_kv, L, hd] (GQA: each KV head serves H / n_kv query heads).
    Returns [B, L] in float32.
    """
    B, H, D = query_rows.shape
    n_kv = keys.shape[1]
    q = query_rows.float().view(B, n_kv, H // n_kv, D)
    scores = torch.einsum("bgrd,bgld->bgrl", q, keys.float()) * scaling
    valid = _key_valid(keys.shape[2], rows.to(keys.device), padding)
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return probs.reshape(B, H, -1).mean(dim=1)


def all_queries_attention(queries: torch.Tensor, keys: torch.Tensor, scaling: float,
                          padding: torch.Tensor | None, chunk: int = 256) -> torch.Tensor:
    """Mean over heads and over every non-padding query of the causal attention each key receives; [B, L] float32."""
    B, H, L, D = queries.shape
    n_kv = keys.shape[1]
    k = keys.float()
    total = torch.zeros(B, keys.shape[2], device=keys.device)
    pad = None if padding is None else padding[:, :L].to(keys.device).bool()
    for start in range(0, L, chunk):  # chunks keep the [B, H, q, L] block small
        stop = min(L, start + chunk)
        q = queries[:, :, start:stop].float().reshape(B, n_kv, H // n_kv, stop - start, D)
        scores = torch.einsum("bgrqd,bgld->bgrql", q, k) * scaling
        qi = torch.arange(start, stop, device=keys.device)
        valid = torch.arange(keys.shape[2], device=keys.device)[None, :] <= qi[:, None]
        valid = valid[None].expand(B, -1, -1)
        if pad is not None:
            valid = valid & pad[:, None, :keys.shape[2]]
        scores = scores.masked_fill(~valid[:, None, None], float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # padding queries: all keys blocked
        if pad is not None:
            probs = probs * pad[:, None, None, start:stop, None]
        total += probs.sum(dim=(1, 2, 3))
    n_queries = (pad.sum(dim=1) if pad is not None else torch.full((B,), L, device=keys.device)).clamp_min(1)
    return total / (H * n_queries[:, None])
