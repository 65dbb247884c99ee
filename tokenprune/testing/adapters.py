"""Checks every model adapter must pass, shipped for third-party adapter authors; the built-in adapters
run the same checks (tests/test_engine.py).

Usage in a plugin's tests (examples/tokenprune-smolvlm does exactly this)::

    from tokenprune.testing.adapters import AdapterConformance

    class TestMyAdapter(AdapterConformance):
        suppress_tokens = [...]            # ids greedy decoding must never produce (placeholders, padding, EOS)

        def build(self, layers):           # a tiny random model of the family, loaded through the adapter
            ...

        def samples(self, n, seed):        # n benchmark Samples with images and prompts of different lengths
            ...

What they hold, on the model the adapter drives:
  * the adapter finds every visual token of the prompt, and places each once on its grid;
  * at budget = all tokens, pruning changes nothing (logits and generated tokens are equal);
  * cached greedy generation with pruning equals a reference that recomputes the whole sequence at
    every step, without a KV cache, with the same tokens removed (``slow_reference``);
  * a left-padded batch generates what its samples generate one by one;
  * every registered strategy attaches and runs (or refuses the layout with an error naming itself);
  * a failing strategy leaves the model unpatched; a text-only prompt passes through.
Each check is also a plain ``check_*`` function, for suites with their own parametrisation.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from .. import apply, get_strategy, list_strategies, strategy_class
from ..engine import PruneError
from ..selection import Selection
from ..strategy import Strategy
from ..two_stage import TwoStage

NEW_TOKENS = 8


# ---------------------------------------------------------------------------------------- test strategies
class KeepTop(Strategy):
    """Test strategy at layer 2 that reads every llm signal and keeps the highest-attention tokens."""

    name = "test_keep_top"
    stage = "llm"
    layer = 2
    requires = frozenset({"keys", "attn", "hidden", "text_keys", "text_hidden", "final_norm"})

    def select(self, keys, attn, coords, budget, ctx):
        assert ctx.text_keys.shape[-1] == keys.shape[-1] and ctx.text_hidden.shape[-1] == ctx.hidden.shape[-1]
        score = attn + 1e-3 * ctx.final_norm(ctx.hidden).norm(dim=-1)
        keep = score.topk(budget, dim=1, sorted=False).indices.sort(dim=1).values
        return Selection(keep=keep, info={"order": keep})


class Merge(KeepTop):
    """Keeps like KeepTop and replaces the kept states with a blend (a merging method's shape)."""

    name = "test_merge"
    requires = frozenset({"attn", "hidden"})

    def select(self, keys, attn, coords, budget, ctx):
        keep = attn.topk(budget, dim=1).indices.sort(dim=1).values
        kept = torch.gather(ctx.hidden, 1, keep[..., None].expand(-1, -1, ctx.hidden.shape[-1]))
        return Selection(keep=keep, hidden=0.5 * kept + 0.5 * ctx.hidden.mean(dim=1, keepdim=True))


class Raises(KeepTop):
    name = "test_raises"

    def select(self, keys, attn, coords, budget, ctx):
        raise ValueError("boom")


class Garbage(KeepTop):
    name = "test_garbage"

    def select(self, keys, attn, coords, budget, ctx):
        return Selection(keep=torch.zeros(keys.shape[0], budget + 1, dtype=torch.long))


TEST_STRATEGIES = {cls.name: cls for cls in (KeepTop, Merge)}


def make_strategy(name: str, **params) -> Strategy:
    """A test strategy of this module (``test_keep_top``, ``test_merge``) or a registered one."""
    if name in TEST_STRATEGIES:
        return TEST_STRATEGIES[name](**params)
    return get_strategy(name, **params)


def replaying(strategy: Strategy) -> Strategy:
    """The same strategy, but every call after the first returns the first call's Selection. A two-stage
    strategy replays each part: the engine calls its parts, never its ``select``."""
    if isinstance(strategy, TwoStage):
        fixed = tuple(replaying(part) for part in strategy.parts())

        class ReplayParts(type(strategy)):
            name = strategy.name

            def parts(self):
                return fixed

        return ReplayParts(**strategy.cfg.as_dict())
    base = type(strategy)

    class Replay(base):
        name = base.name

        def select(self, keys, attn, coords, budget, ctx):
            if getattr(self, "_first", None) is None:
                self._first = strategy.select(keys, attn, coords, budget, ctx)
            return self._first

    return Replay(**strategy.cfg.as_dict())


def layers_needed() -> int:
    """Decoder layers a model needs for every registered llm strategy at its default layer K (and K = 2)."""
    layers = [strategy_class(n).layer or 0 for n in list_strategies() if strategy_class(n).stage == "llm"]
    return max([3] + [k + 1 for k in layers])


# ---------------------------------------------------------------------------------------- running the model
def new_tokens(vlm, inputs, *, suppress=(), max_new_tokens: int = NEW_TOKENS, **kw) -> torch.Tensor:
    """[B, T] greedy new tokens of ``vlm.generate``, never one of ``suppress``."""
    out = vlm.generate(inputs, max_new_tokens=max_new_tokens, suppress_tokens=list(suppress), **kw)
    return out.sequences[:, inputs["input_ids"].shape[1]:]


def forward_logits(vlm, inputs) -> torch.Tensor:
    with torch.inference_mode():
        vlm.prepare_generation()
        return vlm.model(**inputs).logits


def slow_reference(vlm, inputs, strategy, budget, *, suppress=(), steps: int = NEW_TOKENS, **apply_kw):
    """Greedy tokens from full recomputation at every step, pruning the same tokens (no KV cache): the
    strategy's first Selection is replayed on every step's prefill. For one unpadded sample."""
    ids = inputs["input_ids"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    out = []
    with apply(vlm, replaying(strategy), budget, **apply_kw), torch.inference_mode():
        for _ in range(steps):
            kw = dict(extra)
            if "mm_token_type_ids" in inputs:
                pad = ids.shape[1] - inputs["mm_token_type_ids"].shape[1]
                kw["mm_token_type_ids"] = torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, pad))
            vlm.prepare_generation()
            logits = vlm.model(input_ids=ids, use_cache=False, **kw).logits[:, -1].float()
            logits[:, list(suppress)] = float("-inf")
            nxt = logits.argmax(dim=-1, keepdim=True)
            out.append(nxt)
            ids = torch.cat([ids, nxt], dim=1)
    return torch.cat(out, dim=1)


def n_visual(vlm, inputs, reduce=max) -> int:
    """Visual tokens per sample (the largest, or ``reduce`` over the batch)."""
    return reduce(vlm.count_visual(row) for row in inputs["input_ids"])


def hook_count(model) -> int:
    """Forward hooks installed by tokenprune (transformers adds its own, lazily, in some versions)."""
    return sum(getattr(h, "__module__", "").startswith("tokenprune.")
               for m in model.modules() for h in (*m._forward_pre_hooks.values(), *m._forward_hooks.values()))


def assert_unpatched(vlm, before: int = 0):
    """No tokenprune hook, probe or marker left on the model."""
    from ..engine.probe import PROBE_IMPL
    assert before == 0 and hook_count(vlm.model) == 0
    assert not hasattr(vlm.model, "_tokenprune_handle")
    assert all(getattr(getattr(m, "config", None), "_attn_implementation", None) != PROBE_IMPL
               for m in vlm.model.modules())


def full_grid(visuals) -> bool:
    """Whether a sample's visual tokens fill their whole T x H x W grid (anyres layouts do not)."""
    return visuals.n == visuals.grid[0] * visuals.grid[1] * visuals.grid[2]


# ---------------------------------------------------------------------------------------- the checks
def check_visuals(vlm, inputs):
    """``visuals`` finds exactly the prompt's visual tokens (its ``count_visual``), each at its own place on
    a grid that its coordinates span, with segments inside the sample's tokens."""
    found = vlm.visuals(inputs["input_ids"], dict(inputs))
    assert len(found) == inputs["input_ids"].shape[0]
    for row, v in zip(inputs["input_ids"], found):
        ids = torch.tensor(vlm.visual_token_ids, device=row.device)
        assert torch.equal(v.positions.cpu(), torch.isin(row, ids).nonzero().flatten().cpu())
        assert v.coords.dtype == torch.int64 and v.coords.shape in ((v.n, 2), (v.n, 3))
        coords = v.coords if v.coords.shape[1] == 3 else torch.cat([v.coords.new_zeros(v.n, 1), v.coords], dim=1)
        assert len({tuple(c) for c in coords.tolist()}) == v.n, "two visual tokens share a coordinate"
        assert (coords >= 0).all() and tuple((coords.amax(dim=0) + 1).tolist()) == tuple(v.grid)
        assert all(0 <= a < b <= v.n for _, a, b in v.segments)
    return found


def check_identity(vlm, inputs, strategy, *, suppress=()):
    """At budget = N nothing changes: logits and greedy tokens equal the unpruned model's, every token kept."""
    base_logits = forward_logits(vlm, inputs)
    base_tokens = new_tokens(vlm, inputs, suppress=suppress, max_new_tokens=4)
    before = hook_count(vlm.model)
    with apply(vlm, strategy, budget=n_visual(vlm, inputs)) as handle:
        logits, tokens = forward_logits(vlm, inputs), new_tokens(vlm, inputs, suppress=suppress, max_new_tokens=4)
    assert torch.equal(logits, base_logits)
    assert torch.equal(tokens, base_tokens)
    assert all(r["count"] == r["n_visual"] and r["kept"] == list(range(r["n_visual"])) for r in handle.records)
    assert_unpatched(vlm, before)


def check_pruning_changes_the_output(vlm, inputs):
    base = forward_logits(vlm, inputs)
    with apply(vlm, KeepTop(), budget=max(1, n_visual(vlm, inputs) // 4)):
        pruned = forward_logits(vlm, inputs)
    assert not torch.allclose(pruned[:, -1], base[:, -1])


def check_cached_generation(vlm, inputs, strategy, *, positions="original", suppress=()):
    """Cached greedy generation with a third of the tokens kept equals the no-cache ``slow_reference``."""
    budget = max(1, n_visual(vlm, inputs) // 3)
    with apply(vlm, strategy, budget, positions=positions) as handle:
        cached = new_tokens(vlm, inputs, suppress=suppress)
    assert len(handle.records) == inputs["input_ids"].shape[0]
    assert all(r["count"] == budget for r in handle.records)
    reference = slow_reference(vlm, inputs, strategy, budget, positions=positions, suppress=suppress)
    assert torch.equal(cached, reference)


def check_batch_equals_single_calls(vlm, samples, strategy, *, suppress=()):
    """A left-padded batch (prompts of different lengths) generates what each sample generates alone."""
    batch = vlm.build_inputs(samples)
    lengths = batch["attention_mask"].sum(dim=1)
    assert lengths.unique().numel() == len(samples), "the samples' prompts must differ in length"
    budget = max(1, n_visual(vlm, batch, min) // 3)
    with apply(vlm, strategy, budget) as handle:
        together = new_tokens(vlm, batch, suppress=suppress, max_new_tokens=6)
        kept_batch = [r["kept"] for r in handle.records]
        handle.clear()
        singles = [new_tokens(vlm, vlm.build_inputs([x]), suppress=suppress, max_new_tokens=6) for x in samples]
        kept_single = [r["kept"] for r in handle.records]
    assert kept_batch == kept_single
    for i, single in enumerate(singles):
        assert torch.equal(together[i, :single.shape[1]], single[0]), f"sample {i}"


def check_strategy_runs(vlm, inputs, strategy, *, suppress=()):
    """The strategy attaches and generates with its defaults, or refuses (a layout that is not a full grid,
    an input resize the adapter does not support) with an error naming itself and the model, leaving the
    model unpatched."""
    budget = max(1, n_visual(vlm, inputs, min) // 4)
    before = hook_count(vlm.model)
    try:
        with apply(vlm, strategy, budget) as handle:
            tokens = new_tokens(vlm, inputs, suppress=suppress, max_new_tokens=2)
    except PruneError as exc:
        unsupported_resize = strategy.stage == "input" and not vlm.supports_resize
        visuals = vlm.visuals(inputs["input_ids"], dict(inputs))
        assert unsupported_resize or not all(full_grid(v) for v in visuals), str(exc)
        assert repr(strategy.name) in str(exc) and vlm.name in str(exc)
        assert_unpatched(vlm, before)
        return
    B = inputs["input_ids"].shape[0]
    assert tokens.shape == (B, 2)
    assert [r["sample"] for r in handle.records] == list(range(B))
    for r in handle.records:
        assert r["n_visual"] == vlm.count_visual(inputs["input_ids"][r["sample"]])
        assert r["count"] == len(r["kept"]) >= 1
        if strategy.exact_budget:
            assert r["count"] == budget
        assert r["select_s"] >= 0 and r["grid"] is not None
    assert_unpatched(vlm, before)


def check_failure_unpatches(vlm, inputs, bad: Strategy):
    """A strategy that raises or returns garbage surfaces as PruneError naming it and the model, with
    every hook removed and the model's output as before."""
    base = forward_logits(vlm, inputs)
    before = hook_count(vlm.model)
    handle = apply(vlm, bad, budget=4)
    with pytest.raises(PruneError) as err:
        forward_logits(vlm, inputs)
    assert bad.name in str(err.value) and vlm.name in str(err.value)
    assert not handle.active
    assert_unpatched(vlm, before)
    assert torch.equal(forward_logits(vlm, inputs), base)
    handle.remove()  # idempotent


def check_text_only(vlm, sample, *, suppress=()):
    """A prompt without media passes through unpruned, recorded with no visual tokens."""
    inputs = vlm.build_inputs([dataclasses.replace(sample, images=[], frames=None)])
    base = new_tokens(vlm, inputs, suppress=suppress)
    with apply(vlm, "random", budget=2) as handle:
        assert torch.equal(new_tokens(vlm, inputs, suppress=suppress), base)
    assert handle.records[0]["n_visual"] == 0


# ---------------------------------------------------------------------------------------- the suite
class AdapterConformance:
    """Contract checks for a model adapter. Subclass it, set ``suppress_tokens`` and implement ``build``
    and ``samples`` (see the module doc); ``strategies`` (names or fnmatch patterns) picks the registered
    strategies that must run on it."""

    strategies = "*"
    suppress_tokens: tuple = ()

    def build(self, layers: int):  # pragma: no cover - abstract
        """A tokenprune VLM of the family with ``layers`` decoder layers (tiny, random weights)."""
        raise NotImplementedError

    def samples(self, n: int, seed: int = 0) -> list:  # pragma: no cover - abstract
        """``n`` benchmark Samples with images, their prompts of different lengths."""
        raise NotImplementedError

    @pytest.fixture(scope="class")
    def tp_vlm(self):
        return self.build(layers=layers_needed())

    def test_visuals_cover_the_visual_tokens(self, tp_vlm):
        batch = tp_vlm.build_inputs(self.samples(3, seed=1))
        together = check_visuals(tp_vlm, batch)
        for i, sample in enumerate(self.samples(3, seed=1)):  # left padding moves positions, not coordinates
            (alone,) = check_visuals(tp_vlm, tp_vlm.build_inputs([sample]))
            assert torch.equal(alone.coords, together[i].coords) and alone.grid == together[i].grid
            assert alone.segments == together[i].segments

    @pytest.mark.parametrize("strategy", ["uniform", "test_keep_top"])
    def test_identity_at_full_budget(self, tp_vlm, strategy):
        check_identity(tp_vlm, tp_vlm.build_inputs(self.samples(2)), make_strategy(strategy),
                       suppress=self.suppress_tokens)

    def test_pruning_changes_the_output(self, tp_vlm):
        check_pruning_changes_the_output(tp_vlm, tp_vlm.build_inputs(self.samples(1)))

    @pytest.mark.parametrize("strategy,positions", [("test_merge", "original"), ("test_keep_top", "reindex"),
                                                    ("random", "original"), ("random", "reindex"),
                                                    ("saint_hybrid", "original")])
    def test_cached_generation_equals_the_no_cache_reference(self, tp_vlm, strategy, positions):
        params = {"layer": 2} if strategy == "saint_hybrid" else {}
        check_cached_generation(tp_vlm, tp_vlm.build_inputs(self.samples(1, seed=3)),
                                make_strategy(strategy, **params), positions=positions, suppress=self.suppress_tokens)

    @pytest.mark.parametrize("strategy", ["test_merge", "random", "saint_hybrid"])
    def test_left_padded_batch_equals_single_calls(self, tp_vlm, strategy):
        params = {"layer": 2} if strategy == "saint_hybrid" else {}
        check_batch_equals_single_calls(tp_vlm, self.samples(3, seed=5), make_strategy(strategy, **params),
                                        suppress=self.suppress_tokens)

    def test_every_registered_strategy_runs(self, tp_vlm, tp_strategy):
        check_strategy_runs(tp_vlm, tp_vlm.build_inputs(self.samples(2, seed=7)), tp_strategy,
                            suppress=self.suppress_tokens)

    @pytest.mark.parametrize("bad", [Raises, Garbage])
    def test_failing_strategy_leaves_the_model_unpatched(self, tp_vlm, bad):
        check_failure_unpatches(tp_vlm, tp_vlm.build_inputs(self.samples(1)), bad())

    def test_text_only_prompt_passes_through(self, tp_vlm):
        check_text_only(tp_vlm, self.samples(1)[0], suppress=self.suppress_tokens)
