"""Built-in strategy plugin `dart`: drop image tokens duplicated with respect to a few pivot tokens."""
from __future__ import annotations

import torch

from tokenprune import Param, Selection, Strategy, StrategyInputError, hookimpl

from ._selection_ops import compute_dtype, top_indices, unit_rows

#: ctx.extras key holding the sequence position of the first image token (faithful mode).
IMAGE_START = "image_start"


class DART(Strategy):
    """DART: keep the image tokens least similar to a few pivot tokens (duplication-aware).

    Runs at the input of decoder layer K (default 2), once at prefill. Reads
    the post-RoPE keys of layer K-1 (`keys`, `ctx.text_keys`) to choose pivots
    and the layer K-1 hidden states passed through the LLM's final RMSNorm
    (`ctx.final_norm(ctx.hidden)`, `ctx.final_norm(ctx.text_hidden)`) for the
    cosine similarity. final_norm must act per token (RMSNorm, LayerNorm): it
    is applied to the image states and to the text pivots' rows only.
    Nothing is merged; kept tokens keep their order and original position ids.

    Pivots: the `pivot_image_tokens` image tokens with the largest key L1
    norm, and the `pivot_text_tokens` text tokens after the image span with
    the largest key L1 norm (ties: lower index). With a padded batch,
    `ctx.text_mask` [B, T] (True = real token) excludes padding; a sample with
    fewer real text tokens than `pivot_text_tokens` uses all of them.

    Selection: pivots are visited one after the other; each takes its quota of
    the remaining image tokens with the lowest cosine similarity to it (least
    similar first), and these leave the pool. The image pivots are kept, the
    text pivots are not (they are not image tokens).

    Default (`faithful: false`), exactly `budget` tokens:
      - the image pivots count toward the budget (if budget < pivot_image_tokens
        only the top `budget` image pivots are kept and nothing else);
      - the rest, budget - image pivots, is split over all pivots: each gets
        floor(rest / pivots) and the first (rest mod pivots) pivots in visiting
        order one more;
      - visiting order: image pivots by descending key L1 norm, then text
        pivots by descending key L1 norm.

    `faithful: true`, the official LLaVA code (`max_num_trunction` = budget):
      - every pivot takes k = budget // (pivot_image_tokens + pivot_text_tokens)
        tokens, so pivot_image_tokens + that many times k are kept: budget + 4
        with the defaults (68 / 132 / 196 for 64 / 128 / 192). Counts differ
        per sample only when a sample has fewer text pivots; rows are then
        padded with -1. (The official ratio path, max_num_trunction = None,
        is budget = floor(N * (1 - reduction_ratio)).)
      - pivots are visited in the iteration order of a Python set of their
        global sequence indices (image pivots in top-k order, then text
        pivots), as the official loop does. That order depends on where the
        image starts, so the engine must give ctx.extras["image_start"]: the
        index of the first image token in the sample's own unpadded prompt
        (an int for the whole batch, or a sequence / int tensor of B ints).
        Text token t (t-th real token after the image) is at image_start + N + t.
      - the official code fails when fewer than k tokens remain for a pivot;
        here that pivot takes what is left.

    Cosine similarities are computed in float32 (the official code uses the
    model dtype; near-ties can flip). `info` holds "order" (kept tokens in
    selection order: image pivots, then each visited pivot's picks),
    "image_pivots" [B, P_img], "text_pivots" [B, P_txt] (indices into the
    text tokens, -1 = none), "visit_order" [B, P] (pivot slots: image
    pivots 0..P_img-1, then text pivots) and "quota" [B, P] (tokens taken per
    slot, in slot order).
    """

    name = "dart"
    stage = "llm"
    layer = 2
    requires = frozenset({"keys", "hidden", "text_keys", "text_hidden", "final_norm"})
    paper = ("Wen et al., Stop Looking for Important Tokens in Multimodal Language Models: "
             "Duplication Matters More, EMNLP 2025 (arXiv 2502.11494)")
    params = {
        "pivot_image_tokens": Param(4, "image pivots (largest key L1 norm)", int, min=1),
        "pivot_text_tokens": Param(4, "text pivots after the image span (largest key L1 norm)", int, min=0),
        "faithful": Param(False, "official counts (image pivots + every pivot x budget // pivots: budget+4 "
                                 "by default) and set-order pivot visiting (needs ctx.extras['image_start'])"),
    }

    @property
    def exact_budget(self) -> bool:
        return not self.cfg.faithful

    @property
    def required_extras(self) -> tuple[str, ...]:
        """ctx.extras keys this configuration reads (the engine fills them)."""
        return (IMAGE_START,) if self.cfg.faithful else ()

    def select(self, keys, attn, coords, budget, ctx):
        B, N, _ = keys.shape
        text_mask = real_text_mask(self.name, ctx, B)
        n_img = min(self.cfg.pivot_image_tokens, N if self.cfg.faithful else budget)
        image_pivots = top_indices(key_l1(keys), n_img)
        text_pivots = pick_text_pivots(ctx.text_keys, text_mask, self.cfg.pivot_text_tokens)
        visit, quota = self.visiting_plan(image_pivots, text_pivots, text_mask, budget, N, ctx)

        similarity = pivot_similarity(ctx, image_pivots, text_pivots)  # [B, P, N]
        in_pool = torch.ones(B, N, dtype=torch.bool, device=keys.device)
        in_pool.scatter_(1, image_pivots, False)
        picks, taken = take_least_similar(similarity, visit, quota, in_pool)
        order = torch.cat([image_pivots, picks], dim=1)  # -1 where a pivot took fewer than the widest
        info = {"order": compact(order), "image_pivots": image_pivots, "text_pivots": text_pivots,
                "visit_order": visit, "quota": taken}
        return Selection(keep=ascending_keep(order, N), info=info)

    def visiting_plan(self, image_pivots, text_pivots, text_mask, budget, n_image, ctx):
        """(pivot slots in visiting order [B, P], tokens each slot should take [B, P])."""
        B = image_pivots.shape[0]
        has_pivot = torch.cat([torch.ones_like(image_pivots, dtype=torch.bool), text_pivots >= 0], dim=1)
        if not self.cfg.faithful:
            visit = torch.arange(has_pivot.shape[1], device=has_pivot.device).expand(B, -1)
            return visit, split_quota(budget - image_pivots.shape[1], has_pivot)
        starts = image_starts(self.name, ctx, B)
        visit = set_order_visits(image_pivots, text_pivots, text_mask, starts, n_image)
        per_pivot = budget // (self.cfg.pivot_image_tokens + self.cfg.pivot_text_tokens)  # official k
        return visit, torch.where(has_pivot, per_pivot, 0)


def key_l1(keys: torch.Tensor) -> torch.Tensor:
    """L1 norm of each key [B, N, Dk] -> [B, N] (torch.norm(p=1) as the official code, in >= float32)."""
    return torch.linalg.vector_norm(keys.to(compute_dtype(keys)), ord=1, dim=-1)


def real_text_mask(owner: str, ctx, batch: int) -> torch.Tensor:
    """ctx.text_mask checked ([B, T] bool), or all-True when absent."""
    T = ctx.text_keys.shape[1]
    for what, t in (("ctx.text_keys", ctx.text_keys), ("ctx.text_hidden", ctx.text_hidden)):
        if t.dim() != 3 or t.shape[0] != batch:
            raise StrategyInputError(f"strategy {owner!r}: {what} must have shape [B={batch}, T, D], "
                                     f"got {list(t.shape)}")
    if ctx.text_hidden.shape[1] != T:
        raise StrategyInputError(f"strategy {owner!r}: ctx.text_keys has T={T} tokens but ctx.text_hidden "
                                 f"has {ctx.text_hidden.shape[1]}")
    mask = ctx.text_mask
    if mask is None:
        return torch.ones(batch, T, dtype=torch.bool, device=ctx.text_keys.device)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (batch, T):
        raise StrategyInputError(f"strategy {owner!r}: ctx.text_mask must be a bool tensor [B={batch}, T={T}], "
                                 f"got {getattr(mask, 'dtype', type(mask).__name__)} "
                                 f"{list(getattr(mask, 'shape', []))}")
    return mask


def pick_text_pivots(text_keys: torch.Tensor, text_mask: torch.Tensor, count: int) -> torch.Tensor:
    """[B, count] text-token indices with the largest key L1 norm among real tokens, -1 past the real ones."""
    l1 = key_l1(text_keys).masked_fill(~text_mask, float("-inf"))
    width = min(count, l1.shape[1])
    pivots = top_indices(l1, width)
    real = torch.arange(width, device=l1.device) < text_mask.sum(dim=1, keepdim=True)
    pivots = pivots.masked_fill(~real, -1)
    if width < count:  # fewer text tokens than pivots: keep the slot layout fixed
        pivots = torch.cat([pivots, pivots.new_full((pivots.shape[0], count - width), -1)], dim=1)
    return pivots


def pivot_similarity(ctx, image_pivots: torch.Tensor, text_pivots: torch.Tensor) -> torch.Tensor:
    """Cosine [B, P, N] between every pivot's final-normed hidden state and every image token's.

    One sample at a time: the norm and the normalisation each pass over [N, D] states, and a
    sample's (9 MB at LLaVA-7B sizes) stays in cache where a batch's does not. Every step is
    per token, so the result is identical to the batched computation.
    """
    return torch.cat([_pivot_similarity_one(ctx.final_norm, ctx.hidden[b:b + 1], ctx.text_hidden[b:b + 1],
                                            image_pivots[b:b + 1], text_pivots[b:b + 1])
                      for b in range(image_pivots.shape[0])])


def _pivot_similarity_one(final_norm, hidden, text_hidden, image_pivots, text_pivots) -> torch.Tensor:
    image = unit_rows(final_norm(hidden))
    text = unit_rows(final_norm(rows_at(text_hidden, text_pivots)))  # the norm is per token
    pivots = torch.cat([rows_at(image, image_pivots), text], dim=1)
    return pivots @ image.mT


def rows_at(states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """states [B, T, D] at index [B, P] -> [B, P, D]; zero rows where the index is -1 (no pivot)."""
    if states.shape[1] == 0:
        return states.new_zeros(index.shape[0], index.shape[1], states.shape[-1])
    rows = torch.gather(states, 1, index.clamp_min(0).unsqueeze(-1).expand(-1, -1, states.shape[-1]))
    return rows * (index >= 0).unsqueeze(-1)


def split_quota(rest: int, has_pivot: torch.Tensor) -> torch.Tensor:
    """[B, P] tokens per pivot slot: ``rest`` split evenly over the real pivots, earlier slots take the remainder."""
    n_pivots = has_pivot.sum(dim=1, keepdim=True)
    base, extra = rest // n_pivots, rest % n_pivots
    rank = has_pivot.cumsum(dim=1) - 1  # position among this sample's real pivots
    return torch.where(has_pivot, base + (rank < extra).long(), 0)


def image_starts(owner: str, ctx, batch: int) -> list[int]:
    """ctx.extras['image_start'] as one int per sample."""
    value = ctx.extras.get(IMAGE_START)
    if value is None:
        raise StrategyInputError(
            f"strategy {owner!r}: faithful mode visits pivots in the official set order of their global "
            f"sequence indices and needs ctx.extras[{IMAGE_START!r}] (index of the first image token)")
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist()
    starts = [value] * batch if isinstance(value, int) else list(value)
    if len(starts) != batch or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in starts):
        raise StrategyInputError(f"strategy {owner!r}: ctx.extras[{IMAGE_START!r}] must be a non-negative int "
                                 f"or {batch} of them, got {value!r}")
    return starts


def set_order_visits(image_pivots, text_pivots, text_mask, starts: list[int], n_image: int) -> torch.Tensor:
    """[B, P] pivot slots in the official visiting order (CPython set iteration over global indices).

    The set is built from a list (image pivots in top-k order, then text
    pivots), as the official code does: building it from another container
    can size the hash table differently and change the order. Slots without a
    pivot go last. Loops over samples and their few pivots, never over tokens.
    """
    # global position of a text token: after the image, counting real tokens only
    text_offset = text_mask.long().cumsum(dim=1) - 1
    text_pos = rows_at(text_offset.unsqueeze(-1), text_pivots).squeeze(-1)
    n_img, n_slots = image_pivots.shape[1], image_pivots.shape[1] + text_pivots.shape[1]
    visits = []
    for b, start in enumerate(starts):
        globals_ = [start + i for i in image_pivots[b].tolist()]
        slots = list(range(n_img))
        for slot, (pivot, pos) in enumerate(zip(text_pivots[b].tolist(), text_pos[b].tolist())):
            if pivot >= 0:
                globals_.append(start + n_image + pos)
                slots.append(n_img + slot)
        slot_of = dict(zip(globals_, slots))
        ordered = [slot_of[g] for g in list(set(globals_))]
        visits.append(ordered + [s for s in range(n_slots) if s not in slot_of.values()])
    return torch.tensor(visits, dtype=torch.long, device=image_pivots.device)


def take_least_similar(similarity, visit, quota, in_pool):
    """Visit pivots in order; each takes its quota of least-similar pool tokens, which leave the pool.

    ``in_pool`` [B, N] bool is updated in place.
    Returns (picks [B, sum of widest quotas] in selection order, -1 where a
    sample took fewer; tokens taken per slot [B, P]). Loops over the pivots
    (sequential by nature), vectorised over the batch and the tokens.
    """
    B, P, N = similarity.shape
    rows = torch.arange(B, device=similarity.device)
    taken = torch.zeros_like(quota)
    picks = []
    for step in range(P):
        slot = visit[:, step]
        sim = similarity[rows, slot].masked_fill(~in_pool, float("inf"))
        want = torch.minimum(quota[rows, slot], in_pool.sum(dim=1))  # the pool can run dry (faithful)
        width = int(want.max())
        if width == 0:
            continue
        chosen = top_indices(sim, width, largest=False)
        real = torch.arange(width, device=sim.device) < want.unsqueeze(1)
        in_pool[rows.unsqueeze(1).expand(-1, width)[real], chosen[real]] = False
        picks.append(chosen.masked_fill(~real, -1))
        taken[rows, slot] = want
    if not picks:
        return torch.empty(B, 0, dtype=torch.long, device=similarity.device), taken
    return torch.cat(picks, dim=1), taken


def compact(order: torch.Tensor) -> torch.Tensor:
    """Move the -1 gaps of each row to its end (keeping the order of the real entries); trim shared padding."""
    real = order >= 0
    width = int(real.sum(dim=1).max())
    position = torch.sort((~real).long(), dim=1, stable=True).indices
    return torch.gather(order, 1, position)[:, :width]


def ascending_keep(order: torch.Tensor, n_image: int) -> torch.Tensor:
    """Kept indices of each row ascending, -1 padding at the end, trimmed to the widest row."""
    keep = order.masked_fill(order < 0, n_image).sort(dim=-1).values  # gaps sort last
    keep = keep[:, : int((order >= 0).sum(dim=1).max())]
    return keep.masked_fill(keep == n_image, -1)


@hookimpl
def register_strategies(register):
    register(DART)
