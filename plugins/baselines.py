"""Reference baselines: keep everything, keep a seeded random subset, keep an evenly strided subset."""
import torch

from tokenprune import Param, Selection, Strategy, hookimpl


class Vanilla(Strategy):
    """No pruning: keeps all N visual tokens whatever the budget (the unpruned reference)."""

    name = "vanilla"
    stage = "pre_llm"
    requires = frozenset()
    paper = "-"

    @property
    def exact_budget(self):
        return False  # by definition it ignores the budget

    def select(self, keys, attn, coords, budget, ctx):
        B, N = _batch(keys, attn, ctx), coords.shape[0]
        keep = torch.arange(N, device=coords.device).expand(B, N).clone()
        return Selection(keep=keep, info={"note": "vanilla keeps all tokens"})


class Random(Strategy):
    """Keeps ``budget`` tokens drawn uniformly without replacement, seeded per sample through ctx.generator."""

    name = "random"
    stage = "pre_llm"
    requires = frozenset()
    paper = "FastV (arXiv 2403.06764) uses random selection as its K=0 control"

    def select(self, keys, attn, coords, budget, ctx):
        B, N = _batch(keys, attn, ctx), coords.shape[0]
        rows = [torch.randperm(N, generator=ctx.rng(b))[:budget].sort().values for b in range(B)]
        return Selection(keep=torch.stack(rows).to(coords.device))


class Uniform(Strategy):
    """Keeps ``budget`` tokens on an even 2-D lattice over the grid (per frame for video).

    The budget is shared evenly between frames; inside a frame it is laid on
    r = round(sqrt(k*H/W)) rows (at least ceil(k/W)), evenly spaced and centred,
    each row taking floor or ceil of k/r tokens at evenly spaced, centred columns.
    The count is exact and the picks cover the frame in both directions.
    """

    name = "uniform"
    stage = "pre_llm"
    requires = frozenset()
    paper = "-"

    def select(self, keys, attn, coords, budget, ctx):
        B = _batch(keys, attn, ctx)
        idx = lattice_indices(coords, budget)
        return Selection(keep=idx.expand(B, budget).clone().to(coords.device))


def _spread(count: int, size: int) -> list[int]:
    """``count`` centred, evenly spaced positions in range(size)."""
    return [int((i + 0.5) * size / count) for i in range(count)]


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def lattice_indices(coords: torch.Tensor, budget: int) -> torch.Tensor:
    """Ascending indices of an even lattice of ``budget`` tokens over (row, col) or (t, row, col) coords."""
    c = coords.long().cpu()
    if c.shape[1] == 2:
        c = torch.cat([torch.zeros_like(c[:, :1]), c], dim=1)
    T, H, W = (int(c[:, i].max()) + 1 for i in range(3))
    where = {tuple(p): i for i, p in enumerate(c.tolist())}
    frames = sorted({t for t, _, _ in where})
    per_frame = _split(budget, len(frames))
    picked = []
    for frame, k in zip(frames, per_frame):
        cells = [(r, w) for r in range(H) for w in range(W) if (frame, r, w) in where]
        if k >= len(cells):
            picked += [where[(frame, r, w)] for r, w in cells]
            continue
        rows = min(H, max(-(-k // W), round((k * H / W) ** 0.5), 1))
        chosen = []
        for r, n_in_row in zip(_spread(rows, H), _split(k, rows)):
            chosen += [(r, w) for w in _spread(n_in_row, W)]
        picked += [where[(frame, r, w)] for r, w in chosen if (frame, r, w) in where]
    picked = sorted(set(picked))
    if len(picked) < budget:  # irregular grids: top up evenly from what is left
        rest = [i for i in range(len(c)) if i not in set(picked)]
        picked = sorted(picked + [rest[j] for j in _spread(budget - len(picked), len(rest))])
    return torch.tensor(picked[:budget], dtype=torch.long)


def _batch(keys, attn, ctx):
    for t in (keys, attn, ctx.hidden):
        if t is not None:
            return t.shape[0]
    return ctx.batch_size


@hookimpl
def register_strategies(register):
    register(Vanilla)
    register(Random)
    register(Uniform)
