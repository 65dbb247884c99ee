"""The handle that keeps a strategy attached to a model: it routes the model's hooks to the engine's parts.

Hooks (all removable, no forward body is replaced):
  * a forward pre-hook on the VLM's inner model (sees input ids, geometry, cache) starts each prefill
    or decode step, and a forward hook after it ends the prefill;
  * pre_llm: a forward pre-hook on the LLM drops visual embeddings before layer 0;
  * llm: forward pre-hooks on decoder layers K..L-1 gather the kept tokens at layer K and
    rewrite masks / positions / (cos, sin) for every later layer; layer K-1's attention
    carries a probe (probe.py) when keys or attention are required;
  * two-stage strategies (two_stage.TwoStage) get both: the llm part works on the sequence the
    pre_llm part left (stages.py);
  * timing hooks on the vision tower (vision_timer.py);
  * an adapter that edits decoder outputs (Qwen3-VL DeepStack) gets forward hooks on layers >= K that
    exist only while a prefill runs, so decode steps pay nothing for them.
The work itself is done elsewhere: checks.py refuses what cannot run, prefill.py selects, transform.py
rewrites keyword arguments with the position policy of positions.py, state.py holds what a pass remembers.
Anything that goes wrong inside a hook removes every hook before the error leaves.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import TokenpruneError
from . import positions as pos_ops
from . import stages, transform
from .checks import PruneError, check_attach, check_decode, check_prefill, who
from .prefill import Prefill, Sources, finish_diagnostics
from .probe import AttentionProbe
from .resize import ResizePlan
from .stages import PrunePoint
from .state import Forward, Pass, ref, seen
from .vision_timer import VisionTimer

if TYPE_CHECKING:
    from ..models.contract import EngineAdapter

_PROBE_SIGNALS = {"keys", "attn", "text_keys"}


def kept_count(n: int, budget: int | None, keep_ratio: float | None) -> int:
    """Tokens to keep of a sample's n visual tokens: the keep ratio's share (at least 1) or the budget, never over n."""
    if keep_ratio is not None:
        return max(1, min(n, round(keep_ratio * n)))
    return min(budget, n)


class PruneHandle:
    """A strategy attached to a model. Use as a context manager, or call :meth:`remove`.

    ``records``: one dict per sample per prefill (see docs/engine.md); ``clear()`` empties it.
    """

    def __init__(self, vlm: EngineAdapter, strategy, *, budget=None, keep_ratio=None, positions="original", seed=0):
        self.vlm = vlm
        self.strategy = strategy
        self.budget = budget
        self.keep_ratio = keep_ratio
        self.positions = positions
        self.seed = seed
        self.layer = strategy.prune_layer
        self._resizes = strategy.stage == "input"  # the image is resized, then select runs as pre_llm
        self._before_lm, self._at_layer = stages.prune_points(strategy, self.budget_for, vlm.head_dim)
        self._records: list[dict] = []
        self._pending_diagnostics: list = []
        self._hooks = []
        self._prefill_hooks = []  # hooks that serve only a prefill: attached when it starts, removed when it ends
        self._probe = None
        self._pass: Pass | None = None
        self._step = Forward()
        self._prefills = 0
        self._removed = False
        check_attach(vlm, strategy, (self._before_lm, self._at_layer), positions=positions, budget=budget)
        self._rewrite = transform.Rewriter(transform.mask_format(vlm.language_model.config._attn_implementation),
                                           pos_ops.policy(positions, vlm))
        self._vision = VisionTimer(vlm)
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
        self._detach_prefill_hooks()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if self._probe is not None:
            self._probe.remove()
            self._probe = None
        if getattr(self.vlm.model, "_tokenprune_handle", None) is self:
            del self.vlm.model._tokenprune_handle
            if self._resizes:
                self.vlm.resize_plan = self.vlm.native_visual = None
        self._pass = None
        self._removed = True

    def budget_for(self, n: int) -> int:
        """Tokens to keep for a sample with n visual tokens (never more than n)."""
        return kept_count(n, self.budget, self.keep_ratio)

    def __repr__(self):
        amount = f"keep_ratio={self.keep_ratio}" if self.keep_ratio is not None else f"budget={self.budget}"
        return f"<PruneHandle {self.strategy!r} {amount} on {self.vlm.label}{' (removed)' if self._removed else ''}>"

    # ------------------------------------------------------------------ hooks
    def _install(self):
        vlm, layers, at_layer = self.vlm, self.vlm.decoder_layers, self._at_layer
        vlm.model._tokenprune_handle = self
        add = self._hooks.append
        if self._resizes:
            for hook in vlm.resize_hooks():
                add(hook)
            vlm.resize_plan = ResizePlan(grid=lambda grid: self.strategy.planned_grid(grid, self.budget),
                                         resample=getattr(self.strategy.cfg, "resample", "bicubic"))
        add(vlm.vlm_module.register_forward_pre_hook(self._guarded(self._on_vlm), with_kwargs=True))
        add(vlm.vlm_module.register_forward_hook(self._guarded(self._on_vlm_done), with_kwargs=True))
        add(vlm.language_model.register_forward_pre_hook(self._guarded(self._on_lm), with_kwargs=True))
        self._hooks.extend(self._vision.attach())
        if at_layer is not None:
            for i in range(self.layer, len(layers)):
                add(layers[i].register_forward_pre_hook(self._layer_hook(i), with_kwargs=True))  # guards itself
            if at_layer.strategy.requires & _PROBE_SIGNALS or "attn_all_queries" in at_layer.extras:
                self._probe = AttentionProbe(vlm.attention_of(layers[self.layer - 1]))
                self._probe.all_queries = "attn_all_queries" in at_layer.extras
        else:
            add(layers[0].register_forward_pre_hook(self._guarded(self._catch_cache), with_kwargs=True))

    def _attach_prefill_hooks(self):
        """Hooks only a prefill needs (the adapter's after_layer on layers >= K): none run while decoding."""
        self._detach_prefill_hooks()
        if self.vlm.needs_after_layer:
            layers = self.vlm.decoder_layers
            start = self.layer if self._at_layer is not None else 0
            self._prefill_hooks = [layers[i].register_forward_hook(self._guarded(self._after_layer(i)), with_kwargs=True)
                                   for i in range(start, len(layers))]

    def _detach_prefill_hooks(self):
        for h in self._prefill_hooks:
            h.remove()
        self._prefill_hooks = []

    def _fail(self, exc: Exception):
        """Remove every hook, then raise ``exc`` as a PruneError naming the strategy and the model."""
        self.remove()
        if isinstance(exc, PruneError):
            raise exc
        detail = str(exc) if isinstance(exc, TokenpruneError) else f"{type(exc).__name__}: {exc}"
        raise PruneError(f"{who(self.strategy, self.vlm)}: {detail}") from exc

    def _guarded(self, fn):
        def hook(*args, **kwargs):
            if self._removed:
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                self._fail(exc)
        return hook

    # ------------------------------------------------------------------ VLM forward: a prefill starts, or a decode step
    def _on_vlm(self, module, args, kwargs):
        self._step = Forward()
        cache = kwargs.get("past_key_values")
        if seen(cache) == 0:
            self._begin(kwargs.get("input_ids", args[0] if args else None), kwargs)
            return None
        p = self._pass
        if p is None or p.outcome is None or not p.owns(cache):
            self._pass = None  # a cache this handle did not fill: leave the call alone
            return None
        check_decode(self.vlm, self.strategy, kwargs, p.lm_layout)
        p.phase = "decode"
        return None

    def _begin(self, ids, kwargs):
        self._pass = None
        check_prefill(self.vlm, self.strategy, ids, kwargs)
        if ids is None:
            return
        prefill = Prefill(visuals=self.vlm.visuals(ids, kwargs), input_ids=ids, padding=kwargs.get("attention_mask"),
                          seed=self.seed)
        self._prefills += 1
        if not prefill.has_visual:
            self._records.extend(prefill.text_only_records(self._prefills))
            return
        self._pass = Pass(prefill, adapter=self.vlm.new_stash())
        self._attach_prefill_hooks()
        if self._probe is not None:
            self._probe.clear()
            self._probe.rows = prefill.last_rows
            self._probe.armed = True

    def _on_vlm_done(self, module, args, kwargs, output):
        self._vision.seconds = 0.0
        p = self._pass
        if p is not None and p.phase == "prefill":
            self._detach_prefill_hooks()
            p.phase = "decode"
            p.embeds = None
            if self._probe is not None:
                self._probe.clear()
        return None

    # ------------------------------------------------------------------ selection at a prune point
    def _select(self, p: Pass, point: PrunePoint, sources: Sources):
        outcome = p.prefill.run(point, sources)
        if point is self._before_lm:
            p.lm_layout = outcome.layout
            if self._at_layer is not None:
                p.first = outcome  # recorded together with the second point's outcome
                return outcome
        p.outcome = outcome
        records = outcome.records if p.first is None else stages.merged_records(p.first, outcome)
        per_sample_vision = self._vision.seconds / p.prefill.B
        for rec in records:
            rec.update(prefill=self._prefills, vision_s=per_sample_vision, batch_size=p.prefill.B)
        self._records.extend(records)
        self._pending_diagnostics.extend(outcome.pending_diagnostics)
        p.renumbering = self._rewrite.positions.renumber(outcome.layout, p.prefill, p.lm_positions)
        return outcome

    # ------------------------------------------------------------------ LLM forward
    def _on_lm(self, module, args, kwargs):
        p = self._pass
        if p is None:
            return None
        if p.phase == "prefill":
            embeds = kwargs.get("inputs_embeds")
            if embeds is None:
                raise PruneError(f"{who(self.strategy, self.vlm)}: the LLM was called without inputs_embeds")
            p.embeds, p.lm_positions = embeds, kwargs.get("position_ids")
            if self._before_lm is not None:
                out = self._select(p, self._before_lm, Sources(embeds=embeds, final_norm=self.vlm.final_norm))
                kwargs = self._rewrite.lm_prefill(kwargs, out, p)
                kwargs = self.vlm.prune_lm_kwargs(kwargs, stage="pre_llm", layer=None, outcome=out,
                                                  prefill=p.prefill, stash=p.adapter)
                if self._at_layer is not None:
                    self._start_second_point(p, kwargs)
            if self._at_layer is not None:
                # two-stage: the adapter sees the second point's prefill, over the sequence the LLM receives
                kwargs = self.vlm.prune_lm_kwargs(kwargs, stage="llm", layer=self.layer, outcome=None,
                                                  prefill=p.prefill, stash=p.adapter)
            return args, kwargs
        if p.lm_layout is None and not self._rewrite.positions.rewrites_decode:
            return None  # nothing at this call, and the layers need no decode state
        step = self._step
        step.seen, step.lm_positions = seen(kwargs.get("past_key_values")), kwargs.get("position_ids")
        if p.lm_layout is None:
            return None
        return args, self._rewrite.lm_decode(kwargs, p, step)

    def _start_second_point(self, p: Pass, kwargs):
        """Two-stage: from here on the prefill is the sequence the LLM receives (the first point's survivors)."""
        p.prefill = stages.survivors(p.prefill, p.first)
        p.embeds, p.lm_positions = kwargs["inputs_embeds"], kwargs.get("position_ids")
        if self._probe is not None:
            self._probe.rows = p.prefill.last_rows  # the last prompt token's slot in the shorter sequence

    def _catch_cache(self, module, args, kwargs):
        p = self._pass
        if p is not None and p.phase == "prefill" and p.cache is None:
            p.cache = ref(kwargs.get("past_key_values"))
        return None

    # ------------------------------------------------------------------ decoder layers (llm stage)
    def _layer_hook(self, index: int):
        # Runs on every layer >= K of every call, so it is kept lean: kwargs are rewritten in place (no copy)
        # and the error guard is inlined rather than wrapped around it.
        prune_here = index == self.layer

        def hook(module, args, kwargs):
            p = self._pass
            if p is None:
                return None
            try:
                hidden = args[0] if args else kwargs["hidden_states"]
                if p.phase == "prefill":
                    if prune_here:
                        hidden = self._prune_at_layer(p, hidden, kwargs)
                        if args:
                            args = (hidden, *args[1:])
                        else:
                            kwargs["hidden_states"] = hidden
                    self._rewrite.layer_prefill(kwargs, hidden, p, self._step)
                elif not self._rewrite.layer_decode(kwargs, hidden, index, p, self._step):
                    return None
            except Exception as exc:
                self._fail(exc)
            return args, kwargs
        return hook

    def _prune_at_layer(self, p: Pass, hidden, kwargs):
        """Layer K at prefill: compute the signals, select, and keep the chosen rows of the residual stream."""
        p.cache = ref(kwargs.get("past_key_values"))
        sources = Sources(hidden=hidden, embeds=p.embeds, final_norm=self.vlm.final_norm)
        probe = self._probe
        if probe is not None:
            sources.keys, sources.query_rows = probe.keys, probe.query_rows
            sources.queries, sources.scaling = probe.queries, probe.scaling
        return self._select(p, self._at_layer, sources).gather(hidden)

    def _after_layer(self, index: int):
        def hook(module, args, kwargs, output):
            p = self._pass
            if p is None or p.phase != "prefill" or p.outcome is None:
                return None
            return self.vlm.after_layer(index, output, outcome=p.outcome, prefill=p.prefill, stash=p.adapter)
        return hook
