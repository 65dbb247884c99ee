"""``tokenprune.apply``: attach a pruning strategy to a VLM (the engine is imported on first use)."""
from __future__ import annotations


def apply(model, strategy, budget: int | None = None, *, keep_ratio: float | None = None,
          positions: str = "original", seed: int = 0, **params):
    """Attach ``strategy`` to ``model`` so ``generate()`` prunes visual tokens; returns a PruneHandle.

    See :func:`tokenprune.engine.apply` and docs/engine.md.
    """
    from .engine import apply as engine_apply

    return engine_apply(model, strategy, budget, keep_ratio=keep_ratio, positions=positions, seed=seed, **params)
