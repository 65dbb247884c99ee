"""Built-in strategy plugin `fastv`: keep the image tokens the prompt attends to most after layer K-1."""
from __future__ import annotations

import torch

from tokenprune import Param, Selection, Strategy, hookimpl

from ._selection_ops import check_extra_tensor, top_indices

#: ctx.extras key the engine fills for ``criterion: mean_all_queries``.
ATTN_ALL_QUERIES = "attn_all_queries"


class FastV(Strategy):
    """FastV: keep the `budget` image tokens with the highest attention at layer K-1.

    Runs at the input of decoder layer K (default 2, must be >= 1), once at
    prefill (the KV-cache variant of the official code; the original re-prunes
    at every decoding step). The official K=0 falls back to random selection:
    use the `random` strategy for that. Nothing is merged; the kept tokens
    keep their original order and position ids.

    Criterion (param `criterion`):
      last_token (default, the official code): `attn`, the last prompt token's
        attention probability to each image token at layer K-1, averaged over
        heads (softmax over the whole prompt, not renormalised over the image).
      mean_all_queries (the paper's wording, phi(j) = 1/n sum_i a_ij, not what
        the official code runs; see docs/methods/fastv.md): the attention each image
        token receives, averaged over heads and over all prompt queries. The
        engine must put it in ctx.extras["attn_all_queries"]: a float tensor
        [B, N], entry (b, j) = mean over the heads h and over every
        non-padding prompt position i of softmax_h(q_i k / sqrt(d))[j] at
        layer K-1 (causal, so queries before j contribute 0; the image token's
        own query counts). The 1/n factor does not change the ranking.
        `attn` is still validated but not read in this mode.

    Budget: exactly `budget` tokens, as the official code. Its scripts pass the
    kept count directly (`fast_v_attention_rank` 72/144/288/432); the HF demo
    keeps round(N*(1-R)) for a drop ratio R.

    Ties: by default broken toward the lower token index (a stable sort), so
    results never depend on the torch build. `faithful: true` uses torch.topk
    exactly as the official code does (ties then follow torch's
    implementation-defined order, which matters with fp16 attention); the
    kept count is `budget` either way.

    `info["order"]` holds the kept tokens in descending-score order.
    """

    name = "fastv"
    stage = "llm"
    layer = 2
    requires = frozenset({"attn"})
    paper = "Chen et al., An Image is Worth 1/2 Tokens After Layer 2, ECCV 2024 (arXiv 2403.06764)"
    params = {
        "criterion": Param(
            "last_token",
            "last_token: last prompt token's attention (official code); mean_all_queries: attention "
            "received from all prompt queries (paper wording; needs ctx.extras['attn_all_queries'])",
            str,
            choices=("last_token", "mean_all_queries"),
        ),
        "faithful": Param(False, "rank with torch.topk like the official code (its tie order) instead of "
                                 "the stable lowest-index tie-break"),
    }

    @property
    def required_extras(self) -> tuple[str, ...]:
        """ctx.extras keys this configuration reads (the engine fills them)."""
        return (ATTN_ALL_QUERIES,) if self.cfg.criterion == "mean_all_queries" else ()

    def scores(self, attn: torch.Tensor, ctx) -> torch.Tensor:
        """The per-token score [B, N] the configured criterion ranks by."""
        if self.cfg.criterion == "last_token":
            return attn
        return check_extra_tensor(self.name, ctx, ATTN_ALL_QUERIES, tuple(attn.shape))

    def select(self, keys, attn, coords, budget, ctx):
        scores = self.scores(attn, ctx)
        if self.cfg.faithful:
            order = torch.topk(scores, budget, dim=-1).indices
        else:
            order = top_indices(scores, budget)
        keep = order.sort(dim=-1).values
        return Selection(keep=keep, info={"order": order, "criterion": self.cfg.criterion})


@hookimpl
def register_strategies(register):
    register(FastV)
