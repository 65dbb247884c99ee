"""The strategy conformance suite, shipped for third-party authors.

Usage in any test module (the ``tokenprune`` pytest plugin does the parametrizing)::

    from tokenprune.testing.conformance import StrategyConformance

    class TestMyStrategy(StrategyConformance):
        strategies = ["my_strategy"]      # names or fnmatch patterns; "*" = every registered one

Each test then runs once per matching registered strategy, with its default params.
"""
from __future__ import annotations

import math

import pytest
import torch

from ..errors import BudgetError, StrategyInputError
from .inputs import make_inputs, take_sample

GRIDS = [(12, 12, 1), (6, 10, 1), (2, 5, 6)]  # square, non-square, 2 frames of (t,row,col)


def _keep_rows(sel):
    return [row[row >= 0] for row in sel.keep]


def _assert_valid(sel, batch, n, budget, exact):
    keep = sel.keep
    assert keep.dtype == torch.int64 and keep.dim() == 2 and keep.shape[0] == batch
    for row in _keep_rows(sel):
        if exact:
            assert row.numel() == budget, f"kept {row.numel()} tokens, budget {budget}"
        assert row.numel() >= 1
        assert bool((row[1:] > row[:-1]).all()), "indices must be strictly ascending (so unique)"
        assert int(row.min()) >= 0 and int(row.max()) < n
    if sel.hidden is not None:
        assert sel.hidden.shape[:2] == keep.shape
        assert bool(torch.isfinite(sel.hidden[keep >= 0]).all())
    assert sel.info["counts"] == [int((r >= 0).sum()) for r in keep]


class StrategyConformance:
    """Contract checks every strategy must pass. Set ``strategies`` in a subclass."""

    strategies = "*"

    @pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "x".join(map(str, g)))
    def test_shapes_and_exact_budget(self, tp_strategy, grid):
        h, w, t = grid
        n = h * w * t
        for budget in sorted({1, max(1, n // 9), n // 3, n - 1}):
            keys, attn, coords, ctx = make_inputs(tp_strategy, batch=2, h=h, w=w, frames=t)
            sel = tp_strategy.select(keys, attn, coords, budget, ctx)
            _assert_valid(sel, 2, n, budget, tp_strategy.exact_budget)

    def test_deterministic_under_seed(self, tp_strategy):
        results = []
        for _ in range(2):
            keys, attn, coords, ctx = make_inputs(tp_strategy, batch=2, seed=3)
            results.append(tp_strategy.select(keys, attn, coords, 16, ctx))
        assert torch.equal(results[0].keep, results[1].keep)
        if results[0].hidden is not None:
            assert torch.equal(results[0].hidden, results[1].hidden)

    def test_batch_equals_single_calls(self, tp_strategy):
        batch = 3
        keys, attn, coords, ctx = make_inputs(tp_strategy, batch=batch, seed=5)
        together = tp_strategy.select(keys, attn, coords, 16, ctx)
        keys, attn, coords, ctx = make_inputs(tp_strategy, batch=batch, seed=5)
        for b in range(batch):
            k1, a1, c1 = take_sample(keys, attn, ctx, b)
            alone = tp_strategy.select(k1, a1, coords, 16, c1)
            assert torch.equal(_keep_rows(alone)[0], _keep_rows(together)[b]), f"sample {b} differs in a batch"
            if alone.hidden is not None:
                torch.testing.assert_close(alone.hidden[0], together.hidden[b], rtol=1e-4, atol=1e-5)

    def test_budget_n_keeps_all(self, tp_strategy):
        keys, attn, coords, ctx = make_inputs(tp_strategy, batch=2)
        n = coords.shape[0]
        sel = tp_strategy.select(keys, attn, coords, n, ctx)
        for row in _keep_rows(sel):
            assert torch.equal(row, torch.arange(n)), "budget = N must keep every token"
        if sel.hidden is not None and ctx.hidden is not None:
            torch.testing.assert_close(sel.hidden, ctx.hidden, msg="nothing dropped, so nothing may change")

    @pytest.mark.parametrize("budget", [0, -3, "n+1", 2.5, True])
    def test_bad_budget_is_a_clear_error(self, tp_strategy, budget):
        keys, attn, coords, ctx = make_inputs(tp_strategy, batch=1)
        n = coords.shape[0]
        value = n + 1 if budget == "n+1" else budget
        with pytest.raises(BudgetError, match=tp_strategy.name):
            tp_strategy.select(keys, attn, coords, value, ctx)

    def test_nan_input_is_a_clear_error(self, tp_strategy):
        keys, attn, coords, ctx = make_inputs(tp_strategy, batch=1)
        poisoned = False
        for name in ("keys", "attn", "hidden", "text_keys", "text_hidden", "text_embeds", "image_embeds"):
            if name not in tp_strategy.requires:
                continue
            k, a, _, c = make_inputs(tp_strategy, batch=1)
            target = {"keys": k, "attn": a}.get(name, getattr(c, name, None))
            # unravel instead of view(-1): the signal may be a non-contiguous tensor
            target[torch.unravel_index(torch.tensor(target.numel() // 2), target.shape)] = math.nan
            with pytest.raises(StrategyInputError, match=tp_strategy.name):
                tp_strategy.select(k, a, coords, 8, c)
            poisoned = True
        if not poisoned:
            pytest.skip(f"{tp_strategy.name} reads no floating-point signal")

    def test_requires_is_enough(self, tp_strategy):
        # make_inputs hands over only the required signals: the rest are None.
        keys, attn, coords, ctx = make_inputs(tp_strategy, batch=1, only_required=True)
        _assert_valid(tp_strategy.select(keys, attn, coords, 10, ctx), 1, coords.shape[0], 10,
                      tp_strategy.exact_budget)
