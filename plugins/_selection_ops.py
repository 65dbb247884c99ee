"""Small tensor helpers shared by the fastv, dart and divprune strategies.

Everything works on batched tensors ([B, N, ...]) and never loops over tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenprune import StrategyInputError

# Rows per block of the block-triangular Gram product: large enough for an
# efficient GEMM, small enough that skipping the lower blocks saves real work.
_GRAM_BLOCK_ROWS = 144


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs (similarities in full precision), float64 kept."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``x / ||x||_2`` along the last dim, in at least float32.

    A division (not a multiplication by the reciprocal), as the official codes
    do, so non-zero rows are bit-identical to theirs; zero rows become zeros
    instead of NaN.
    """
    x = x.to(compute_dtype(x)).contiguous()  # row reductions on a strided layout are several times slower
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(eps)


def symmetric_gram(u: torch.Tensor) -> torch.Tensor:
    """``u @ u.mT`` for u [B, N, d], computing only the upper block triangle and mirroring it.

    Saves close to half the multiply-adds of the full product. Mathematically
    the same matrix; on the CPU builds measured it is also bit-identical to
    ``u @ u.mT`` (an entry's dot product is accumulated the same way in both).
    Samples go one by one through 2-D products: at N=576, d=4096 a batched
    product of one sample was 20 % slower than the plain matrix product.
    """
    B, N, _ = u.shape
    if N <= _GRAM_BLOCK_ROWS:
        return u @ u.mT
    gram = u.new_empty(B, N, N)
    for sample, out in zip(u, gram):
        for start in range(0, N, _GRAM_BLOCK_ROWS):
            stop = min(start + _GRAM_BLOCK_ROWS, N)
            block = F.linear(sample[start:stop], sample[start:])  # rows start..stop against columns start..N
            out[start:stop, start:] = block
            out[stop:, start:stop] = block[:, stop - start:].mT
    return gram


def top_indices(scores: torch.Tensor, k: int, *, largest: bool = True) -> torch.Tensor:
    """Indices of the k best entries of each row, best first; ties go to the lower index.

    Unlike ``torch.topk`` the tie order is specified, so a batch gives the
    same answer as its samples one by one on any torch build.
    """
    order = torch.sort(scores, dim=-1, descending=largest, stable=True).indices
    return order[..., :k]


def check_extra_tensor(owner: str, ctx, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """``ctx.extras[key]`` checked to be a finite floating tensor of ``shape``; clear error otherwise."""
    value = ctx.extras.get(key)
    if value is None:
        raise StrategyInputError(f"strategy {owner!r}: needs ctx.extras[{key!r}], but it was not given")
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise StrategyInputError(
            f"strategy {owner!r}: ctx.extras[{key!r}] must be a floating-point tensor, got "
            f"{getattr(value, 'dtype', type(value).__name__)}"
        )
    if tuple(value.shape) != tuple(shape):
        raise StrategyInputError(
            f"strategy {owner!r}: ctx.extras[{key!r}] must have shape {list(shape)}, got {list(value.shape)}"
        )
    if not bool(torch.isfinite(value).all()):
        raise StrategyInputError(f"strategy {owner!r}: ctx.extras[{key!r}] contains NaN or inf")
    return value
