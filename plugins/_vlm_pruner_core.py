"""VLM-Pruner selection core (arXiv 2512.02700): pure tensor code, no model glue.

The steps follow docs/methods/vlm_pruner.md:
  stage 0  top-q high-variance channels of the hidden states -> unit rows (cosine = dot product)
  stage 1  pivots: max-min in key space, first = largest L1 norm (or top-kappa L1 norm)
  stage 2  parallel greedy over chunks with a rising threshold, BSS-modulated similarity
  stage 3  SWA: every dropped token merges into its most similar kept token

Everything is batched over [B, N, ...] where that pays. Python loops run over pivots,
greedy steps (one chunk per sample per step) and blocks of tokens (the variance),
and over samples only in the memory-bound channel screen (a sample's states stay in
cache between its passes) and around one matrix-vector product each; never over
single tokens.

Speed: the official code compares every chunk against the whole selected set. Here
each token carries two running reductions over the selected set (its best raw
cosine and its nearest grid distance), updated only with the columns of newly
accepted tokens, so a chunk costs O(N * chunk). Chunks that would accept nothing
leave the state untouched, so a step jumps straight to the next chunk that accepts
something: the selection is the same as walking the chunks one by one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tokenprune import StrategyInputError

COS_EPS = 1e-8  # norm floor of torch's cosine similarity
SWA_EPS = 1e-8  # floor of the SWA weight sum (official)
BLOCK_FLOATS = 1 << 18  # 1 MiB of float32: temporaries of the blocked variance
MATRIX_MAX_FLOATS = 1 << 24  # 64 MiB of float32: larger similarity/distance matrices are not built


@dataclass(frozen=True)
class PrunerSettings:
    """Resolved hyper-parameters (see the strategy's params for their meaning)."""

    kappa: int = 4
    pivots: str = "maxmin"
    top_q: int = 256
    lam: float = 0.5
    bss: bool = True
    tau0: float = 0.8
    tau_step: float = 0.1
    token_batch: int = 16
    merge: bool = True
    beta: float = 0.3
    faithful: bool = False
    qwen_unmerged_grid: bool = False
    time_scale: float = 1.0


@dataclass
class PrunerOutput:
    """Per-sample results; rows with fewer kept tokens are padded with -1 at the end."""

    keep: torch.Tensor  # [B, R] ascending kept indices
    hidden: torch.Tensor | None  # [B, R, D] states of the kept tokens after SWA (None if merge is off)
    order: torch.Tensor  # [B, R] the same tokens in selection order (pivots first)
    merged: torch.Tensor  # [B, R] bool, aligned with keep: rows SWA changed
    pivots: torch.Tensor  # [B, kappa'] pivots in pick order
    final_threshold: torch.Tensor  # [B] float64, threshold of the last round that ran (nan: no round)
    rounds: torch.Tensor  # [B] rounds that ran


# ---------------------------------------------------------------- coordinates


def grid_extent(coords: torch.Tensor, grid, owner: str) -> tuple[int, int, int]:
    """(T, H, W) of the token grid: ctx.grid when given (coords must fit inside), else coords max + 1."""
    c = coords.long()
    seen = [int(c[:, i].max()) + 1 for i in range(c.shape[1])]
    if c.shape[1] == 2:
        seen = [1] + seen
    if grid is None:
        return tuple(seen)
    T, H, W = (int(v) for v in grid)
    if c.shape[1] == 2:
        T = 1
    if any(s > g for s, g in zip(seen, (T, H, W))):
        raise StrategyInputError(
            f"strategy {owner!r}: coords reach (t, row, col) extent {tuple(seen)} outside ctx.grid {tuple(grid)}"
        )
    return T, H, W


def check_coords(coords: torch.Tensor, owner: str):
    if coords.is_floating_point() and not bool((coords == coords.round()).all()):
        raise StrategyInputError(f"strategy {owner!r}: coords must be integer grid positions, got fractional values")
    if bool((coords < 0).any()):
        raise StrategyInputError(f"strategy {owner!r}: coords must be non-negative, got min {coords.min().item()}")


def bss_positions(coords: torch.Tensor, extent, *, qwen_unmerged_grid: bool, time_scale: float):
    """Positions [N, c] (float32) for the BSS distance, and 1 / D_max.

    image (row, col):     p = (col, row),               D_max = sqrt(H^2 + W^2)
    video (t, row, col):  p = (col, row, t*time_scale), D_max = sqrt(H^2 + W^2 + (time_scale*(T-1))^2)
    qwen_unmerged_grid:   raster index i laid out on the unmerged 2H x 2W grid,
                          p = (i mod 2W, i div 2W),     D_max = sqrt((2H)^2 + (2W)^2)
    """
    T, H, W = extent
    c = coords.long()
    if qwen_unmerged_grid:
        t = c[:, 0] if c.shape[1] == 3 else torch.zeros_like(c[:, 0])
        raster = (t * H + c[:, -2]) * W + c[:, -1]
        pos = torch.stack([raster % (2 * W), raster // (2 * W)], dim=1)
        return pos.float(), 1.0 / math.sqrt((2 * H) ** 2 + (2 * W) ** 2)
    pos = torch.stack([c[:, -1], c[:, -2]], dim=1).float()
    if c.shape[1] == 3:
        pos = torch.cat([pos, c[:, :1].float() * time_scale], dim=1)
    return pos, 1.0 / math.sqrt(H**2 + W**2 + (time_scale * (T - 1)) ** 2)


# ---------------------------------------------------------------- stage 0 / 1


def screened_unit_rows(h: torch.Tensor, top_q: int) -> torch.Tensor:
    """[B, N, q] float32 rows of the q highest-variance channels of ``h`` (float32), L2-normalised.

    One sample at a time: the screen reads the hidden states several times, and a
    single sample's states stay in cache between those passes, a batch's do not.
    """
    q = min(top_q, h.shape[-1])
    return torch.stack([screen_sample(x, q) for x in h.unbind(0)])


def screen_sample(x: torch.Tensor, q: int) -> torch.Tensor:
    channels = channel_variance(x).topk(q).indices
    screened = x.index_select(1, channels)
    return screened / screened.norm(dim=-1, keepdim=True).clamp_min(COS_EPS)


def channel_variance(x: torch.Tensor) -> torch.Tensor:
    """[D] unbiased variance over the tokens of x [N, D], in two passes (mean, then centred squares).

    Single-threaded CPU: the squares are summed over ~1 MiB blocks of tokens so the
    centred temporary stays in cache (about 2x faster than one whole temporary;
    Tensor.var is slower still). With several threads every block would be a
    parallel region, and those cost far more than cache misses when cores are
    shared, so the blocks are dropped (as on GPU).
    """
    N, D = x.shape
    mean = x.mean(dim=0, keepdim=True)
    blocked = x.device.type == "cpu" and torch.get_num_threads() == 1
    rows = max(1, BLOCK_FLOATS // D) if blocked else N
    acc = torch.zeros(D, dtype=x.dtype, device=x.device)
    for start in range(0, N, rows):
        centred = x[start:start + rows] - mean
        acc += centred.mul_(centred).sum(dim=0)
    return acc / (N - 1)


def pick_pivots(keys: torch.Tensor, count: int, rule: str) -> torch.Tensor:
    """[B, count] pivot indices in pick order."""
    k = keys.float()
    l1 = torch.linalg.vector_norm(k, ord=1, dim=-1)
    if rule == "topk_l1":
        return torch.sort(l1, dim=1, descending=True, stable=True).indices[:, :count]
    B, N = l1.shape
    rows = torch.arange(B, device=k.device)
    picks = [l1.argmax(dim=1)]
    nearest = torch.full((B, N), math.inf, dtype=k.dtype, device=k.device)  # squared L2 distance to the nearest pivot
    chosen = torch.zeros(B, N, dtype=torch.bool, device=k.device)
    sq_norms = torch.linalg.vector_norm(k, dim=-1).square() if count > 1 else None
    for _ in range(1, count):
        last = picks[-1]
        chosen[rows, last] = True
        nearest = torch.minimum(nearest, squared_distances_to(k, sq_norms, last))
        # chosen pivots are at distance 0 anyway; masking them only matters for
        # degenerate inputs (all keys equal), where it keeps the pivots unique.
        picks.append(nearest.masked_fill(chosen, -math.inf).argmax(dim=1))
    return torch.stack(picks, dim=1)


def squared_distances_to(k, sq_norms, idx):
    """[B, N] squared L2 distance from every key to key ``idx`` [B] (matmul form, like cdist's fast path)."""
    rows = torch.arange(k.shape[0], device=k.device)
    picked = k[rows, idx]
    # one matrix-vector product per sample: batched bmm with a single column is ~3x slower on CPU
    dots = torch.stack([torch.mv(k[b], picked[b]) for b in range(k.shape[0])])
    return (sq_norms + sq_norms[rows, idx][:, None] - 2.0 * dots).clamp_min(0.0)


class CosineRows:
    """Rows of the [N, N] cosine matrix M of each sample (unit rows: cosine = dot product).

    Up to MATRIX_MAX_FLOATS entries M is built once with one batched matmul and
    rows are looked up (also sparing the many small, separately threaded matmuls a
    per-step product would cost); beyond that rows are computed on demand.
    M is symmetric (up to rounding), so a row also serves as the column of the same token.
    """

    MATRIX_MAX_FLOATS = MATRIX_MAX_FLOATS

    def __init__(self, unit: torch.Tensor):
        B, N, _ = unit.shape
        self.unit, self.N, self.flat = unit, N, None
        self.rows = torch.arange(B, device=unit.device)[:, None]
        if B * N * N <= self.MATRIX_MAX_FLOATS:
            self.flat = torch.bmm(unit, unit.transpose(1, 2)).view(B * N, N)

    def rows_for(self, idx: torch.Tensor) -> torch.Tensor:
        """[B, m, N] cosine between the tokens ``idx`` [B, m] and every token of the same sample."""
        if self.flat is not None:
            return self.flat.index_select(0, (self.rows * self.N + idx).reshape(-1)).view(*idx.shape, self.N)
        return torch.bmm(self.unit[self.rows, idx], self.unit.transpose(1, 2))


class GridDistances:
    """Rows of the [N, N] Euclidean distance matrix between token positions.

    Up to MATRIX_MAX_FLOATS entries the matrix is built once (exact per-axis sums,
    no [N, N, c] temporary) and rows are looked up; beyond that (long videos) the
    rows are computed from the positions on demand, so memory stays O(N).
    """

    MATRIX_MAX_FLOATS = MATRIX_MAX_FLOATS

    def __init__(self, pos: torch.Tensor):
        self.pos, self.matrix = pos, None
        if len(pos) ** 2 <= self.MATRIX_MAX_FLOATS:
            self.matrix = self.rows_for(torch.arange(len(pos), device=pos.device))

    def rows_for(self, idx: torch.Tensor) -> torch.Tensor:
        """[*idx.shape, N] distances from the tokens ``idx`` to every token."""
        if self.matrix is not None:
            return self.matrix.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)
        picked = self.pos[idx]  # [..., c]
        sq = sum((picked[..., c, None] - self.pos[:, c]).square() for c in range(self.pos.shape[1]))
        return sq.sqrt()


# ---------------------------------------------------------------- stage 2


def jump_threshold(tau: torch.Tensor, best: torch.Tensor, step: float) -> torch.Tensor:
    """First tau + k*step (k >= 1) whose float32 value lies above ``best`` (the default-mode fill rule)."""
    if step <= 0:
        return torch.nextafter(best, torch.full_like(best, math.inf)).double()
    k = torch.floor((best.double() - tau) / step).clamp_min(0) + 1
    nxt = tau + k * step
    for _ in range(2):  # float rounding can leave it one step short
        nxt = torch.where(nxt.float() <= best, nxt + step, nxt)
    return nxt


class ParallelGreedy:
    """Stage 2 state for a batch: the selected set grows chunk by chunk, round by round.

    Per token it keeps ``best_sim`` (max raw cosine to the selected set) and
    ``near`` (min grid distance to it), so the BSS score of any candidate is
    best_sim * (1 + lam * near / D_max), which equals the max of the modulated
    row because the factor is positive and rounding is monotone.

    Each sample walks its own rounds and chunks; samples are advanced together,
    one chunk each per step, with masks (a finished sample just idles).
    """

    def __init__(self, cos: CosineRows, dist, inv_dmax, pivots, budget, s: PrunerSettings):
        B, N = cos.unit.shape[:2]
        dev = cos.unit.device
        self.cos, self.dist, self.inv_dmax, self.budget, self.s = cos, dist, inv_dmax, budget, s
        self.N, self.chunk = N, s.token_batch
        self.none = N + s.token_batch  # "no accepted slot": beyond every chunk, the first included
        self.width = max(budget, pivots.shape[1])  # faithful keeps every pivot even if budget < kappa
        self.rows = torch.arange(B, device=dev)[:, None]
        self.slots = torch.arange(N, device=dev)
        self.offsets = torch.arange(s.token_batch, device=dev)
        self.anchor = pivots[:, :1]  # always selected: stands in for members that are not taken
        self.order = torch.full((B, self.width + 1), -1, dtype=torch.long, device=dev)  # last column: dump
        self.selected = torch.zeros(B, N + 1, dtype=torch.bool, device=dev)  # last column: dump
        self.best_sim = torch.full((B, N), -math.inf, dtype=torch.float32, device=dev)
        self.near = torch.full((B, N), math.inf, dtype=torch.float32, device=dev)
        self.count = torch.zeros(B, dtype=torch.long, device=dev)
        self.tau = torch.full((B,), math.nan, dtype=torch.float64, device=dev)
        self.tau32 = self.tau.float()
        self.tau_next = torch.full((B,), s.tau0, dtype=torch.float64, device=dev)
        self.rounds = torch.zeros(B, dtype=torch.long, device=dev)
        self.perm = self.slots.expand(B, N).clone()
        self.n_cand = torch.zeros(B, dtype=torch.long, device=dev)
        self.ptr = torch.zeros(B, dtype=torch.long, device=dev)
        self.active = torch.ones(B, dtype=torch.bool, device=dev)
        self.need_round = torch.ones(B, dtype=torch.bool, device=dev)
        everything = torch.ones_like(pivots, dtype=torch.bool)
        self.absorb(pivots, everything, torch.arange(pivots.shape[1], device=dev).expand_as(pivots))

    def scores(self) -> torch.Tensor:
        """[B, N] BSS-modulated max similarity of each token to the selected set."""
        if not self.s.bss:
            return self.best_sim
        return self.best_sim * (1.0 + self.s.lam * (self.near * self.inv_dmax))

    def absorb(self, members, take, rank):
        """Append members[take] at positions count + rank and fold their columns into the running reductions."""
        self.order.scatter_(1, torch.where(take, self.count[:, None] + rank, self.width), members)
        self.selected.scatter_(1, torch.where(take, members, self.N), True)
        # a member that is not taken is replaced by a selected token: max/min over it change nothing
        cols = torch.where(take, members, self.anchor)
        self.best_sim = torch.maximum(self.best_sim, self.cos.rows_for(cols).amax(1))
        if self.s.bss:  # distances are symmetric: rows are the columns we need
            near = self.dist.rows_for(cols).amin(1)
            self.near = torch.minimum(self.near, near)
        self.count += take.sum(1)
        self.active &= self.count < self.budget

    def start_rounds(self, starting):
        """New round for ``starting`` samples: next threshold, candidates ranked by 1 - score (descending)."""
        self.tau = torch.where(starting, self.tau_next, self.tau)
        self.tau32 = self.tau.float()  # scores are float32; the official code compares them to a Python float
        self.tau_next = torch.where(starting, self.tau + self.s.tau_step, self.tau_next)
        self.rounds += starting
        r = (1.0 - self.scores()).masked_fill(self.selected[:, : self.N], -math.inf)
        ranked = torch.sort(r, dim=1, descending=True, stable=True).indices  # selected tokens sink to the end
        self.perm = torch.where(starting[:, None], ranked, self.perm)
        self.n_cand = torch.where(starting, self.N - self.count, self.n_cand)
        self.ptr = torch.where(starting, 0, self.ptr)
        self.need_round &= ~starting

    def step(self):
        """Process, for every active sample, the next chunk that accepts something (or end its round).

        Chunks that accept nothing leave the state unchanged, so skipping to the
        first chunk holding an accepted slot gives the same selection.
        """
        s_perm = self.scores().gather(1, self.perm)
        start = torch.where(self.active, self.ptr, self.N)[:, None]  # inactive samples see no live slot
        live = (self.slots >= start) & (self.slots < self.n_cand[:, None])
        accept = live & (s_perm < self.tau32[:, None])
        first = torch.where(accept, self.slots, self.none).amin(1)  # inactive samples: none
        fresh = self.ptr == 0
        # official: a round whose first chunk accepts nothing ends (and in faithful mode the selection stops);
        # later in a round, nothing accepted means the round is spent
        productive = first < torch.where(fresh, self.chunk, self.none)
        ended = self.active & ~productive
        self.need_round |= ended & ~fresh
        empty = ended & fresh
        if bool(empty.any()):
            self.on_empty_round(empty, torch.where(live, s_perm, math.inf)[:, : self.chunk].amin(1))
        if bool(productive.any()):
            self.take_chunk(productive, torch.div(first, self.chunk, rounding_mode="floor") * self.chunk,
                            s_perm, accept)

    def on_empty_round(self, empty, best):
        if self.s.faithful:
            self.active &= ~empty  # official: under-fill
            return
        self.tau_next = torch.where(empty, jump_threshold(self.tau, best, self.s.tau_step), self.tau_next)
        self.need_round |= empty

    def take_chunk(self, productive, start, s_perm, accept):
        """Accept the chunk at ``start``: members below tau, or the best (budget - count) if too many."""
        at = start[:, None] + self.offsets  # positions in the round's ranking
        in_range = (at < self.n_cand[:, None]) & productive[:, None]
        at = at.clamp(max=self.N - 1)
        members = self.perm.gather(1, at)
        take = accept.gather(1, at) & in_range
        rank = take.cumsum(1) - 1  # chunk order
        room = self.budget - self.count
        too_many = take.sum(1) > room
        if bool(too_many.any()):
            # over the budget the official code takes the top (budget - count) of 1 - score over the chunk
            r = (1.0 - s_perm.gather(1, at)).masked_fill(~in_range, -math.inf)
            by_r = torch.sort(r, dim=1, descending=True, stable=True).indices
            rank_r = torch.empty_like(by_r).scatter_(1, by_r, self.offsets.expand_as(by_r))
            take = torch.where(too_many[:, None], in_range & (rank_r < room[:, None]), take)
            rank = torch.where(too_many[:, None], rank_r, rank)
        self.absorb(members, take, rank)
        self.ptr = torch.where(productive, start + self.chunk, self.ptr)
        self.need_round |= productive & (self.ptr >= self.n_cand)

    def run(self):
        while True:
            starting = self.need_round & self.active
            if bool(starting.any()):
                self.start_rounds(starting)
            if not bool(self.active.any()):
                return
            self.step()


# ---------------------------------------------------------------- stage 3


def swa_merge(hidden, hidden32, cos: CosineRows, order, keep, selected, beta):
    """SWA: [B, W, D] states of the kept tokens (aligned with ``keep``) and the [B, W] mask of rows changed.

    Each dropped token goes to its most cosine-similar kept token (raw cosine,
    ties to the earliest selected, hence the columns in selection ``order``); kept
    token j becomes beta * H_j + (1 - beta) * sum_u (w_u / max(Z_j, eps)) H_u when
    Z_j = sum_u w_u > 0, and stays bit-identical otherwise.
    """
    B, N, _ = hidden.shape
    W = order.shape[1]
    valid = order >= 0
    sims = cos.rows_for(order.clamp(min=0))  # [B, W, N]
    if not bool(valid.all()):  # padded slots (faithful under-fill) must never win
        sims = sims.masked_fill(~valid[..., None], -math.inf)
    best = sims.argmax(1)  # first maximum: the earliest selected wins ties
    weight = sims.gather(1, best[:, None, :]).squeeze(1)
    slot = ascending_slot(order, keep, N).gather(1, best)
    dropped = ~selected
    slot = torch.where(dropped, slot, W)  # kept tokens feed a dump slot
    weight = torch.where(dropped, weight, 0.0)
    aggregate, total = weighted_means(hidden32, weight, slot, W + 1)
    kept = hidden[torch.arange(B, device=hidden.device)[:, None], keep.clamp(min=0)]
    changed = (keep >= 0) & (total[:, :W] > 0)
    # lerp with weight 1 returns `kept` exactly, so unchanged rows stay bit-identical
    share = torch.where(changed, beta, 1.0).to(torch.float32)[..., None]
    return torch.lerp(aggregate[:, :W], kept.float(), share).to(hidden.dtype), changed


def ascending_slot(order: torch.Tensor, keep: torch.Tensor, N: int) -> torch.Tensor:
    """[B, W] position in ``keep`` (ascending, -1 padded) of each entry of ``order`` (selection order)."""
    return torch.searchsorted(torch.where(keep >= 0, keep, N), order.clamp(min=0).contiguous())


def weighted_means(h, weight, target, groups):
    """Per target group: sum_u (w_u / max(Z, eps)) h_u [B, groups, D] and the weight sums Z [B, groups].

    CPU: scatter-add sums and a sparse one-hot bmm, O(N*D) (index_add and a dense
    matmul are several times slower there). Other devices: a dense one-hot matrix,
    summed and multiplied without atomics, so results are deterministic.
    """
    if h.device.type == "cpu":
        return weighted_means_sparse(h, weight, target, groups)
    return weighted_means_dense(h, weight, target, groups)


def weighted_means_sparse(h, weight, target, groups):
    B, N, _ = h.shape
    total = torch.zeros(B, groups, dtype=torch.float32).scatter_add_(1, target, weight)
    alpha = weight / total.gather(1, target).clamp_min(SWA_EPS)
    sample = torch.arange(B)[:, None].expand(B, N)
    token = torch.arange(N).expand(B, N)
    index = torch.stack([sample.reshape(-1), target.reshape(-1), token.reshape(-1)])
    assign = torch.sparse_coo_tensor(index, alpha.reshape(-1), (B, groups, N), check_invariants=False)
    if h.stride(-1) != 1:
        h = h.contiguous()  # the sparse kernel walks rows; a channel-major layout would be copied per call anyway
    return torch.bmm(assign, h), total


def weighted_means_dense(h, weight, target, groups):
    B, N, _ = h.shape
    assign = torch.zeros(B, groups, N, dtype=torch.float32, device=h.device)
    assign.scatter_(1, target[:, None, :], weight[:, None, :])
    total = assign.sum(-1)
    return torch.bmm(assign / total.clamp_min(SWA_EPS)[..., None], h), total


# ---------------------------------------------------------------- whole method


def ascending(order: torch.Tensor, N: int) -> torch.Tensor:
    """Each row of a -1 padded index tensor sorted ascending, padding last."""
    values = torch.where(order >= 0, order, N).sort(dim=1).values
    return torch.where(values == N, -1, values)


def vlm_prune(keys, hidden, dist: GridDistances | None, inv_dmax: float, budget: int,
              s: PrunerSettings) -> PrunerOutput:
    """Run stages 0-3 on keys [B, N, Dk] and hidden [B, N, D]; ``dist`` (grid distances) may be None if bss is off."""
    B, N, _ = hidden.shape
    n_pivots = min(s.kappa, N) if s.faithful else min(s.kappa, N, budget)
    hidden32 = hidden.float()  # no copy for float32 inputs
    unit = screened_unit_rows(hidden32, s.top_q)
    pivots = pick_pivots(keys, n_pivots, s.pivots)
    cos = CosineRows(unit)
    greedy = ParallelGreedy(cos, dist if s.bss else None, inv_dmax, pivots, budget, s)
    greedy.run()
    width = int(greedy.count.max())
    order = greedy.order[:, :width]
    keep = ascending(order, N)
    merged_rows, changed = None, torch.zeros_like(keep, dtype=torch.bool)
    if s.merge:
        merged_rows, changed = swa_merge(hidden, hidden32, cos, order, keep, greedy.selected[:, :N], s.beta)
        if width > int(greedy.count.min()):
            merged_rows = merged_rows.masked_fill((keep < 0)[..., None], 0.0)
    return PrunerOutput(keep=keep, hidden=merged_rows, order=order, merged=changed, pivots=pivots,
                        final_threshold=greedy.tau, rounds=greedy.rounds)
