"""Built-in strategy plugin `cdpruner`: instruction-conditioned DPP selection before the LLM.

Method and deviations: docs/methods/cdpruner.md (official code Theia-4869/CDPruner @9541616c, re-implemented, not copied).
"""
from __future__ import annotations

import math

import torch

from tokenprune import Param, ParamError, Selection, Strategy, StrategyInputError, hookimpl

from ._selection_ops import symmetric_gram

#: Floor under a gain before its square root, for rank-exhausted rows only (their update is discarded);
#: a live pick's gain is above its noise floor, so its arithmetic is the official one.
MIN_GAIN = 1e-30
#: Official min-max offset: keeps the least relevant token's quality strictly positive.
RELEVANCE_OFFSET = 1e-6


class CDPruner(Strategy):
    """CDPruner: keep the visual tokens that maximise conditional diversity (a DPP conditioned on the instruction).

    Runs before the LLM, once per image. It builds the kernel L = diag(q) . S . diag(q), where S is
    the cosine similarity of the projector outputs (`keys`, computed in float32) and q is the
    instruction relevance of each token. It then keeps the `budget` tokens that greedy MAP
    inference of the DPP picks (the fast incremental-Cholesky method; the first pick is the most
    relevant token). Kept indices are returned ascending; the pick order is in info["order"].
    Exactly `budget` tokens are kept in every mode.

    Relevance (official LLaVA recipe). Image side: ctx.image_embeds [B, N, C], the same patch tokens
    in the vision-language space (CLIP: post_layernorm + visual_projection of the penultimate patch
    tokens). Text side: ctx.text_embeds [B, M, C], the instruction text embedded by the matching
    text tower (CLIP: one projected pooled vector per 77-token chunk, so usually M = 1). Rows that
    are entirely zero are padding and are ignored, so samples with different M can share a batch.
    raw_i = mean over text rows of -cos(image_i, text_j); r = (raw - min + 1e-6) / (max - min).
    The minus sign is the official code's (tokens least CLIP-similar to the text count as most
    relevant; the paper text describes plain cosine): `negate: false` uses +cos instead.
    If the relevance is constant over the normalisation group, r = 1 for every token (the official
    code would divide by zero).

    Quality weighting: `theta: null` (official default) uses q = r. A number in [0, 1) uses
    q = exp(alpha * r) with alpha = theta / (2 * (1 - theta)), the commented-out option of the
    official code (Intel's OpenVINO port uses theta = 0.5); theta = 0 gives a pure diversity DPP.

    Normalisation group: `normalize: sample` takes min and max over each sample's N tokens (the
    right default when a batch holds independent samples). `normalize: batch` takes them over all
    tokens of the whole call, as the official code does for the crops of one LLaVA-NeXT sample
    (pass the crops of one sample as the batch). `faithful: true` switches the default to `batch`
    (official behaviour); an explicit `normalize` always wins.

    Fallback for models without a vision-language text tower (Qwen-VL and others). The engine
    passes ctx.text_embeds = the LLM's input embeddings (embed_tokens) of the prompt's non-image
    text tokens [B, M, D], zero-padded to a common M, and ctx.image_embeds = the projector outputs
    [B, N, D] (the same tensor as `keys`), so both live in the LLM embedding space; the engine
    records which space it used in ctx.extras["relevance_space"] ("clip" or "llm_embed"), copied
    to info["relevance_space"]. The official Qwen recipe was never released; this follows Intel's
    port (LLM embeddings, minus sign kept, per-image normalisation); that port also uses
    theta = 0.5, which you set yourself (`theta: 0.5`). Numbers from the fallback are not the
    paper's recipe.

    Guard against the official NaN: once the budget reaches the kernel's rank (for example when the
    features span fewer than `budget` dimensions), the official code takes the square root of a
    marginal gain <= 0 and its picks become NaN-driven. Here a token competes only while its gain is
    above the rounding noise of its own diagonal entry (N * eps * L_jj); once no token of a sample
    is left with a real residual, its remaining picks follow descending quality q (the DPP can no
    longer tell those tokens apart) and the Cholesky update stops. Wherever the official picks are
    decided by real gains, the picks are the same.
    """

    name = "cdpruner"
    stage = "pre_llm"
    requires = frozenset({"keys", "image_embeds", "text_embeds"})
    paper = ("Zhang et al., Beyond Attention or Similarity: Maximizing Conditional Diversity for Token "
             "Pruning in MLLMs, NeurIPS 2025 (arXiv 2506.10967)")
    params = {
        "negate": Param(True, "relevance = mean of -cos(image, text) (official code) instead of +cos"),
        "theta": Param(None, "null: quality q = r (official); in [0, 1): q = exp(theta / (2 (1 - theta)) * r)",
                       type=float, min=0.0, max=1.0, nullable=True),
        "normalize": Param(None, "min-max group of the relevance: 'sample' or 'batch' (the whole call); "
                                 "null = 'batch' when faithful, else 'sample'",
                           type=str, choices=("sample", "batch"), nullable=True),
        "faithful": Param(False, "official behaviour: relevance normalised over the whole call (crops of one sample)"),
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.cfg.theta is not None and self.cfg.theta >= 1.0:
            raise ParamError(f"strategy {self.name!r}: param theta={self.cfg.theta!r} is invalid; "
                             "allowed: float in [0, 1) or null (alpha = theta / (2 (1 - theta)) needs theta < 1)")

    @property
    def normalize_over(self) -> str:
        """The relevance min-max group actually used: 'sample' or 'batch'."""
        if self.cfg.normalize is not None:
            return self.cfg.normalize
        return "batch" if self.cfg.faithful else "sample"

    def select(self, keys, attn, coords, budget, ctx):
        _check_embeds(self.name, keys, ctx.image_embeds, ctx.text_embeds)
        relevance = instruction_relevance(ctx.image_embeds, ctx.text_embeds, negate=self.cfg.negate,
                                          over_batch=self.normalize_over == "batch")
        quality = relevance_to_quality(relevance, self.cfg.theta)
        similarity = cosine_similarity_matrix(keys)
        order = dpp_greedy_map(similarity, quality, budget)
        info = {"order": order, "normalize": self.normalize_over,
                "relevance_space": ctx.extras.get("relevance_space", "unspecified")}
        return Selection(keep=order.sort(dim=1).values, info=info)


def _check_embeds(owner: str, keys, image_embeds, text_embeds):
    B, N = keys.shape[:2]
    if image_embeds.dim() != 3 or tuple(image_embeds.shape[:2]) != (B, N):
        raise StrategyInputError(f"strategy {owner!r}: ctx.image_embeds must have shape [B={B}, N={N}, C], "
                                 f"got {list(image_embeds.shape)}")
    if text_embeds.dim() != 3 or text_embeds.shape[0] != B or text_embeds.shape[1] < 1:
        raise StrategyInputError(f"strategy {owner!r}: ctx.text_embeds must have shape [B={B}, M>=1, C], "
                                 f"got {list(text_embeds.shape)}")
    if text_embeds.shape[2] != image_embeds.shape[2]:
        raise StrategyInputError(
            f"strategy {owner!r}: ctx.text_embeds width {text_embeds.shape[2]} differs from ctx.image_embeds "
            f"width {image_embeds.shape[2]}; both must live in the same vision-language space")
    empty = (text_embeds == 0).all(dim=2).all(dim=1)
    if bool(empty.any()):
        b = int(empty.nonzero()[0])
        raise StrategyInputError(f"strategy {owner!r}: ctx.text_embeds of sample {b} has only zero (padding) rows")


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm in at least float32; all-zero rows stay zero (padding)."""
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.clamp_min(torch.finfo(x.dtype).tiny)


def instruction_relevance(image_embeds, text_embeds, *, negate: bool = True, over_batch: bool = False):
    """Min-max normalised relevance r [B, N] of each visual token to the instruction.

    raw = mean over the non-padding text rows of (-)cos(image token, text row);
    r = (raw - min + 1e-6) / (max - min), with min/max per sample or over the whole batch.
    """
    cos = _unit_rows(image_embeds) @ _unit_rows(text_embeds).transpose(1, 2)  # [B, N, M]
    if negate:
        cos = -cos
    real_text = (text_embeds != 0).any(dim=2)  # [B, M]
    if bool(real_text.all()):
        raw = cos.mean(dim=2)
    else:
        raw = (cos * real_text[:, None, :]).sum(dim=2) / real_text.sum(dim=1, keepdim=True)
    if over_batch:
        low, high = raw.min(), raw.max()
    else:
        low, high = raw.min(dim=1, keepdim=True).values, raw.max(dim=1, keepdim=True).values
    spread = (high - low).expand_as(raw)
    r = (raw - low + RELEVANCE_OFFSET) / spread
    return torch.where(spread > 0, r, torch.ones_like(r))  # constant relevance: no token is preferred


def relevance_to_quality(relevance: torch.Tensor, theta: float | None) -> torch.Tensor:
    """DPP quality q: r itself (theta None, official) or exp(alpha r) with alpha = theta / (2 (1 - theta))."""
    if theta is None:
        return relevance
    alpha = theta / (2.0 * (1.0 - theta))
    # shifting by the per-sample max scales that sample's kernel by a constant (same picks), avoids overflow
    return torch.exp(alpha * (relevance - relevance.max(dim=1, keepdim=True).values))


def cosine_similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """[B, N, N] cosine similarities of the rows of ``features`` [B, N, D], in at least float32.

    Per sample, and only the upper block triangle of the product (mirrored): about half the
    multiply-adds of ``unit @ unit.mT``, same values.
    """
    return torch.cat([symmetric_gram(_unit_rows(features[b:b + 1])) for b in range(features.shape[0])])


def dpp_greedy_map(similarity: torch.Tensor, quality: torch.Tensor, budget: int) -> torch.Tensor:
    """Greedy MAP of the DPP with kernel L_ij = q_i S_ij q_j; returns the pick order [B, budget].

    Fast greedy MAP (Chen, Zhang & Zhou 2018): each step picks the token with the largest marginal
    gain d2 (= greedy argmax of log det L[picked + j]) and updates every gain with one new row of
    the incremental Cholesky factor, so a step costs O(B * t * N) instead of a determinant.
    Only tokens with a real residual (gain above rounding noise of their own diag(L)) compete;
    once a sample has none left (kernel rank exhausted), its remaining picks follow quality order.
    """
    B, N, _ = similarity.shape
    quality = quality.to(similarity.dtype)
    rows = torch.arange(B, device=similarity.device)
    gains = quality * similarity.diagonal(dim1=1, dim2=2) * quality  # diag(L)
    noise_floor = N * torch.finfo(gains.dtype).eps * gains  # rounding noise of each token's gain
    factor = similarity.new_zeros(B, budget, N)  # rows of the incremental Cholesky factor
    order = torch.empty(B, budget, dtype=torch.long, device=similarity.device)
    for step in range(budget):  # sequential by nature: each pick changes every later gain
        live = gains > noise_floor  # picked tokens hold -inf, so they are never live
        pick = gains.masked_fill(~live, -math.inf).argmax(dim=1)  # first index among ties
        exhausted = ~live.any(dim=1)
        if bool(exhausted.any()):  # the DPP can no longer tell the rest apart: most relevant first
            by_quality = quality.masked_fill(gains == -math.inf, -math.inf).argmax(dim=1)
            pick = torch.where(exhausted, by_quality, pick)
        order[:, step] = pick
        kernel_row = quality[rows, pick, None] * similarity[rows, pick] * quality  # L[pick, :]
        if step:
            projected = torch.bmm(factor[rows, :step, pick].unsqueeze(1), factor[:, :step]).squeeze(1)
            kernel_row = kernel_row - projected
        pivot = gains[rows, pick].clamp_min(MIN_GAIN).sqrt()  # the floor only matters for exhausted rows
        new_row = (kernel_row / pivot.unsqueeze(1)).masked_fill(exhausted[:, None], 0.0)
        factor[:, step] = new_row
        gains = gains - new_row * new_row
        gains[rows, pick] = -math.inf  # never pick a token twice
    return order


@hookimpl
def register_strategies(register):
    register(CDPruner)
