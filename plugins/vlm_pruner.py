"""Built-in strategy plugin `vlm_pruner`: VLM-Pruner (arXiv 2512.02700), the project's flagship.

The algorithm lives in plugins/_vlm_pruner_core.py; this module maps the
strategy contract (params, coords, ctx) onto it.
"""
from __future__ import annotations

import torch

from tokenprune import Param, Selection, Strategy, hookimpl

from ._vlm_pruner_core import GridDistances, PrunerSettings, bss_positions, check_coords, grid_extent, vlm_prune


class VlmPruner(Strategy):
    """VLM-Pruner: centrifugal token selection with buffering for spatial sparsity (BSS), then SWA merging.

    Prunes at the input of decoder layer K (default 2). Reads `keys` = post-RoPE keys of
    layer K-1 (heads concatenated; un-repeated KV heads give the same result) and
    `ctx.hidden` = hidden states entering layer K (un-normalised). Attention is not used.

    Steps, per sample:
      0. Cosine similarity M between image tokens on the `top_q` channels of highest
         (unbiased) variance of the hidden states; all channels if the width is smaller.
         Computed in float32 whatever the input dtype.
      1. `kappa` pivots in key space. `pivots: maxmin`: the largest-L1-norm key, then
         repeatedly the token farthest (L2) from its nearest pivot. `pivots: topk_l1`:
         the `kappa` largest L1 norms (paper ablation). Pivots are always distinct.
      2. Parallel greedy with a rising threshold. Score of a candidate i:
         s_i = max_{j selected} M[i,j] * (1 + lam * d_i / D_max), d_i = grid distance to the
         nearest selected token (`bss: false` drops the spatial factor). Round r uses
         tau0 + (r-1)*tau_step; its candidates are ranked by 1 - s (descending, ties by
         index) and walked in chunks of `token_batch`; a chunk, scored against the current
         selection, accepts its members with s < tau, or the best (budget - kept) of it
         when that would overflow. A round whose first chunk accepts nothing ends.
      3. SWA (`merge: true`): each dropped token goes to its most similar kept token (raw
         cosine, ties to the earliest selected); a kept token j with weight sum Z_j > 0
         becomes beta*H_j + (1-beta)*sum_u (M[u,j]/max(Z_j,1e-8)) H_u. Selection.hidden holds
         the kept tokens' states after SWA (aligned with keep); None when `merge: false`.

    Budget (`faithful`):
      faithful: true   the official code exactly: the selection stops at the first round
                       that accepts nothing, so fewer than `budget` tokens may be kept
                       (under-fill); a budget below kappa keeps all kappa pivots. Rows
                       with fewer tokens are padded with -1; the realised counts are in
                       info["counts"] and info["underfilled"].
      faithful: false  (default) exactly `budget` tokens. Fill rule: a round that
                       accepts nothing does not stop the selection; the threshold jumps to
                       the first value of the official sequence tau + k*tau_step (k >= 1)
                       that the best-ranked candidate is below, and rounds go on. Scores
                       are bounded, so the budget is always met. Whenever the official code
                       fills the budget, both modes select the same tokens in the same
                       order. With tau_step = 0 the threshold moves just above that
                       candidate's score. A budget below kappa keeps the first `budget`
                       pivots. budget = N keeps everything unchanged.

    Coordinates and D_max:
      The grid (T, H, W) is ctx.grid when given (coords must lie inside it), otherwise
      max(coords) + 1 along each axis.
      (row, col):      distance on (col, row); D_max = sqrt(H^2 + W^2) (LLaVA 24x24: 24*sqrt(2)).
      (t, row, col):   video; distance on (col, row, t*time_scale), so one frame step
                       weighs like `time_scale` token steps; D_max = sqrt(H^2 + W^2 +
                       (time_scale*(T-1))^2), which reduces to the image rule for one frame.
      qwen_unmerged_grid: true reproduces the official Qwen2-VL coordinate quirk: the
                       raster index i = (t*H + row)*W + col is laid out on the unmerged grid
                       (2H x 2W): position (i mod 2W, i div 2W), D_max = sqrt((2H)^2 + (2W)^2).

    info: "order" (selection order, pivots first, -1 padded), "pivots", "final_threshold"
    and "rounds" per sample, "underfilled", "merged" (kept rows SWA changed, aligned with keep).

    Batches run together (no loop over tokens; samples advance through their own rounds
    and chunks side by side), on CPU or CUDA, in float32, float16 or bfloat16; all
    similarities are float32 and the returned hidden keeps the input dtype. Ties in the
    candidate ranking go to the lower index (the official argsort is not stable).
    Row-contiguous hidden states ([B, N, D] with unit stride on D) avoid a copy.
    """

    name = "vlm_pruner"
    stage = "llm"
    layer = 2
    requires = frozenset({"keys", "hidden"})
    paper = "VLM-Pruner: Buffering for Spatial Sparsity in an Efficient VLM Centrifugal Token Pruning Paradigm (arXiv 2512.02700)"
    params = {
        "layer": Param(2, "decoder layer K at whose input tokens are pruned (needs layer K-1's keys)", int, min=1),
        "kappa": Param(4, "number of pivots (paper: kappa=4)", int, min=1),
        "pivots": Param("maxmin", "pivot rule: max-min distance in key space, or top-kappa L1 norm (ablation)",
                        str, choices=("maxmin", "topk_l1")),
        "top_q": Param(256, "high-variance hidden channels used for the cosine similarity", int, min=1),
        "lam": Param(0.5, "BSS strength: similarity scaled by 1 + lam * distance / D_max", float, min=0.0),
        "bss": Param(True, "spatial (BSS) modulation of the similarity; false = ablation without it", bool),
        "tau0": Param(0.8, "threshold of the first round", float),
        "tau_step": Param(0.1, "threshold increase per round", float, min=0.0),
        "token_batch": Param(16, "chunk size B of the parallel greedy step", int, min=1),
        "merge": Param(True, "stage 3 SWA merging of dropped tokens into kept ones; false = ablation", bool),
        "beta": Param(0.3, "SWA weight a kept token keeps on its own state", float, min=0.0, max=1.0),
        "faithful": Param(False, "reproduce the official code exactly, under-fill included", bool),
        "qwen_unmerged_grid": Param(False, "official Qwen2-VL quirk: positions on the unmerged 2H x 2W grid", bool),
        "time_scale": Param(1.0, "video: distance of one frame step, in token steps", float, min=0.0),
    }

    @property
    def exact_budget(self) -> bool:
        return not self.cfg.faithful

    def settings(self) -> PrunerSettings:
        c = self.cfg
        return PrunerSettings(
            kappa=c.kappa, pivots=c.pivots, top_q=c.top_q, lam=c.lam, bss=c.bss, tau0=c.tau0,
            tau_step=c.tau_step, token_batch=c.token_batch, merge=c.merge, beta=c.beta,
            faithful=c.faithful, qwen_unmerged_grid=c.qwen_unmerged_grid, time_scale=c.time_scale,
        )

    def select(self, keys, attn, coords, budget, ctx):
        hidden = ctx.hidden
        B, N, _ = hidden.shape
        check_coords(coords, self.name)
        if N == 1 or (budget == N and not self.cfg.faithful):
            return self.keep_everything(hidden)
        extent = grid_extent(coords, ctx.grid, self.name)
        pos, inv_dmax = bss_positions(coords, extent, qwen_unmerged_grid=self.cfg.qwen_unmerged_grid,
                                      time_scale=self.cfg.time_scale)
        dist = self.grid_distances(pos, hidden.device) if self.cfg.bss else None
        out = vlm_prune(keys, hidden, dist, inv_dmax, budget, self.settings())
        counts = (out.keep >= 0).sum(1)
        return Selection(keep=out.keep, hidden=out.hidden, info={
            "order": out.order,
            "pivots": out.pivots,
            "final_threshold": out.final_threshold.tolist(),
            "rounds": out.rounds.tolist(),
            "underfilled": (counts < budget).tolist(),
            "merged": out.merged,
            "grid": extent,
        })

    def grid_distances(self, pos, device) -> GridDistances:
        """Distances between token positions, reused while the grid stays the same (the usual case)."""
        key = (str(device), tuple(pos.shape), pos.cpu().numpy().tobytes())
        cached = getattr(self, "_grid_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        dist = GridDistances(pos.to(device))
        self._grid_cache = (key, dist)
        return dist

    def keep_everything(self, hidden):
        B, N, _ = hidden.shape
        keep = torch.arange(N, device=hidden.device).expand(B, N).clone()
        return Selection(keep=keep, hidden=hidden.clone() if self.cfg.merge else None,
                         info={"order": keep.clone(), "underfilled": [False] * B, "note": "nothing to drop"})


@hookimpl
def register_strategies(register):
    register(VlmPruner)
