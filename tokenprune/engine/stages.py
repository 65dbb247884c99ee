"""Prune points, and chaining two of them in one prefill (a pre_llm prune, then one at layer K).

A :class:`PrunePoint` is what ``Prefill.run`` needs to call a strategy at one place in the model;
:func:`prune_points` gives a strategy's points. A two-stage strategy (``tokenprune.TwoStage``)
gives the engine two of them. The second
one works on the sequence the LLM really receives after the first: :func:`survivors` builds its
``Prefill`` over that shorter sequence (the first layout's slots), and :func:`merged_records`
maps its kept indices back to the sample's original visual tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..two_stage import TwoStage
from . import layout as lay
from . import positions as pos_ops
from .prefill import Outcome, Prefill
from .spans import Visuals


@dataclass
class PrunePoint:
    """One place where a strategy is called.

    strategy    the strategy called there (for a two-stage strategy, one of its parts)
    stage       "pre_llm" or "llm" (which signals ``Prefill.run`` computes)
    budget_for  (N of the full prompt, n visual tokens at this point) -> tokens to keep
    head_dim    the LLM's head size (ctx.extras["head_dim"])
    """

    strategy: object
    stage: str
    budget_for: Callable[[int, int], int]
    head_dim: int

    @property
    def extras(self) -> tuple:
        """The ctx.extras keys the strategy asks for."""
        return tuple(getattr(self.strategy, "required_extras", ()) or ())


def prune_points(strategy, budget_for: Callable[[int], int], head_dim: int) -> tuple[PrunePoint | None,
                                                                                        PrunePoint | None]:
    """(the point before the LLM, the point at layer K) of ``strategy``; either may be None.

    ``budget_for(n)`` is the handle's rule (budget or keep_ratio) for a sample of n visual tokens. An
    input-stage strategy selects before the LLM, on the tokens of the resized image. A two-stage
    strategy's first point keeps ``first_budget`` tokens; its final budget is set by the full prompt's
    N (keep_ratio), capped by the survivors.
    """
    if not isinstance(strategy, TwoStage):
        stage = "llm" if strategy.stage == "llm" else "pre_llm"
        point = PrunePoint(strategy, stage, lambda native, n: budget_for(n), head_dim)
        return (None, point) if stage == "llm" else (point, None)
    first, second = strategy.parts()

    def first_budget(native, n):
        return strategy.checked_first_budget(n, budget_for(n))

    def final_budget(native, n):
        return min(budget_for(native), n)

    return PrunePoint(first, "pre_llm", first_budget, head_dim), PrunePoint(second, "llm", final_budget, head_dim)


def survivors(prefill: Prefill, first: Outcome) -> Prefill:
    """The prefill the second prune point sees: the sequence after ``first``'s layout.

    Visual positions are the slots of the surviving visual tokens, their coords the surviving subset
    of the original coords (same grid), padding the real slots (dead slots count as padding). Seeds,
    the full prompt's visual counts and the way back to the original indices are carried over.
    """
    layout = first.layout
    input_ids = lay.take(prefill.input_ids, layout.src, batch_dim=0, seq_dim=1)
    real = pos_ops.real_slots(layout, prefill.padding)
    padding = None if bool(real.all()) and prefill.padding is None else real.long()
    visuals = [_surviving_visuals(v, kept, layout, b)
               for b, (v, kept) in enumerate(zip(prefill.visuals, first.kept_visual))]
    out = Prefill(visuals=visuals, input_ids=input_ids, padding=padding, seed=0)
    out.seeds = list(prefill.seeds)  # a sample draws the same numbers as at the first point
    out.native_n = list(prefill.native_n)
    out.origin, out.origin_kept = prefill, list(first.kept_visual)
    return out


def _surviving_visuals(v: Visuals, kept: torch.Tensor, layout: lay.Layout, b: int) -> Visuals:
    if not v.n:
        return v
    src = layout.src[b]
    slot_of = torch.full((layout.full,), -1, dtype=torch.long, device=src.device)
    live = layout.live()[b]
    slot_of[src[live]] = torch.arange(layout.length, device=src.device)[live]
    kept = kept.to(src.device)
    positions = slot_of[v.positions.to(src.device)[kept]]
    segments = [(name, _count_below(kept, start), _count_below(kept, stop)) for name, start, stop in v.segments]
    return Visuals(positions, v.coords[kept.to(v.coords.device)], v.grid, segments)


def _count_below(kept: torch.Tensor, index: int) -> int:
    """Surviving tokens with an original index below ``index`` (segment bounds among the survivors)."""
    return int((kept < index).sum())


def merged_records(first: Outcome, second: Outcome) -> list[dict]:
    """One record per sample for both points: the second point's record in original indices, plus
    the first point's count, budget, kept set and info under ``info["stage1_*"]``."""
    out = []
    for rec1, rec2, kept1 in zip(first.records, second.records, first.kept_visual):
        kept2 = torch.as_tensor(rec2["kept"], dtype=torch.long)
        rec = rec2  # updated in place: the engine fills its "diagnostics" when the records are read
        rec.update(
            n_visual=rec1["n_visual"],
            grid=rec1["grid"],
            kept=kept1.cpu()[kept2].tolist() if kept2.numel() else [],
            select_s=rec1["select_s"] + rec2["select_s"],
            info={**rec2["info"], "stage1_count": rec1["count"], "stage1_budget": rec1["budget"],
                  "stage1_kept": rec1["kept"], "stage1_info": rec1["info"]},
        )
        out.append(rec)
    return out
