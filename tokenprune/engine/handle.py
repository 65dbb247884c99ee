"""The handle that keeps a strategy attached to a model: hooks, per-prefill state, records, errors.

Hooks (all removable, no forward body is replaced):
  * a forward pre-hook on the VLM's inner model (sees input ids, geometry, cache) starts each prefill;
  * pre_llm: a forward pre-hook on the LLM drops visual embeddings before layer 0;
  * llm: forward pre-hooks on decoder layers K..L-1 gather the kept tokens at layer K and
    rewrite masks / positions / (cos, sin) for every later layer; layer K-1's attention
    carries a probe (probe.py) when keys or attention are required;
  * two-stage strategies (two_stage.TwoStage) get both: the llm part works on the sequence the
    pre_llm part left (stages.py);
  * timing hooks on the vision tower.
Anything that goes wrong inside a hook removes every hook before the error leaves.
"""
from __future__ import annotations

import time
import weakref

import torch
from transformers import DynamicCache

from ..errors import TokenpruneError
from ..two_stage import TwoStage
from . import layout as lay
from . import positions as pos_ops
from . import stages, transform
from .prefill import KNOWN_EXTRAS, Prefill, Sources, finish_diagnostics
from .probe import AttentionProbe
from .resize import ResizePlan
from .stages import PrunePoint

_PROBE_SIGNALS = {"keys", "attn", "text_keys"}


class PruneError(TokenpruneError, RuntimeError):
    """Pruning failed inside a model; the message names the strategy and the model."""


class _Pass:
    """State of one prefill and the decode steps that follow it."""

    def __init__(self, prefill: Prefill):
        self.prefill = prefill
        self.phase = "prefill"
        self.cache = None  # weak reference to the KV cache filled by this prefill
        self.outcome = None  # the last prune point's outcome (the layout of layers >= K, or of the LLM input)
        self.first = None  # two-stage: the pre_llm point's outcome
        self.lm_layout = None  # the layout of the LLM's input (pre_llm pruning), or None
        self.embeds = None
        self.lm_positions = None
        self.delta = None  # reindex: decode position shift per sample
        self.stash: dict = {}

    def owns(self, cache) -> bool:
        return self.cache is not None and cache is not None and self.cache() is cache


def _ref(obj):
    if obj is None:
        return None
    try:
        return weakref.ref(obj)
    except TypeError:  # pragma: no cover - caches are ordinary objects
        return lambda: obj


def _seen(cache) -> int:
    return 0 if cache is None else int(cache.get_seq_length())


def _sync(device):
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class PruneHandle:
    """A strategy attached to a model. Use as a context manager, or call :meth:`remove`.

    ``records``: one dict per sample per prefill (see docs/engine.md); ``clear()`` empties it.
    """

    def __init__(self, vlm, strategy, *, budget=None, keep_ratio=None, positions="original", seed=0):
        self.vlm = vlm
        self.strategy = strategy
        self.budget = budget
        self.keep_ratio = keep_ratio
        self.positions = positions
        self.seed = seed
        self.resizes = strategy.stage == "input"  # the image is resized, then select runs as pre_llm
        self.stage = "pre_llm" if self.resizes else strategy.stage
        self.layer = strategy.prune_layer
        self.parts = strategy.parts() if isinstance(strategy, TwoStage) else None
        self._records: list[dict] = []
        self._pending_diagnostics: list = []
        self._hooks = []
        self._probe = None
        self._pass: _Pass | None = None
        self._memo = transform.Memo()
        self._fwd: dict = {}
        self._vision_s = 0.0
        self._prefills = 0
        self._removed = False
        self.head_dim = vlm.head_dim
        self._before_lm, self._at_layer = self._prune_points()
        self._check()
        lm_config = vlm.language_model.config
        self._fmt = transform.mask_format(lm_config._attn_implementation)
        try:
            self._install()
        except Exception:
            self.remove()
            raise

    # ------------------------------------------------------------------ public
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    @property
    def active(self) -> bool:
        return not self._removed

    @property
    def records(self) -> list[dict]:
        """One dict per sample per prefill; reading them computes any pending diagnostics."""
        if self._pending_diagnostics:
            finish_diagnostics(self._pending_diagnostics)
        return self._records

    def clear(self):
        self._records.clear()
        self._pending_diagnostics.clear()

    def remove(self):
        """Detach every hook and the probe; the model is exactly as before apply()."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if self._probe is not None:
            self._probe.remove()
            self._probe = None
        if getattr(self.vlm.model, "_tokenprune_handle", None) is self:
            del self.vlm.model._tokenprune_handle
            if self.resizes:
                self.vlm.resize_plan = self.vlm.native_visual = None
        self._pass = None
        self._removed = True

    def budget_for(self, n: int) -> int:
        """Tokens to keep for a sample with n visual tokens (never more than n)."""
        if self.keep_ratio is not None:
            return max(1, min(n, round(self.keep_ratio * n)))
        return min(self.budget, n)

    def __repr__(self):
        amount = f"keep_ratio={self.keep_ratio}" if self.keep_ratio is not None else f"budget={self.budget}"
        return f"<PruneHandle {self.strategy!r} {amount} on {self.vlm.label}{' (removed)' if self._removed else ''}>"

    # ------------------------------------------------------------------ setup
    def _who(self) -> str:
        return f"strategy {self.strategy.name!r} on model {self.vlm.label}"

    def _prune_points(self) -> tuple[PrunePoint | None, PrunePoint | None]:
        """(the point before the LLM, the point at layer K); either may be None."""
        if self.parts is None:
            point = PrunePoint(self.strategy, self.stage, lambda native, n: self.budget_for(n), self.head_dim)
            return (point, None) if self.stage == "pre_llm" else (None, point)
        first, second = self.parts

        def first_budget(native, n):
            return self.strategy.checked_first_budget(n, self.budget_for(n))

        def final_budget(native, n):  # the final budget is set by the full prompt's N (keep_ratio)
            return min(self.budget_for(native), n)

        return (PrunePoint(first, "pre_llm", first_budget, self.head_dim),
                PrunePoint(second, "llm", final_budget, self.head_dim))

    def _check(self):
        n_layers = len(self.vlm.decoder_layers)
        if getattr(self.vlm.model, "_tokenprune_handle", None) is not None:
            raise PruneError(f"{self._who()}: the model already has a strategy attached; remove() it first")
        if self.stage == "llm" and not 1 <= self.layer < n_layers:
            raise PruneError(f"{self._who()}: layer K={self.layer} must be between 1 and {n_layers - 1} "
                             f"(the LLM has {n_layers} decoder layers)")
        for point in (self._before_lm, self._at_layer):
            if point is not None:
                self._check_point(point)
        if self.positions not in ("original", "reindex"):
            raise PruneError(f"{self._who()}: positions must be 'original' or 'reindex', got {self.positions!r}")
        if self.parts is not None:
            self._check_two_stage()
        if self.resizes:
            if not self.vlm.supports_resize:
                raise PruneError(f"{self._who()}: this strategy resizes the input images, which model adapter "
                                 f"{self.vlm.name!r} cannot do (supported by: llava, qwen2_vl, qwen2_5_vl, qwen3_vl)")
            if self.budget is None:
                raise PruneError(f"{self._who()}: an input-stage strategy plans the image size from a fixed "
                                 "budget; give budget, not keep_ratio")
        self.vlm.check_strategy(self.strategy, self._who())

    def _check_point(self, point: PrunePoint):
        s = point.strategy
        part = "" if s is self.strategy else f" (its {point.stage} part {s.name!r})"
        if point.stage == "pre_llm" and "attn" in s.requires:
            raise PruneError(f"{self._who()}{part}: 'attn' needs an LLM layer; a pre_llm strategy cannot require it")
        extras = set(getattr(s, "required_extras", ()) or ())
        unknown = extras - set(KNOWN_EXTRAS)
        if unknown:
            raise PruneError(f"{self._who()}{part}: the engine cannot provide ctx.extras {sorted(unknown)}; "
                             f"it fills {', '.join(KNOWN_EXTRAS)}")
        if "attn_all_queries" in extras and point.stage != "llm":
            raise PruneError(f"{self._who()}{part}: ctx.extras['attn_all_queries'] needs an llm-stage strategy")

    def _check_two_stage(self):
        if self.positions != "original":
            raise PruneError(f"{self._who()}: a two-stage strategy keeps original position ids; "
                             f"positions={self.positions!r} is not supported")
        if not self.vlm.supports_two_stage:
            raise PruneError(f"{self._who()}: two-stage pruning (pre_llm, then llm at layer K) is not supported on "
                             f"model adapter {self.vlm.name!r}")

    @property
    def _llm_requires(self) -> frozenset:
        return self._at_layer.strategy.requires if self._at_layer is not None else frozenset()

    @property
    def _llm_extras(self) -> tuple:
        return tuple(getattr(self._at_layer.strategy, "required_extras", ()) or ()) if self._at_layer else ()

    def _install(self):
        vlm, layers = self.vlm, self.vlm.decoder_layers
        vlm.model._tokenprune_handle = self
        add = self._hooks.append
        if self.resizes:
            for hook in vlm.resize_hooks():
                add(hook)
            vlm.resize_plan = ResizePlan(grid=lambda grid: self.strategy.planned_grid(grid, self.budget),
                                         resample=getattr(self.strategy.cfg, "resample", "bicubic"))
        add(vlm.vlm_module.register_forward_pre_hook(self._guarded(self._on_vlm), with_kwargs=True))
        add(vlm.vlm_module.register_forward_hook(self._guarded(self._on_vlm_done), with_kwargs=True))
        add(vlm.language_model.register_forward_pre_hook(self._guarded(self._on_lm), with_kwargs=True))
        for module in vlm.vision_modules:
            add(module.register_forward_pre_hook(self._vision_start))
            add(module.register_forward_hook(self._vision_stop))
        if self.stage == "llm":
            for i in range(self.layer, len(layers)):
                add(layers[i].register_forward_pre_hook(self._guarded(self._layer_hook(i)), with_kwargs=True))
            if self._llm_requires & _PROBE_SIGNALS or "attn_all_queries" in self._llm_extras:
                self._probe = AttentionProbe(vlm.attention_of(layers[self.layer - 1]))
        else:
            add(layers[0].register_forward_pre_hook(self._guarded(self._catch_cache), with_kwargs=True))
        if vlm.needs_after_layer:
            start = self.layer if self.stage == "llm" else 0
            for i in range(start, len(layers)):
                add(layers[i].register_forward_hook(self._guarded(self._after_layer(i)), with_kwargs=True))

    def _guarded(self, fn):
        def hook(*args, **kwargs):
            if self._removed:
                return None
            try:
                return fn(*args, **kwargs)
            except PruneError:
                self.remove()
                raise
            except TokenpruneError as exc:
                self.remove()
                raise PruneError(f"{self._who()}: {exc}") from exc
            except Exception as exc:
                self.remove()
                raise PruneError(f"{self._who()}: {type(exc).__name__}: {exc}") from exc
        return hook

    # ------------------------------------------------------------------ timing
    # transformers 5.23's generate() may run the vision tower before the prefill forward (mm_encoder_outputs),
    # so vision time is accumulated whenever the tower runs and charged to the next prefill.
    def _vision_start(self, module, args):
        _sync(self.vlm.device)
        self._vision_t0 = time.perf_counter()

    def _vision_stop(self, module, args, output):
        t0, self._vision_t0 = getattr(self, "_vision_t0", None), None
        if t0 is not None:
            _sync(self.vlm.device)
            self._vision_s += time.perf_counter() - t0

    # ------------------------------------------------------------------ VLM forward
    def _on_vlm(self, module, args, kwargs):
        self._memo = transform.Memo()
        self._fwd = {}
        cache = kwargs.get("past_key_values")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if _seen(cache) == 0:
            self._begin(ids, kwargs)
            return None
        p = self._pass
        if p is None or p.outcome is None or not p.owns(cache):
            self._pass = None  # a cache this handle did not fill: leave the call alone
            return None
        if self.vlm.has_media(kwargs):
            raise PruneError(f"{self._who()}: visual tokens arrived after the prefill (chunked prefill or a "
                             "cached continuation with new images); prune with a fresh cache instead")
        if (p.lm_layout is not None and kwargs.get("position_ids") is None and self._mrope
                and not p.lm_layout.is_identity()):
            raise PruneError(f"{self._who()}: decoding an M-RoPE model after pre-LLM pruning needs explicit "
                             "position_ids (generate() passes them)")
        p.phase = "decode"
        return None

    def _begin(self, ids, kwargs):
        self._pass = None
        if ids is None:
            if self.vlm.has_media(kwargs):
                raise PruneError(f"{self._who()}: the engine locates visual tokens from input_ids; "
                                 "call the model with input_ids, not inputs_embeds")
            return
        cache = kwargs.get("past_key_values")
        if cache is not None and not isinstance(cache, DynamicCache):
            raise PruneError(f"{self._who()}: layers keep different lengths after pruning, which needs a "
                             f"DynamicCache; got {type(cache).__name__} (do not set cache_implementation)")
        padding = kwargs.get("attention_mask")
        if padding is not None and padding.dim() != 2:
            raise PruneError(f"{self._who()}: only 2-D attention masks are supported, got {list(padding.shape)}")
        visuals = self.vlm.visuals(ids, kwargs)
        prefill = Prefill(visuals=visuals, input_ids=ids, padding=padding, seed=self.seed)
        self._prefills += 1
        if not prefill.has_visual:
            self._records.extend(self._text_only_records(prefill))
            return
        self._pass = _Pass(prefill)
        if self._probe is not None:
            self._probe.clear()
            self._probe.rows = prefill.last_rows
            self._probe.all_queries = "attn_all_queries" in self._llm_extras
            self._probe.armed = True

    def _on_vlm_done(self, module, args, kwargs, output):
        self._vision_s = 0.0
        p = self._pass
        if p is not None and p.phase == "prefill":
            p.phase = "decode"
            p.embeds = None
            if self._probe is not None:
                self._probe.clear()
        return None

    def _text_only_records(self, prefill):
        return [{"prefill": self._prefills, "sample": b, "n_visual": 0, "kept": [], "count": 0,
                 "budget": 0, "select_s": 0.0, "vision_s": 0.0, "grid": None, "batch_size": prefill.B,
                 "info": {}, "diagnostics": None} for b in range(prefill.B)]

    # ------------------------------------------------------------------ selection
    @property
    def _mrope(self) -> bool:
        return bool(getattr(self.vlm, "mrope", False))

    def _select(self, p: _Pass, point: PrunePoint, sources: Sources):
        outcome = p.prefill.run(point, sources)
        if point is self._before_lm:
            p.lm_layout = outcome.layout
        if point is self._before_lm and self._at_layer is not None:
            p.first = outcome  # recorded together with the second point's outcome
            return outcome
        p.outcome = outcome
        records = outcome.records if p.first is None else stages.merged_records(p.first, outcome)
        per_sample_vision = self._vision_s / p.prefill.B
        for rec in records:
            rec.update(prefill=self._prefills, vision_s=per_sample_vision, batch_size=p.prefill.B)
        self._records.extend(records)
        self._pending_diagnostics.extend(outcome.pending_diagnostics)
        if self.positions == "reindex":
            full = p.lm_positions
            if full is None:
                full = torch.arange(p.prefill.L, device=outcome.layout.src.device)[None]
            real = pos_ops.real_slots(outcome.layout, p.prefill.padding)
            p.stash["reindexed"] = pos_ops.reindexed(real)
            p.delta = pos_ops.next_original(full, p.prefill.padding) - real.sum(dim=1)
        return outcome

    def _gather_states(self, states, outcome):
        """Kept rows of [B, L, D] states, with the strategy's replacement rows written in."""
        out = lay.take(states, outcome.layout.src, batch_dim=0, seq_dim=1)
        for b, (slots, rows) in enumerate(zip(outcome.replace_slots, outcome.replace_rows)):
            if slots is not None:
                out[b, slots.to(out.device)] = rows.to(out.device, out.dtype)
        return out

    # ------------------------------------------------------------------ LLM forward
    def _on_lm(self, module, args, kwargs):
        p = self._pass
        if p is None:
            return None
        kwargs = dict(kwargs)
        if p.phase == "prefill":
            embeds = kwargs.get("inputs_embeds")
            if embeds is None:
                raise PruneError(f"{self._who()}: the LLM was called without inputs_embeds")
            p.embeds, p.lm_positions = embeds, kwargs.get("position_ids")
            if self._before_lm is not None:
                out = self._select(p, self._before_lm, Sources(embeds=embeds, final_norm=self.vlm.final_norm))
                kwargs = self._prune_lm_inputs(kwargs, p, out)
                kwargs = self.vlm.prune_lm_kwargs(kwargs, stage="pre_llm", layer=None, outcome=out,
                                                  prefill=p.prefill, stash=p.stash)
                if self._at_layer is not None:
                    self._start_second_point(p, kwargs)
            if self._at_layer is not None:
                # two-stage: the adapter sees the second point's prefill, over the sequence the LLM receives
                kwargs = self.vlm.prune_lm_kwargs(kwargs, stage="llm", layer=self.layer, outcome=None,
                                                  prefill=p.prefill, stash=p.stash)
            return args, kwargs
        self._fwd["seen"] = _seen(kwargs.get("past_key_values"))
        self._fwd["lm_positions"] = kwargs.get("position_ids")
        if p.lm_layout is None:
            return None
        layout = p.lm_layout
        q = kwargs["inputs_embeds"].shape[1]
        removed = layout.full - layout.length
        mask = kwargs.get("attention_mask")
        if mask is not None:
            kwargs["attention_mask"] = lay.mask2d(mask, layout)
        elif layout.valid is not None:
            kwargs["attention_mask"] = layout.extended(self._fwd["seen"] + removed + q)[1].long()
        if self.positions == "reindex":
            kwargs["position_ids"] = pos_ops.shifted(kwargs.get("position_ids"), p.delta)
        elif kwargs.get("position_ids") is None and removed:
            # the LLM would number new tokens from its (pruned) cache length; continue from the full one
            start = self._fwd["seen"] + removed
            kwargs["position_ids"] = torch.arange(start, start + q, device=kwargs["inputs_embeds"].device)[None]
        return args, kwargs

    def _prune_lm_inputs(self, kwargs, p: _Pass, outcome):
        """pre_llm: the LLM's inputs with only the kept tokens (positions keep their original ids)."""
        layout = outcome.layout
        embeds = kwargs["inputs_embeds"]
        kwargs["inputs_embeds"] = self._gather_states(embeds, outcome)
        mask = kwargs.get("attention_mask")
        if mask is None:
            # an explicit all-ones mask also stops transformers from reading gapped ids as packed sequences
            kwargs["attention_mask"] = layout.live().long()
        else:
            kwargs["attention_mask"] = lay.mask2d(mask, layout)
        position_ids = kwargs.get("position_ids")
        if self.positions == "reindex":
            kwargs["position_ids"] = pos_ops.like(position_ids, p.stash["reindexed"])
        else:
            if position_ids is None:
                position_ids = torch.arange(layout.full, device=embeds.device)[None].expand(layout.batch, -1)
            kwargs["position_ids"] = transform.positions(position_ids, layout)
        return kwargs

    def _start_second_point(self, p: _Pass, kwargs):
        """Two-stage: from here on the prefill is the sequence the LLM receives (the first point's survivors)."""
        p.prefill = stages.survivors(p.prefill, p.first)
        p.embeds, p.lm_positions = kwargs["inputs_embeds"], kwargs.get("position_ids")
        if self._probe is not None:
            self._probe.rows = p.prefill.last_rows  # the last prompt token's slot in the shorter sequence

    def _catch_cache(self, module, args, kwargs):
        p = self._pass
        if p is not None and p.phase == "prefill" and p.cache is None:
            p.cache = _ref(kwargs.get("past_key_values"))
        return None

    # ------------------------------------------------------------------ decoder layers (llm stage)
    def _layer_hook(self, index: int):
        def hook(module, args, kwargs):
            p = self._pass
            if p is None:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            if p.phase == "prefill":
                if index == self.layer:
                    hidden = self._prune_at_layer(p, hidden, kwargs)
                kwargs = self._layer_kwargs_prefill(dict(kwargs), p, hidden)
            else:
                kwargs = self._layer_kwargs_decode(dict(kwargs), p, hidden, index)
                if kwargs is None:
                    return None
            if args:
                return (hidden, *args[1:]), kwargs
            kwargs["hidden_states"] = hidden
            return args, kwargs
        return hook

    def _prune_at_layer(self, p: _Pass, hidden, kwargs):
        """Layer K at prefill: compute the signals, select, and keep the chosen rows of the residual stream."""
        p.cache = _ref(kwargs.get("past_key_values"))
        sources = Sources(hidden=hidden, embeds=p.embeds, final_norm=self.vlm.final_norm)
        probe = self._probe
        if probe is not None:
            sources.keys, sources.query_rows = probe.keys, probe.query_rows
            sources.queries, sources.scaling = probe.queries, probe.scaling
        out = self._select(p, self._at_layer, sources)
        return self._gather_states(hidden, out)

    def _layer_kwargs_prefill(self, kwargs, p: _Pass, hidden):
        layout, memo = p.outcome.layout, self._memo
        kwargs["attention_mask"] = memo.get("mask", kwargs.get("attention_mask"), lambda m: transform.prefill_mask(
            m, layout, fmt=self._fmt, dtype=hidden.dtype))
        if self.positions == "reindex":
            plain = p.stash["reindexed"]
            kwargs["position_ids"] = memo.get("pos", kwargs.get("position_ids"),
                                              lambda t: None if t is None else plain)
            kwargs["position_embeddings"] = memo.get("rope", kwargs.get("position_embeddings"), lambda _: (
                self.vlm.rotary(hidden, self._rotary_positions(pos_ops.like(self._template(p), plain)))))
        else:
            kwargs["position_ids"] = memo.get("pos", kwargs.get("position_ids"),
                                              lambda t: transform.positions(t, layout))
            kwargs["position_embeddings"] = memo.get("rope", kwargs.get("position_embeddings"),
                                                     lambda t: transform.rotary(t, layout))
        return kwargs

    def _layer_kwargs_decode(self, kwargs, p: _Pass, hidden, index):
        layout, memo = p.outcome.layout, self._memo
        if layout.is_identity() and self.positions != "reindex":
            return None
        cache = kwargs.get("past_key_values")
        q = hidden.shape[1]
        total = (cache.get_seq_length(index) if cache is not None else layout.length) + layout.full - layout.length + q
        kwargs["attention_mask"] = memo.get("mask", kwargs.get("attention_mask"), lambda m: transform.decode_mask(
            m, layout, q=q, total=total, fmt=self._fmt, dtype=hidden.dtype))
        if self.positions == "reindex":
            full = self._fwd.get("lm_positions")
            if full is None:
                seen = self._fwd.get("seen", 0)
                full = torch.arange(seen, seen + q, device=hidden.device)[None]
                if self._mrope:
                    full = full[None].expand(3, -1, -1)
            kwargs["position_ids"] = memo.get("pos", kwargs.get("position_ids"),
                                              lambda t: pos_ops.shifted(t, p.delta))
            kwargs["position_embeddings"] = memo.get("rope", kwargs.get("position_embeddings"), lambda _: (
                self.vlm.rotary(hidden, self._rotary_positions(pos_ops.shifted(full, p.delta)))))
        return kwargs

    def _template(self, p: _Pass):
        """The LLM-level position ids of the prefill, or a stand-in with the right number of rows."""
        if p.lm_positions is not None:
            return p.lm_positions
        return torch.zeros(3, 1, 1, dtype=torch.long) if self._mrope else None

    def _rotary_positions(self, pos):
        # Qwen's 4-row ids carry text positions first; the rotary embedding takes the 3 M-RoPE rows
        return pos[1:] if pos.dim() == 3 and pos.shape[0] == 4 else pos

    def _after_layer(self, index: int):
        def hook(module, args, kwargs, output):
            p = self._pass
            if p is None or p.phase != "prefill" or p.outcome is None:
                return None
            return self.vlm.after_layer(index, output, outcome=p.outcome, prefill=p.prefill, stash=p.stash)
        return hook
