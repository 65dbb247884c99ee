"""The pruning engine: attach a strategy to a transformers VLM so ``generate()`` prunes visual tokens.

    handle = tokenprune.apply(model, "vlm_pruner", budget=64)
    model.generate(**inputs)          # prunes at layer 2 of every prefill
    handle.records                    # what was kept, per sample
    handle.remove()                   # model back to normal (or use `with tokenprune.apply(...):`)

See docs/engine.md for the semantics (prune points, positions, cache, batches, records).
"""
from __future__ import annotations

from numbers import Integral, Real

from ..errors import BudgetError, ConfigError
from .checks import PruneError
from .handle import PruneHandle

__all__ = ["PruneError", "PruneHandle", "apply"]


def apply(model, strategy, budget: int | None = None, *, keep_ratio: float | None = None,
          positions: str = "original", seed: int = 0, **params) -> PruneHandle:
    """Attach ``strategy`` (a registered name or a Strategy instance) to ``model``.

    model       a transformers VLM of a registered family, or a tokenprune VLM (``tokenprune.models.load``)
    budget      visual tokens kept per sample (a sample with fewer keeps all of them)
    keep_ratio  instead of budget: keep round(keep_ratio * N) tokens of a sample with N (Python round,
                halves to even; at least 1)
    positions   "original" (default: kept tokens keep their position ids, gaps included) or "reindex"
    seed        base seed of the per-sample generators handed to the strategy
    params      the strategy's hyper-parameters (only with a name)
    """
    from .. import get_strategy
    from ..models import as_vlm
    from ..strategy import Strategy

    if isinstance(strategy, Strategy):
        if params:
            raise ConfigError(f"apply(): params {sorted(params)} given with a ready strategy instance "
                              f"{strategy!r}; pass its name instead")
    elif isinstance(strategy, str):
        strategy = get_strategy(strategy, **params)
    else:
        raise ConfigError(f"apply(): strategy must be a registered name or a tokenprune.Strategy, got "
                          f"{type(strategy).__name__}")
    if (budget is None) == (keep_ratio is None):
        raise BudgetError(f"apply(): give exactly one of budget or keep_ratio for strategy {strategy.name!r}")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, Integral) or budget < 1):
        raise BudgetError(f"apply(): budget must be a positive integer, got {budget!r}")
    if keep_ratio is not None and (isinstance(keep_ratio, bool) or not isinstance(keep_ratio, Real)
                                   or not 0 < keep_ratio <= 1):
        raise BudgetError(f"apply(): keep_ratio must be in (0, 1], got {keep_ratio!r}")
    vlm = as_vlm(model)
    return PruneHandle(vlm, strategy, budget=None if budget is None else int(budget),
                       keep_ratio=None if keep_ratio is None else float(keep_ratio),
                       positions=positions, seed=seed)
