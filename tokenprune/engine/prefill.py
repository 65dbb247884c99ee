"""One pruned prefill: build the strategy's inputs, call select() per group of alike samples, build the Layout.

Samples whose visual tokens have the same count, coordinates and grid (and
budget) share one select() call; others are called separately, so batches with
different image sizes work. Text-only samples keep everything.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import torch

from ..selection import Context
from ..timing import synchronize
from . import signals
from .layout import Layout, take
from .spans import Visuals

#: ctx.extras keys this engine can fill (see docs/engine.md).
KNOWN_EXTRAS = ("image_start", "attn_all_queries", "head_dim", "relevance_space", "visual_segments")


@dataclass
class Sources:
    """Model states available at the prune point (None when not captured)."""

    hidden: torch.Tensor | None = None  # [B, L, D] residual stream at the prune point
    embeds: torch.Tensor | None = None  # [B, L, D] LLM input embeddings (visual rows = projector outputs)
    keys: torch.Tensor | None = None  # [B, n_kv, L, hd] layer K-1 post-RoPE keys
    query_rows: torch.Tensor | None = None  # [B, H, hd] last prompt token's query at layer K-1
    queries: torch.Tensor | None = None  # [B, H, L, hd]
    scaling: float | None = None
    final_norm: object = None


@dataclass
class Outcome:
    layout: Layout
    replace_slots: list = field(default_factory=list)  # per sample: LongTensor of slots whose rows are replaced
    replace_rows: list = field(default_factory=list)  # per sample: [n, D] replacement rows (or None)
    records: list = field(default_factory=list)
    kept_visual: list = field(default_factory=list)  # per sample: LongTensor of kept indices into its N
    pending_diagnostics: list = field(default_factory=list)  # (record, coords, kept, kept features) per sample

    def gather(self, states: torch.Tensor) -> torch.Tensor:
        """Kept rows of [B, L, D] states, with the strategy's replacement rows written in."""
        out = take(states, self.layout.src, batch_dim=0, seq_dim=1)
        for b, (slots, rows) in enumerate(zip(self.replace_slots, self.replace_rows)):
            if slots is not None:
                out[b, slots.to(out.device)] = rows.to(out.device, out.dtype)
        return out


def sample_seed(seed: int, ids: torch.Tensor) -> int:
    """A per-sample seed from the run seed and the sample's own (unpadded) tokens.

    Content-based, so a sample draws the same random numbers alone or in any batch position.
    """
    h = hashlib.sha256(str(seed).encode() + ids.detach().cpu().to(torch.int64).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little") & ((1 << 63) - 1)


class Prefill:
    """Everything known about one prompt batch before selection."""

    def __init__(self, *, visuals: list[Visuals], input_ids: torch.Tensor, padding: torch.Tensor | None,
                 seed: int):
        self.visuals = visuals
        # Set on the prefill of a second prune point (stages.survivors): per sample, the visual tokens of
        # the full prompt (native_n) and which of them this prefill's visual tokens are (origin_kept).
        self.native_n = [v.n for v in visuals]
        self.origin: "Prefill | None" = None
        self.origin_kept: list[torch.Tensor] | None = None
        self.input_ids = input_ids
        self.B, self.L = input_ids.shape
        self.padding = padding  # [B, L] 1 = real token, or None
        if padding is not None:
            ar = torch.arange(self.L, device=padding.device)
            self.last_rows = torch.where(padding.bool(), ar, -1).max(dim=1).values.clamp_min(0)
            self.first_rows = torch.where(padding.bool(), ar, self.L).min(dim=1).values.clamp_max(self.L - 1)
        else:
            self.last_rows = torch.full((self.B,), self.L - 1, dtype=torch.long, device=input_ids.device)
            self.first_rows = torch.zeros(self.B, dtype=torch.long, device=input_ids.device)
        self.seeds = [sample_seed(seed, input_ids[b, int(self.first_rows[b]):int(self.last_rows[b]) + 1])
                      for b in range(self.B)]
        self.has_visual = any(v.n for v in visuals)

    def text_only_records(self, prefill_number: int) -> list[dict]:
        """The records of a prefill without visual tokens: nothing to select, everything kept."""
        return [{"prefill": prefill_number, "sample": b, "n_visual": 0, "kept": [], "count": 0,
                 "budget": 0, "select_s": 0.0, "vision_s": 0.0, "grid": None, "batch_size": self.B,
                 "info": {}, "diagnostics": None} for b in range(self.B)]

    # ------------------------------------------------------------------ per-sample token sets
    def text_after(self, b: int) -> torch.Tensor:
        """Positions of the prompt tokens after the last visual token (up to the last real token)."""
        v = self.visuals[b]
        start = int(v.positions[-1]) + 1 if v.n else int(self.first_rows[b])
        return torch.arange(start, int(self.last_rows[b]) + 1, device=self.input_ids.device)

    def text_tokens(self, b: int) -> torch.Tensor:
        """Positions of all real non-visual prompt tokens."""
        keep = torch.ones(self.L, dtype=torch.bool, device=self.input_ids.device)
        keep[: int(self.first_rows[b])] = False
        keep[int(self.last_rows[b]) + 1:] = False
        if self.visuals[b].n:
            keep[self.visuals[b].positions.to(keep.device)] = False
        if self.padding is not None:
            keep &= self.padding[b].bool().to(keep.device)
        return keep.nonzero().flatten()

    # ------------------------------------------------------------------ selection
    def run(self, engine, sources: Sources) -> Outcome:
        """Call the strategy for every group of alike samples and build the kept layout.

        ``engine`` is the prune point (stages.PrunePoint): its strategy, stage, head_dim and
        ``budget_for(native n, n)``.
        """
        strategy = engine.strategy
        budgets = [engine.budget_for(native, v.n) if v.n else 0 for native, v in zip(self.native_n, self.visuals)]
        kept = [torch.zeros(0, dtype=torch.long) for _ in range(self.B)]
        replacement = [None] * self.B
        info_rows: list[dict] = [{} for _ in range(self.B)]
        select_s = [0.0] * self.B
        for budget, members in self._groups(budgets):
            device = self._device(sources)
            synchronize(device)
            t0 = time.perf_counter()
            keys, attn, coords, ctx = self._inputs(engine, sources, members)
            sel = strategy.select(keys, attn, coords, budget, ctx)
            synchronize(device)
            spent = (time.perf_counter() - t0) / len(members)
            exact = strategy.exact_budget  # validated: no -1 padding to drop
            for g, b in enumerate(members):
                row = sel.keep[g]
                real = slice(None) if exact else row >= 0
                kept[b] = row[real].to(self.input_ids.device)
                if sel.hidden is not None:
                    replacement[b] = sel.hidden[g][real]
                info_rows[b] = split_info(sel.info, g, len(members))
                select_s[b] = spent
        outcome = Outcome(layout=None, kept_visual=kept)
        rows = []
        for b, v in enumerate(self.visuals):
            keep_mask = torch.ones(self.L, dtype=torch.bool, device=self.input_ids.device)
            if v.n:
                keep_mask[v.positions.to(keep_mask.device)] = False
                keep_mask[v.positions.to(keep_mask.device)[kept[b]]] = True
            rows.append(keep_mask.nonzero().flatten())
        outcome.layout = Layout.from_rows(rows, self.L)
        for b, v in enumerate(self.visuals):
            if replacement[b] is not None:
                pad = outcome.layout.length - rows[b].numel()
                slots = torch.searchsorted(rows[b], v.positions.to(rows[b].device)[kept[b]]) + pad
                outcome.replace_slots.append(slots)
                outcome.replace_rows.append(replacement[b])
            else:
                outcome.replace_slots.append(None)
                outcome.replace_rows.append(None)
            record = {
                "sample": b,
                "n_visual": v.n,
                "kept": kept[b].tolist(),
                "count": int(kept[b].numel()),
                "budget": budgets[b],
                "select_s": select_s[b],
                "grid": list(v.grid) if v.n else None,
                "info": {k: val for k, val in info_rows[b].items() if k != "counts"},
                "diagnostics": None,
            }
            outcome.records.append(record)
            if v.n:
                outcome.pending_diagnostics.append((record, *self._diagnostic_inputs(engine, sources, b, kept[b])))
        return outcome

    def _groups(self, budgets: list[int]) -> list[tuple[int, list[int]]]:
        """(budget, samples) per select() call: samples with visual tokens of equal geometry and budget."""
        members = [b for b, v in enumerate(self.visuals) if v.n]
        if len(members) == 1:
            return [(budgets[members[0]], members)]
        groups: dict[tuple, list[int]] = {}
        for b in members:
            groups.setdefault((self.visuals[b].key(), budgets[b]), []).append(b)
        return [(budget, group) for (_, budget), group in groups.items()]

    def _diagnostic_inputs(self, engine, sources: Sources, b: int, kept: torch.Tensor):
        """(coords, kept, kept features) of sample b, measured on the full prompt's grid.

        On a second prune point's prefill the survivors' indices go back to their original ones.
        """
        features = self._kept_features(engine, sources, b, kept)
        if self.origin is None:
            return self.visuals[b].coords, kept, features
        back = self.origin_kept[b].to(kept.device)
        return self.origin.visuals[b].coords, back[kept], features

    def _kept_features(self, engine, sources: Sources, b: int, kept: torch.Tensor) -> torch.Tensor | None:
        """The prune-point states of the kept visual tokens, for the redundancy diagnostic.

        Only gathered here (no copy to the host, no device sync): the diagnostics are computed
        when the records are read, outside the timed prefill (see finish_diagnostics).
        """
        states = sources.hidden if engine.stage == "llm" else sources.embeds
        if states is None:
            return None
        rows = self.visuals[b].positions.to(states.device)[kept.to(states.device)]
        return states[b, rows]

    def _device(self, sources: Sources):
        for t in (sources.hidden, sources.embeds, sources.keys):
            if t is not None:
                return t.device
        return None

    def _inputs(self, engine, sources: Sources, members: list[int]):
        """keys, attn, coords, ctx for the samples ``members`` (computing only what is required)."""
        need = engine.strategy.requires
        vis = [self.visuals[b] for b in members]
        pos = [v.positions for v in vis]
        device = self._device(sources)
        llm = engine.stage == "llm"
        states = sources.hidden if llm else sources.embeds
        pick = lambda t: t[members]  # noqa: E731
        keys = attn = None
        if "keys" in need:
            keys = signals.rows_at(signals.heads_concat(pick(sources.keys)) if llm else pick(states), pos)
        if "attn" in need:
            scores = signals.last_query_attention(
                pick(sources.query_rows), pick(sources.keys), sources.scaling, self.last_rows[members],
                None if self.padding is None else self.padding[members])
            attn = signals.rows_at(scores[:, :, None], pos)[..., 0]
        ctx = Context(grid=vis[0].grid, layer=engine.strategy.prune_layer, batch_size=len(members),
                      generator=[torch.Generator().manual_seed(self.seeds[b]) for b in members])
        if "hidden" in need:
            ctx.hidden = signals.rows_at(pick(states), pos)
        if "text_keys" in need or "text_hidden" in need:
            after = [self.text_after(b) for b in members]
            if "text_keys" in need:
                tk = signals.heads_concat(pick(sources.keys)) if llm else pick(states)
                ctx.text_keys, ctx.text_mask = signals.padded_rows(tk, after)
            if "text_hidden" in need:
                ctx.text_hidden, ctx.text_mask = signals.padded_rows(pick(states), after)
        if "final_norm" in need:
            ctx.final_norm = sources.final_norm
        if "text_embeds" in need or "image_embeds" in need:
            # No vision-language text tower is loaded: both sides live in the LLM embedding space.
            embeds = pick(sources.embeds)
            ctx.text_embeds, _ = signals.padded_rows(embeds, [self.text_tokens(b) for b in members])
            ctx.image_embeds = signals.rows_at(embeds, pos)
            ctx.extras["relevance_space"] = "llm_embed"
        wanted = set(engine.extras)
        ctx.extras["head_dim"] = engine.head_dim
        ctx.extras["image_start"] = [int(p[0]) - int(self.first_rows[b]) for p, b in zip(pos, members)]
        ctx.extras["visual_segments"] = [list(v.segments) for v in vis]
        if "attn_all_queries" in wanted:
            full = signals.all_queries_attention(pick(sources.queries), pick(sources.keys), sources.scaling,
                                                 None if self.padding is None else self.padding[members])
            ctx.extras["attn_all_queries"] = signals.rows_at(full[:, :, None], pos)[..., 0]
        coords = vis[0].coords.to(device) if device is not None else vis[0].coords
        return keys, attn, coords, ctx


def split_info(info: dict, g: int, size: int) -> dict:
    """The JSON-able part of a batch ``info`` for sample ``g`` (per-sample tensors/lists are split)."""
    out = {}
    for k, v in info.items():
        if isinstance(v, torch.Tensor):
            if v.dim() >= 1 and v.shape[0] == size:
                v = v[g]
            out[k] = v.tolist() if v.dim() else v.item()
        elif isinstance(v, (list, tuple)) and len(v) == size:
            item = v[g]
            out[k] = item.tolist() if isinstance(item, torch.Tensor) else item
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [x.tolist() if isinstance(x, torch.Tensor) else x for x in v]
    return out


def finish_diagnostics(pending: list) -> None:
    """Fill record["diagnostics"] (edge tokens, spread, redundancy) of every pending sample, then forget them."""
    from .. import diagnostics

    for record, coords, kept, features in pending:
        try:
            kept = kept.cpu()
            found = diagnostics.diagnose(coords, kept, None)
            if features is not None:
                found["redundancy"] = diagnostics.redundancy(features.cpu(), torch.arange(kept.numel()))
            record["diagnostics"] = found
        except Exception:  # diagnostics are a by-product; never fail a run over them
            record["diagnostics"] = None
    pending.clear()
