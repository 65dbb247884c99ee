"""Checks on what goes into and comes out of a strategy, with errors that name the plugin."""
from __future__ import annotations

import torch

from .errors import BudgetError, SelectionError, StrategyInputError
from .selection import Selection

_FLOAT_SIGNALS = ("hidden", "text_keys", "text_hidden", "text_embeds", "image_embeds")


def _first_bad(t: torch.Tensor) -> str:
    bad = (~torch.isfinite(t)).nonzero()
    where = tuple(bad[0].tolist()) if len(bad) else ()
    kind = "NaN" if torch.isnan(t).any() else "inf"
    return f"{int(bad.shape[0])} non-finite value(s), first {kind} at index {where}"


def all_finite(t: torch.Tensor) -> bool:
    """True when no element is NaN or inf.

    One cheap reduction first: NaN and inf always propagate through a sum, so a
    finite sum proves every element finite. Only a non-finite sum (a bad value, or
    an overflow of finite ones) pays for the exact element-wise scan.
    """
    acc = torch.float64 if t.dtype == torch.float64 else torch.float32
    if bool(torch.isfinite(t.sum(dtype=acc))):
        return True
    return bool(torch.isfinite(t).all())


def check_finite(owner: str, what: str, t: torch.Tensor | None):
    if t is None:
        return
    if t.is_floating_point() and not all_finite(t):
        raise StrategyInputError(f"strategy {owner!r}: input {what} has {_first_bad(t)}")


def check_inputs(strategy, keys, attn, coords, budget, ctx) -> tuple[int, int]:
    """Validate a select() call; return (B, N)."""
    owner = strategy.name
    if coords is None or not isinstance(coords, torch.Tensor):
        raise StrategyInputError(f"strategy {owner!r}: coords must be a tensor [N, 2|3], got {type(coords).__name__}")
    if coords.dim() != 2 or coords.shape[1] not in (2, 3):
        raise StrategyInputError(f"strategy {owner!r}: coords must have shape [N, 2|3], got {list(coords.shape)}")
    N = coords.shape[0]
    B = None
    for what, t, dims in (("keys", keys, 3), ("attn", attn, 2), ("ctx.hidden", ctx.hidden, 3)):
        signal = what.removeprefix("ctx.")
        if t is None:
            if signal in strategy.requires:
                raise StrategyInputError(f"strategy {owner!r} requires {what}, but it was None")
            continue
        if not isinstance(t, torch.Tensor):
            raise StrategyInputError(f"strategy {owner!r}: {what} must be a tensor, got {type(t).__name__}")
        if t.dim() != dims or t.shape[1] != N:
            want = "[B, N]" if dims == 2 else "[B, N, D]"
            raise StrategyInputError(
                f"strategy {owner!r}: {what} must have shape {want} with N={N} (from coords), got {list(t.shape)}"
            )
        if not t.is_floating_point():
            raise StrategyInputError(f"strategy {owner!r}: {what} must be floating point, got {t.dtype}")
        if B is not None and t.shape[0] != B:
            raise StrategyInputError(f"strategy {owner!r}: {what} has batch {t.shape[0]}, expected {B}")
        B = t.shape[0]
        if signal in strategy.requires:  # a signal the strategy does not read cannot spoil its answer
            check_finite(owner, what, t)
    for signal in _FLOAT_SIGNALS[1:]:
        value = getattr(ctx, signal)
        if value is None:
            if signal in strategy.requires:
                raise StrategyInputError(f"strategy {owner!r} requires ctx.{signal}, but it was None")
            continue
        if signal in strategy.requires:
            check_finite(owner, f"ctx.{signal}", value)
    if "final_norm" in strategy.requires and ctx.final_norm is None:
        raise StrategyInputError(f"strategy {owner!r} requires ctx.final_norm, but it was None")
    if ctx.batch_size is not None:
        if B is not None and B != ctx.batch_size:
            raise StrategyInputError(f"strategy {owner!r}: ctx.batch_size={ctx.batch_size} but the inputs have batch {B}")
        B = ctx.batch_size
    if B is None:
        raise StrategyInputError(
            f"strategy {owner!r}: cannot tell the batch size: pass keys, attn, ctx.hidden or ctx.batch_size"
        )
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise BudgetError(f"strategy {owner!r}: budget must be an integer, got {budget!r}")
    if not 1 <= budget <= N:
        raise BudgetError(
            f"strategy {owner!r}: budget {budget} is out of range; it must be between 1 and N={N} visual tokens"
        )
    return B, N


def check_selection(strategy, sel, *, B: int, N: int, budget: int, hidden_dim: int | None) -> Selection:
    """Validate a strategy's output against the contract; fill info['counts']."""
    owner = strategy.name

    def fail(msg):
        return SelectionError(f"strategy {owner!r} returned an invalid Selection: {msg}")

    if not isinstance(sel, Selection):
        raise fail(f"expected a tokenprune.Selection, got {type(sel).__name__}")
    keep = sel.keep
    if not isinstance(keep, torch.Tensor):
        raise fail(f"keep must be a tensor, got {type(keep).__name__}")
    if keep.dtype != torch.int64:
        raise fail(f"keep must be int64 (torch.long), got {keep.dtype}")
    if keep.dim() != 2 or keep.shape[0] != B:
        raise fail(f"keep must have shape [B={B}, R], got {list(keep.shape)}")
    exact = strategy.exact_budget
    R = keep.shape[1]
    if exact and R != budget:
        raise fail(f"kept {R} tokens per sample, but the budget is {budget}")
    if not 1 <= R <= N:
        raise fail(f"kept {R} tokens per sample; must be between 1 and N={N}")
    valid = keep >= 0
    if exact and not bool(valid.all()):
        raise fail("keep contains negative indices (padding is only allowed in faithful modes)")
    # padding (-1) only after the real indices
    if bool((valid[:, 1:] & ~valid[:, :-1]).any()):
        raise fail("padding (-1) must come after all kept indices in a row")
    if bool((~valid).any()) and not bool((keep[~valid] == -1).all()):
        raise fail("negative indices other than the -1 padding")
    if bool((keep >= N).any()):
        bad = keep[keep >= N][0].item()
        raise fail(f"index {bad} is out of range for N={N} visual tokens")
    if R > 1:
        step = keep[:, 1:] - keep[:, :-1]
        both = valid[:, 1:] & valid[:, :-1]
        if bool(((step == 0) & both).any()):
            b = int(((step == 0) & both).any(dim=1).nonzero()[0])
            raise fail(f"duplicate indices in sample {b}")
        if bool(((step < 0) & both).any()):
            b = int(((step < 0) & both).any(dim=1).nonzero()[0])
            raise fail(f"indices not ascending in sample {b}")
    if valid.sum(dim=1).min().item() < 1:
        raise fail("a sample keeps no token")
    if sel.hidden is not None:
        h = sel.hidden
        if not isinstance(h, torch.Tensor) or not h.is_floating_point():
            raise fail("hidden must be a floating-point tensor or None")
        if h.dim() != 3 or h.shape[0] != B or h.shape[1] != R:
            raise fail(f"hidden must have shape [B={B}, R={R}, D], got {list(h.shape)}")
        if hidden_dim is not None and h.shape[2] != hidden_dim:
            raise fail(f"hidden has width {h.shape[2]}, but the model's hidden size is {hidden_dim}")
        if not all_finite(h[valid]):
            raise fail("hidden contains NaN or inf")
    if not isinstance(sel.info, dict):
        raise fail(f"info must be a dict, got {type(sel.info).__name__}")
    sel.info["counts"] = valid.sum(dim=1).tolist()
    return sel


def check_input_grid(strategy, grid, budget, planned) -> tuple[int, int]:
    """An input-stage strategy's planned (rows, cols): integers in 1..native, with room for the budget."""
    owner = strategy.name
    rows, cols = (int(v) for v in grid)
    if (not isinstance(planned, (tuple, list)) or len(planned) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in planned)):
        raise SelectionError(f"strategy {owner!r}: input_grid() must return (rows, cols) integers, got {planned!r}")
    r, c = planned
    if not (1 <= r <= rows and 1 <= c <= cols):
        raise SelectionError(f"strategy {owner!r}: input_grid() returned {r}x{c}, outside the native "
                             f"{rows}x{cols} token grid (resizing may only shrink the image)")
    if r * c < min(budget, rows * cols):
        raise SelectionError(f"strategy {owner!r}: input_grid() returned {r}x{c} = {r * c} tokens, fewer than "
                             f"the budget {budget}")
    return r, c
