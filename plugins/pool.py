"""The `pool` sanity baseline: average-pool the visual grid down to exactly `budget` tokens."""
import torch

from tokenprune import Param, Selection, Strategy, hookimpl
from tokenprune import StrategyInputError
from tokenprune_plugins.baselines import lattice_regions


class Pool(Strategy):
    """2-D average pooling of the visual tokens down to the budget (a sanity baseline, before the LLM).

    The budget's tokens sit on the same even lattice as `uniform` (per frame for video).
    The grid is cut into one window per lattice token: lattice row b owns a band of
    rows, and each of its tokens an equal share of the columns. Each lattice token is
    replaced by the mean (or max) of its window. When the budget tiles the grid exactly
    (e.g. 576 -> 144 on 24x24) this is plain s x s average pooling; other budgets give
    near-equal windows. The kept token keeps the position of its lattice point.
    """

    name = "pool"
    stage = "pre_llm"
    requires = frozenset({"hidden"})
    params = {"mode": Param("mean", "how a region is summarised", str, choices=("mean", "max"))}
    paper = "pooling baseline, e.g. LLaVA-PruMerge / 'Feather the Throttle' sanity checks"

    def select(self, keys, attn, coords, budget, ctx):
        hidden = ctx.hidden
        try:
            keep, region = lattice_regions(coords, budget)
        except ValueError as exc:
            raise StrategyInputError(f"strategy 'pool': {exc}") from None
        keep, region = keep.to(hidden.device), region.to(hidden.device)
        if self.cfg.mode == "mean":
            sums = torch.zeros(hidden.shape[0], budget, hidden.shape[2], dtype=torch.float32, device=hidden.device)
            sums.index_add_(1, region, hidden.float())
            sizes = torch.bincount(region, minlength=budget).clamp(min=1).to(sums)
            pooled = sums / sizes[None, :, None]
        else:
            pooled = torch.full((hidden.shape[0], budget, hidden.shape[2]), float("-inf"), device=hidden.device)
            pooled = pooled.scatter_reduce(1, region[None, :, None].expand_as(hidden), hidden.float(), "amax")
        return Selection(keep=keep.expand(hidden.shape[0], budget).clone(), hidden=pooled.to(hidden.dtype),
                         info={"region_sizes": torch.bincount(region, minlength=budget).tolist()})


@hookimpl
def register_strategies(register):
    register(Pool)
