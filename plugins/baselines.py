"""Reference baselines: keep everything, keep a seeded random subset, keep an evenly strided subset."""
import torch

from tokenprune import Selection, Strategy, hookimpl


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


def frame_budgets(budget: int, frames: int) -> list[int]:
    """The budget shared evenly between frames; with fewer tokens than frames, evenly spaced frames get one."""
    if budget >= frames:
        return _split(budget, frames)
    chosen = set(_spread(budget, frames))
    return [1 if f in chosen else 0 for f in range(frames)]


def frame_rows(k: int, h: int, w: int) -> list[tuple[int, int]]:
    """The lattice of k tokens in an h x w frame: (row, tokens in that row) per lattice row."""
    if k == 0:
        return []
    rows = min(h, k, max(-(-k // w), round((k * h / w) ** 0.5), 1))
    return list(zip(_spread(rows, h), _split(k, rows)))


def lattice_regions(coords: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The lattice (ascending indices) and, for every token, which lattice token's window holds it.

    Needs a complete (t,) row, col grid. Lattice row b owns the rows [b*H/rows, (b+1)*H/rows);
    inside it, its j-th token owns the columns [j*W/n, (j+1)*W/n). Each lattice point lies in its
    own window, and windows are numbered in the kept tokens' ascending order.
    """
    c = coords.long().cpu()
    if c.shape[1] == 2:
        c = torch.cat([torch.zeros_like(c[:, :1]), c], dim=1)
    T, H, W = (int(c[:, i].max()) + 1 for i in range(3))
    if c.shape[0] != T * H * W or len({tuple(p) for p in c.tolist()}) != c.shape[0]:
        raise ValueError("lattice regions need a complete grid of (t, row, col) coordinates")
    t, r, w = c.unbind(1)
    raster = t * H * W + r * W + w
    per_frame = frame_budgets(budget, T)
    region_of_raster = torch.empty(T * H * W, dtype=torch.long)
    keep = []
    offset = 0
    for frame, k in enumerate(per_frame):
        if k == 0:
            continue
        layout = frame_rows(k, H, W)
        band = torch.tensor([min(rr * len(layout) // H, len(layout) - 1) for rr in range(H)])
        counts = torch.tensor([n for _, n in layout])
        starts = torch.cumsum(counts, 0) - counts
        rows_b, cols = band[:, None].expand(H, W), torch.arange(W)[None, :].expand(H, W)
        region_of_raster[frame * H * W:(frame + 1) * H * W] = (offset + starts[rows_b] + cols * counts[rows_b] // W).flatten()
        for row, n in layout:
            keep += [frame * H * W + row * W + col for col in _spread(n, W)]
        offset += k
    filled = [f for f, k in enumerate(per_frame) if k > 0]
    for frame, k in enumerate(per_frame):  # frames without a lattice token pool into the nearest frame's windows
        if k == 0:
            src = min(filled, key=lambda g: (abs(g - frame), g))
            region_of_raster[frame * H * W:(frame + 1) * H * W] = region_of_raster[src * H * W:(src + 1) * H * W]
    region = region_of_raster[raster]
    index_of = torch.empty(c.shape[0], dtype=torch.long)  # raster position -> token index (any coords order)
    index_of[raster] = torch.arange(c.shape[0])
    return index_of[torch.tensor(keep, dtype=torch.long)].sort().values, region


def lattice_indices(coords: torch.Tensor, budget: int) -> torch.Tensor:
    """Ascending indices of an even lattice of ``budget`` tokens over (row, col) or (t, row, col) coords."""
    c = coords.long().cpu()
    if c.shape[1] == 2:
        c = torch.cat([torch.zeros_like(c[:, :1]), c], dim=1)
    T, H, W = (int(c[:, i].max()) + 1 for i in range(3))
    where = {tuple(p): i for i, p in enumerate(c.tolist())}
    frames = sorted({t for t, _, _ in where})
    per_frame = frame_budgets(budget, len(frames))
    picked = []
    for frame, k in zip(frames, per_frame):
        cells = [(r, w) for r in range(H) for w in range(W) if (frame, r, w) in where]
        if k >= len(cells):
            picked += [where[(frame, r, w)] for r, w in cells]
            continue
        chosen = []
        for r, n_in_row in frame_rows(k, H, W):
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
