"""Built-in strategy plugin `saint`: similarity-graph token dropping (SAINT), LLM and ViT-graph variants.

Method and deviations: docs/methods/saint.md (official code ArmenJeddi/saint @baaff952, re-implemented, not copied).
The two official variants run at different stages, and the official hybrid mode chains them:
  saint         variant A, bipartite threshold vote (LLM stage)
  saint_vit     variant B, iterative full-graph drop (before the LLM)
  saint_hybrid  saint_vit before the LLM, then saint at layer K, in the same prefill (a TwoStage strategy)
"""
from __future__ import annotations

import math

import torch

from tokenprune import Param, Selection, Strategy, StrategyInputError, hookimpl
from tokenprune import TwoStage


class Saint(Strategy):
    """SAINT, LLM mode (variant A): drop the most redundant tokens of a bipartite similarity graph.

    Runs at the input of decoder layer K (default 8: it reads the keys of layer 7, the first of the
    official pruning layers 7..16 for LLaVA-1.5). Metric: the post-RoPE keys of layer K-1 averaged
    over heads (see `head_dim`), compared by cosine.

    One round: number the surviving tokens 0..n-1 in original order; even ones are sources (may be
    dropped), odd ones destinations (always kept this round). A source-destination pair is an edge
    when cos >= `threshold`. The vote r counts the sources with at least `min_degree` edges. Sources
    are ranked by deg * exp(gamma * (mean edge similarity - threshold)), or by their mean similarity
    to all destinations when they have no edge, and the r top-ranked sources are dropped. At most
    ceil(n/2) tokens can go in one round.

    `faithful: true` (official, threshold only): exactly one round with r = the vote, so the kept
    count is data-dependent and the budget is ignored (exact_budget is False; shorter rows are
    padded with -1; realised counts are in info["counts"]). info["official_order"] holds the
    official return order (surviving sources by score, then all destinations) before the sort.
    The official code averages the vote over the batch but only ever ran batch 1; here each
    sample votes for itself. The official pipeline repeats the round after every layer 7..16 with
    fresh keys; tokenprune prunes once, so this is one round on layer K-1's keys.

    Default (budget-capped, exactly `budget` kept): the official round is repeated on the
    survivors, re-numbered each round as the official code does at its next layer, reusing the
    similarities of layer K-1's keys (the engine prunes at one layer only). A round drops
    r = min(n - budget, max(vote, ceil((n - budget) / rounds_left))) sources by rank, with
    rounds_left = `rounds` minus the rounds done (at least 1): the vote decides while it is large
    enough, and a steady pace reaches the budget within `rounds` rounds (10, the number of official
    pruning layers) when the vote alone would not. Rounds continue past `rounds` only when
    ceil(n/2) sources are too few to reach the budget. info["dropped_by_vote"] and
    info["dropped_forced"] count per sample how many drops the vote asked for and how many were
    added to meet the budget; info["rounds"] is the number of rounds run.

    `head_dim`: keys arrive with heads concatenated ([B, N, heads * head_dim]); the official metric
    is their mean over heads. The head size comes from this param, else from
    ctx.extras["head_dim"] (the engine sets it from the model config); if neither is given the keys
    are used as they are (concatenated heads: a different metric from the official one).
    info["heads_averaged"] says how many heads were averaged (1 = none).

    Deviations from the official integration that the engine controls: pruning happens at one
    layer (not 10); kept tokens keep their original positions (as officially); the official decode
    off-by-one in positions is not reproduced. The hybrid mode (ViT then LLM) is `saint_hybrid`.
    """

    name = "saint"
    stage = "llm"
    layer = 8
    requires = frozenset({"keys"})
    paper = "Jeddi et al., Similarity-Aware Token Pruning: Your VLM but Faster (arXiv 2503.11549)"
    params = {
        "threshold": Param(0.83, "cosine similarity at which a source-destination pair is an edge (tau; "
                                 "official LLaVA config 0.83, function default 0.82)", min=-1.0, max=1.0),
        "min_degree": Param(5, "edges a source needs to vote for dropping (K)", min=1),
        "gamma": Param(10.0, "sharpness of the redundancy score deg * exp(gamma * (mean edge sim - tau))", min=0.0),
        "rounds": Param(10, "budget mode: rounds over which drops beyond the vote are spread "
                            "(10 = official pruning layers 7..16)", min=1),
        "head_dim": Param(None, "size of one attention head, to average the keys over heads; "
                                "null = ctx.extras['head_dim'], else use the keys as they are",
                          type=int, min=1, nullable=True),
        "faithful": Param(False, "official: one threshold-vote round, data-dependent count, budget ignored"),
    }

    @property
    def exact_budget(self) -> bool:
        return not self.cfg.faithful

    def select(self, keys, attn, coords, budget, ctx):
        metric, heads = head_mean_keys(self.name, keys, self.cfg.head_dim or ctx.extras.get("head_dim"))
        graph = dict(threshold=self.cfg.threshold, min_degree=self.cfg.min_degree, gamma=self.cfg.gamma)
        if self.cfg.faithful:
            alive, dropped_by_vote, official_order = saint_drop_once(metric, **graph)
            forced, rounds = torch.zeros_like(dropped_by_vote), 1
        else:
            alive, dropped_by_vote, forced, rounds = saint_drop_to_budget(metric, budget, rounds=self.cfg.rounds, **graph)
        info = {"heads_averaged": heads, "dropped_by_vote": dropped_by_vote.tolist(),
                "dropped_forced": forced.tolist(), "rounds": rounds}
        if self.cfg.faithful:
            info["official_order"] = official_order
        return Selection(keep=mask_to_padded_indices(alive), info=info)


class SaintViT(Strategy):
    """SAINT, ViT-graph mode (variant B): iteratively drop the tokens with the largest weighted degree.

    Runs before the LLM on `keys` (the projector outputs the engine gives at pre_llm). The official
    VLM code runs it inside CLIP at layer 19 on that layer's head-averaged keys, keeping 375 of 576
    patches; tokenprune has no hook inside the vision tower, so the metric here is the LLM-side
    visual tokens and the dropped tokens still pass through the vision tower.

    Algorithm: cosine similarity S of the tokens, computed once. While more than `budget` tokens are
    alive, drop the `step` alive tokens with the largest weighted degree (row sum of S over the alive
    tokens, self-similarity included), with step = min(n - budget, max(1, n // divisor)) and
    divisor = `step_divisor` (16). Exactly `budget` tokens are kept, in original order; the per-round
    drop counts are in info["schedule"] (one list per sample; the schedule does not depend on the data).

    `faithful: true` reproduces the official quirk: the divisor is replaced by the previous step
    after every round, giving steps 36, 15, 35, 14, 34, ... for 576 tokens (the default keeps the
    divisor fixed: 36, 33, 31, ...). The official loop never ends when n // divisor reaches 0; the
    max(1, .) floor prevents that and changes nothing elsewhere.

    CLS: the official code never scores CLS and always keeps it, and its keep count includes CLS
    (keep_num 376 = 375 patches + CLS). The LLM-side visual tokens of LLaVA carry no CLS, so every
    one of the N tokens is a patch, all are scored, and `budget` counts patches only (budget 375
    corresponds to the official keep_num 376).
    """

    name = "saint_vit"
    stage = "pre_llm"
    requires = frozenset({"keys"})
    paper = "Jeddi et al., Similarity-Aware Token Pruning: Your VLM but Faster (arXiv 2503.11549)"
    params = {
        "step_divisor": Param(16, "each round drops n // step_divisor tokens (official r = 16)", min=1),
        "faithful": Param(False, "official schedule quirk: the divisor becomes the previous step"),
    }

    def select(self, keys, attn, coords, budget, ctx):
        alive, schedule = iterative_drop_full_graph(keys, budget, self.cfg.step_divisor, faithful=self.cfg.faithful)
        # one copy per sample, so a per-sample split of info never mistakes the rounds for the batch
        return Selection(keep=alive, info={"schedule": [schedule] * alive.shape[0]})


# ----------------------------------------------------------------------------------------- helpers


def head_mean_keys(owner: str, keys: torch.Tensor, head_dim: int | None) -> tuple[torch.Tensor, int]:
    """Keys averaged over heads ([B, N, heads * head_dim] -> [B, N, head_dim]) in at least float32, and the head count."""
    keys = keys.to(torch.promote_types(keys.dtype, torch.float32))
    if head_dim is None:
        return keys, 1
    B, N, width = keys.shape
    if width % head_dim:
        raise StrategyInputError(
            f"strategy {owner!r}: keys width {width} is not a multiple of head_dim={head_dim}; "
            "set the head_dim param (or ctx.extras['head_dim']) to the model's head size, or null")
    heads = width // head_dim
    return keys.view(B, N, heads, head_dim).mean(dim=2), heads


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def redundancy_scores(sim, threshold, min_degree, gamma, src_valid=None, dst_valid=None):
    """Vote [B] and drop score [B, S] of each source from source-destination similarities sim [B, S, D].

    Invalid (padding) sources score -inf and never vote; invalid destinations are ignored.
    """
    edges = sim >= threshold
    if dst_valid is not None:
        edges &= dst_valid[:, None, :]
    degree = edges.sum(dim=2)
    voters = degree >= min_degree
    if src_valid is not None:
        voters &= src_valid
    vote = voters.sum(dim=1)
    mean_edge_sim = (sim * edges).sum(dim=2) / degree.clamp(min=1)
    if dst_valid is None:
        mean_sim = sim.mean(dim=2)
    else:
        mean_sim = (sim * dst_valid[:, None, :]).sum(dim=2) / dst_valid.sum(dim=1, keepdim=True).clamp(min=1)
    score = torch.where(degree > 0, degree * torch.exp(gamma * (mean_edge_sim - threshold)), mean_sim)
    if src_valid is not None:
        score = score.masked_fill(~src_valid, -math.inf)
    return vote, score


def _top_ranked(score: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Bool [B, S]: the ``count[b]`` highest-scoring entries of each row (ties by position)."""
    ranked = score.argsort(dim=1, descending=True, stable=True)
    take = torch.arange(score.shape[1], device=score.device)[None, :] < count[:, None]
    return torch.zeros_like(take).scatter_(1, ranked, take)


def saint_drop_once(metric, *, threshold, min_degree, gamma):
    """One official round on all N tokens: (alive [B, N], dropped count [B] = the vote, official order [B, R]).

    The official return order is the surviving sources by descending score, then every destination;
    rows are padded with -1 like the kept indices.
    """
    B, N, _ = metric.shape
    unit = _unit_rows(metric)
    sim = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)
    vote, score = redundancy_scores(sim, threshold, min_degree, gamma)
    ranked = score.argsort(dim=1, descending=True, stable=True)
    survives = torch.arange(ranked.shape[1], device=metric.device)[None, :] >= vote[:, None]  # by rank
    alive = torch.ones(B, N, dtype=torch.bool, device=metric.device)
    alive[:, 0::2] = torch.zeros_like(survives).scatter_(1, ranked, survives)
    return alive, vote, _official_return_order(ranked, survives, vote, N)


def _official_return_order(ranked, survives, vote, N):
    """What the official saint_drop returns: surviving sources (in score order), then all destinations.

    With a zero vote it returns early with every index in order. Rows are padded with -1.
    """
    B = ranked.shape[0]
    destinations = torch.arange(1, N, 2, device=ranked.device).expand(B, -1)
    order = torch.cat([2 * ranked, destinations], dim=1)
    kept = torch.cat([survives, torch.ones_like(destinations, dtype=torch.bool)], dim=1)
    # stable sort on "dropped" moves the dropped sources to the end without reordering the rest
    perm = (~kept).to(torch.int8).argsort(dim=1, stable=True)
    order = order.gather(1, perm).masked_fill(~kept.gather(1, perm), -1)
    order = torch.where((vote == 0)[:, None], torch.arange(N, device=ranked.device).expand(B, N), order)
    return order[:, :int((order >= 0).sum(dim=1).max())]


def saint_drop_to_budget(metric, budget, *, threshold, min_degree, gamma, rounds):
    """Repeated rounds until exactly ``budget`` survive: (alive [B, N], dropped by vote [B], forced [B], rounds run)."""
    B, N, _ = metric.shape
    unit = _unit_rows(metric)
    sim_all = unit @ unit.transpose(1, 2)  # once; each round reads the block of its survivors
    alive = torch.ones(B, N, dtype=torch.bool, device=metric.device)
    by_vote = torch.zeros(B, dtype=torch.long, device=metric.device)
    forced = torch.zeros_like(by_vote)
    done = 0
    while True:
        excess = alive.sum(dim=1) - budget
        if not bool((excess > 0).any()):
            return alive, by_vote, forced, done
        survivors, valid = _ascending_survivors(alive)  # [B, n_max], renumbered 0..n-1 per sample
        src, dst = survivors[:, 0::2], survivors[:, 1::2]
        src_valid, dst_valid = valid[:, 0::2], valid[:, 1::2]
        sim = _block(sim_all, src, dst)
        vote, score = redundancy_scores(sim, threshold, min_degree, gamma, src_valid, dst_valid)
        pace = -(-excess // max(1, rounds - done))  # ceil: spread what the vote does not cover
        drop = torch.minimum(excess, torch.maximum(vote, pace)).clamp(min=0)
        drop = torch.minimum(drop, src_valid.sum(dim=1))
        dropped_src = _top_ranked(score, drop) & src_valid
        # padding sources point at the spare column N, so they never touch a real token
        dropped = alive.new_zeros(B, N + 1).scatter_(1, src.masked_fill(~src_valid, N), dropped_src)
        alive &= ~dropped[:, :N]
        by_vote += torch.minimum(vote, drop)
        forced += drop - torch.minimum(vote, drop)
        done += 1


def _ascending_survivors(alive: torch.Tensor):
    """Indices of the alive tokens per row, ascending, padded at the end: (indices [B, n_max], valid [B, n_max])."""
    N = alive.shape[1]
    position = torch.arange(N, device=alive.device).expand_as(alive)
    ordered = torch.where(alive, position, N).sort(dim=1).values
    n_max = int(alive.sum(dim=1).max())
    ordered = ordered[:, :n_max]
    valid = ordered < N
    return ordered.masked_fill(~valid, 0), valid


def _block(sim_all, rows, cols):
    """sim_all[b][rows[b]][:, cols[b]] for every b: [B, len(rows), len(cols)]."""
    B, N, _ = sim_all.shape
    flat_rows = (rows + N * torch.arange(B, device=rows.device)[:, None]).reshape(-1)
    picked_rows = sim_all.reshape(B * N, N).index_select(0, flat_rows).view(B, rows.shape[1], N)  # faster than gather
    return picked_rows.gather(2, cols[:, None, :].expand(-1, rows.shape[1], -1))


def mask_to_padded_indices(alive: torch.Tensor) -> torch.Tensor:
    """Ascending kept indices [B, R] (R = largest count), shorter rows padded with -1 at the end."""
    survivors, valid = _ascending_survivors(alive)
    return survivors.masked_fill(~valid, -1)


def iterative_drop_full_graph(keys, budget, step_divisor, *, faithful):
    """Variant B: (kept [B, budget] ascending, per-round drop counts). Same schedule for every sample."""
    B, N, _ = keys.shape
    unit = _unit_rows(keys)
    sim_all = unit @ unit.transpose(1, 2)
    alive = torch.arange(N, device=keys.device).expand(B, N)
    divisor, schedule = step_divisor, []
    while alive.shape[1] > budget:
        n = alive.shape[1]
        step = min(n - budget, max(1, n // divisor))
        if faithful:
            divisor = step  # the official loop reuses its divisor variable for the step
        degree = _block(sim_all, alive, alive).sum(dim=2)
        survivors = degree.argsort(dim=1, descending=True, stable=True)[:, step:]
        alive = alive.gather(1, survivors.sort(dim=1).values)  # back to ascending original order
        schedule.append(step)
    return alive.clone(), schedule


_VIT_PARAMS = ("step_divisor", "faithful")  # forwarded to saint_vit as vit_<name>
_LLM_PARAMS = ("threshold", "min_degree", "gamma", "rounds", "head_dim", "faithful")  # forwarded to saint


class SaintHybrid(TwoStage):
    """SAINT, hybrid mode: `saint_vit` before the LLM, then `saint` at decoder layer K, in one prefill.

    The official hybrid mode prunes 576 -> 375 patches in the ViT (variant B), then runs variant A
    in the LLM. Here stage 1 is `saint_vit` on the projector outputs, keeping
    N1 = round(`vit_keep_ratio` * N) of a sample's N visual tokens (default 0.651 = the official
    375/576), clamped to [budget, N] so stage 1 never keeps fewer than the final budget. Stage 2 is
    `saint` at the input of decoder layer K (`layer`, default 8 as `saint`), on the N1 tokens the
    LLM actually received: its keys are layer K-1's keys of that shorter sequence, and it keeps
    `budget` tokens (the final count). Layers 0..K-1 therefore process N1 visual tokens and layers
    K.. the budget. Kept tokens keep their original position ids in both stages.

    Params: `vit_step_divisor` and `vit_faithful` are `saint_vit`'s `step_divisor` and `faithful`;
    `threshold`, `min_degree`, `gamma`, `rounds`, `head_dim` and `faithful` are `saint`'s (with
    `faithful: true` the final count is data-dependent and the budget only caps stage 1's clamp).
    Records: "count" and "kept" are the final set (indices into the N original tokens);
    info["stage1_count"], info["stage1_budget"], info["stage1_kept"] and info["stage1_info"]
    describe stage 1.

    Engine: every adapter, positions "original" only (reindex is refused at apply). Called
    directly on tensors, `select` chains the two stages on the same keys.
    Deviations from the official hybrid: stage 1 reads the projector outputs, not CLIP layer 19's
    keys (no hook inside the vision tower), and stage 2 prunes at one layer, not at every layer 7..16.
    """

    name = "saint_hybrid"
    layer = 8
    part_classes = (SaintViT, Saint)
    requires = frozenset({"keys"})
    paper = Saint.paper
    params = {
        "vit_keep_ratio": Param(0.651, "stage 1 keeps round(vit_keep_ratio * N) tokens, at least the final budget "
                                       "(official 375/576)", min=0.0, max=1.0),
        "vit_step_divisor": Param(16, "stage 1 (saint_vit step_divisor): each round drops n // vit_step_divisor "
                                      "tokens (official r = 16)", min=1),
        "vit_faithful": Param(False, "stage 1 (saint_vit faithful): official schedule quirk, the divisor becomes "
                                     "the previous step"),
        **{name: Saint.params[name] for name in _LLM_PARAMS},
    }

    def part_params(self):
        vit = {name: getattr(self.cfg, f"vit_{name}") for name in _VIT_PARAMS}
        llm = {name: getattr(self.cfg, name) for name in _LLM_PARAMS}
        return vit, llm

    def first_budget(self, n, budget):
        return min(n, max(budget, round(self.cfg.vit_keep_ratio * n)))


@hookimpl
def register_strategies(register):
    register(Saint)
    register(SaintViT)
    register(SaintHybrid)
