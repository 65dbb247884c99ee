"""Built-in strategy plugin `divprune`: greedy max-min diversity on the projector outputs."""
from __future__ import annotations

import torch

from tokenprune import Param, Selection, Strategy, hookimpl

from tokenprune.selection import pad_rows

from ._selection_ops import symmetric_gram, unit_rows


class DivPrune(Strategy):
    """DivPrune: keep the most diverse `budget` image tokens (greedy max-min, before the LLM).

    Text-agnostic; reads only `keys` = the projector outputs (the LLM input
    embeddings of the image tokens, for LLaVA-NeXT the whole packed span,
    newline rows included).

    Algorithm (official code, vbdi/divprune):
      D = 1 - cos(k_i, k_j), the cosine-distance matrix [N, N].
      First pick: the token whose nearest other token is farthest away, i.e.
        argmax_j of the second-smallest entry of column j (the smallest is the
        token itself).
      Then repeatedly pick argmax_j min_{s picked} D[s, j].
      argmax ties go to the lowest index (torch.argmax, as the official code).
    The kept tokens are returned ascending; `info["order"]` holds the pick order.

    Precision: D is computed in float32 (float64 stays float64); the official
    code uses the model dtype (fp16/bf16), which can flip near-ties. An
    all-zero feature row (NaN in the official code) is treated as being at
    distance 1 from every token, itself included.

    Budget: the official code keeps M = round(ratio * N) with Python's round
    (SUBSET_RATIO 0.098 of 576 gives 56); tokenprune takes M as `budget`.

    `faithful` (default false):
      false: already-picked tokens are excluded from later picks, so exactly
        `budget` distinct tokens are kept.
      true: the official loop, which does not exclude them and relies on
        D[s, s] ~ 0; with exact duplicates (flat image regions) or rounding it
        can pick an index again. A repeated index is kept once (a Selection
        holds distinct tokens), so the realised count can be below `budget`;
        rows are then padded with -1, `info["duplicate_picks"]` counts the
        repeats per sample and `info["order"]` keeps the raw pick order.

    Engine note: the official LLaVA integration compacts the position ids of
    the shortened sequence (they come from the attention-mask cumsum); that
    is the engine's `positions` setting, not part of the selection.
    """

    name = "divprune"
    stage = "pre_llm"
    requires = frozenset({"keys"})
    paper = "Alvar et al., DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models, CVPR 2025"
    params = {
        "faithful": Param(False, "official loop without masking already-picked tokens (repeats possible, "
                                 "count may fall below budget)"),
    }

    @property
    def exact_budget(self) -> bool:
        return not self.cfg.faithful

    def select(self, keys, attn, coords, budget, ctx):
        distance = cosine_distance(keys)
        order = greedy_max_min(distance, budget, exclude_picked=not self.cfg.faithful)
        keep, duplicates = unique_sorted(order)
        return Selection(keep=keep, info={"order": order, "duplicate_picks": duplicates})


def cosine_distance(features: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity between all pairs of rows: [B, N, d] -> [B, N, N] (symmetric).

    One sample at a time, so each sample's normalised rows are still in cache for its Gram product.
    """
    return torch.cat([1.0 - symmetric_gram(unit_rows(features[b:b + 1])) for b in range(features.shape[0])])


def greedy_max_min(distance: torch.Tensor, count: int, *, exclude_picked: bool) -> torch.Tensor:
    """Pick order [B, count] of the greedy max-min rule on a symmetric distance matrix [B, N, N]."""
    N = distance.shape[-1]
    # first pick: farthest nearest neighbour = max over j of the 2nd-smallest entry of column j
    # (columns here and rows in the loop, as the official code reads them)
    if N > 1:
        nearest_other = torch.topk(distance, 2, dim=-2, largest=False).values[:, 1]
    else:
        nearest_other = distance[:, 0]
    first = nearest_other.argmax(dim=-1)
    loop = _greedy_loop_numpy if distance.device.type == "cpu" else _greedy_loop_torch
    return loop(distance, first, count, exclude_picked)


def _greedy_loop_torch(distance: torch.Tensor, first: torch.Tensor, count: int, exclude_picked: bool):
    """Picks after the first, on any device: [B, count]."""
    rows = torch.arange(distance.shape[0], device=distance.device)
    picked = first
    order = [picked]
    # running distance of every token to its nearest picked token
    score = distance[rows, picked].clone()
    for _ in range(count - 1):
        if exclude_picked:
            score[rows, picked] = float("-inf")
        picked = score.argmax(dim=-1)
        order.append(picked)
        torch.minimum(score, distance[rows, picked], out=score)
    return torch.stack(order, dim=1)


def _greedy_loop_numpy(distance: torch.Tensor, first: torch.Tensor, count: int, exclude_picked: bool):
    """The same loop on CPU through NumPy views: identical picks (first index among equal maxima,
    as torch.argmax), about 20x less overhead per step than torch's dispatcher at N=576."""
    import numpy as np

    dist = distance.numpy()
    B = dist.shape[0]
    rows = np.arange(B)
    order = np.empty((B, count), dtype=np.int64)
    picked = first.numpy()
    order[:, 0] = picked
    score = dist[rows, picked].copy()
    for step in range(1, count):
        if exclude_picked:
            score[rows, picked] = -np.inf
        picked = score.argmax(axis=-1)
        order[:, step] = picked
        np.minimum(score, dist[rows, picked], out=score)
    return torch.from_numpy(order)


def unique_sorted(order: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Ascending distinct indices per row (right-padded with -1) and the number of repeats per row."""
    ascending = order.sort(dim=-1).values
    repeated = torch.zeros_like(ascending, dtype=torch.bool)
    repeated[:, 1:] = ascending[:, 1:] == ascending[:, :-1]
    duplicates = repeated.sum(dim=1).tolist()
    if not any(duplicates):
        return ascending, duplicates
    return pad_rows([row[~rep] for row, rep in zip(ascending, repeated)]), duplicates


@hookimpl
def register_strategies(register):
    register(DivPrune)
