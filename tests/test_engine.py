"""The pruning engine inside real transformers VLMs (tiny random-weight configs, built offline).

For every adapter: (a) identity at budget = N, (b) cached greedy generation equals a
slow reference that recomputes the whole sequence each step with the same tokens
removed, (c) a left-padded batch equals its samples run one by one, (d) every
registered strategy runs with its defaults, (e) a failing strategy leaves the
model unpatched with an error naming strategy and model.
"""
from __future__ import annotations

import pytest
import torch

import tokenprune
import tiny_models as tm
from tokenprune import Selection, Strategy
from tokenprune.engine import PruneError

NEW_TOKENS = 8


def _layers_needed() -> int:
    layers = [tokenprune.strategy_class(n).layer or 0 for n in tokenprune.list_strategies()
              if tokenprune.strategy_class(n).stage == "llm"]
    return max([3] + [k + 1 for k in layers])


#: adapter -> (builder, samples(n, seed) for it)
QWEN_SIZES = [(56, 56), (84, 56), (56, 70)]  # different image sizes: samples of one batch differ in N
NEXT_SIZES = [(56, 40), (30, 60), (28, 28)]  # different aspect ratios: different crop grids


def _images_and_video(n, seed=0):
    """Image samples, and a 4-frame video as the third sample of a batch."""
    out = tm.samples(n, seed=seed, image_sizes=NEXT_SIZES)
    if n >= 3:
        out[2] = tm.samples(3, seed=seed, frames=4)[2]
    return out

#: adapter -> (tiny model builder taking the layer count, samples(n, seed) for it)
ADAPTERS = {
    "llava": (tm.llava, lambda n, seed=0: tm.samples(n, seed=seed)),
    "qwen2_vl": (tm.qwen2_vl, lambda n, seed=0: tm.samples(n, seed=seed, image_sizes=QWEN_SIZES)),
    "qwen2_5_vl": (tm.qwen2_5_vl, lambda n, seed=0: tm.samples(n, seed=seed, image_sizes=QWEN_SIZES)),
    "qwen3_vl": (tm.qwen3_vl, lambda n, seed=0: tm.samples(n, seed=seed, image_sizes=QWEN_SIZES)),
    "llava_next": (tm.llava_next, lambda n, seed=0: tm.samples(n, seed=seed, image_sizes=NEXT_SIZES)),
    "llava_onevision": (tm.llava_onevision, lambda n, seed=0: _images_and_video(n, seed)),
}

#: adapters that get every combination below; the others get the core ones (time on 2 CPU cores)
FULL = ("llava", "qwen2_vl")

_built: dict = {}


def get_case(name, deep=False):
    """(vlm, samples) with 4 decoder layers (K = 2 tests), or deep enough for every strategy's default K."""
    key = (name, deep)
    if key not in _built:
        build, make = ADAPTERS[name]
        _built[key] = (build(layers=_layers_needed() if deep else 4), make)
    return _built[key]


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def case(request):
    return get_case(request.param)


def combos(core: list, extra: list) -> list:
    """(adapter, *combo) for the core combos on every adapter and the extra ones on FULL adapters."""
    return ([(a, *c) for a in sorted(ADAPTERS) for c in core] +
            [(a, *c) for a in sorted(ADAPTERS) if a in FULL for c in extra])


# ---------------------------------------------------------------------------------------- helpers
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


def replaying(strategy):
    """The same strategy, but every call after the first returns the first call's Selection."""
    base = type(strategy)

    class Replay(base):
        name = base.name

        def select(self, keys, attn, coords, budget, ctx):
            if getattr(self, "_first", None) is None:
                self._first = strategy.select(keys, attn, coords, budget, ctx)
            return self._first

    return Replay(**strategy.cfg.as_dict())


def gen_kwargs():
    return dict(max_new_tokens=NEW_TOKENS, suppress_tokens=tm.special_ids())


def generate(vlm, inputs, **kw):
    return vlm.generate(inputs, **{**gen_kwargs(), **kw}).sequences[:, inputs["input_ids"].shape[1]:]


def forward_logits(vlm, inputs):
    with torch.inference_mode():
        vlm.prepare_generation()
        return vlm.model(**inputs).logits


def slow_reference(vlm, inputs, strategy, budget, steps=NEW_TOKENS, **apply_kw):
    """Greedy tokens from full recomputation at every step, pruning the same tokens (no KV cache)."""
    ids = inputs["input_ids"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    out = []
    with tokenprune.apply(vlm, replaying(strategy), budget, **apply_kw), torch.inference_mode():
        for _ in range(steps):
            kw = dict(extra)
            if "mm_token_type_ids" in inputs:
                pad = ids.shape[1] - inputs["mm_token_type_ids"].shape[1]
                kw["mm_token_type_ids"] = torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, pad))
            vlm.prepare_generation()
            logits = vlm.model(input_ids=ids, use_cache=False, **kw).logits[:, -1].float()
            logits[:, tm.special_ids()] = float("-inf")
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
    from tokenprune.engine.probe import PROBE_IMPL
    assert before == 0 and hook_count(vlm.model) == 0
    assert not hasattr(vlm.model, "_tokenprune_handle")
    assert all(getattr(getattr(m, "config", None), "_attn_implementation", None) != PROBE_IMPL
               for m in vlm.model.modules())


# ---------------------------------------------------------------------------------------- (a) identity
@pytest.mark.parametrize("strategy", ["uniform", "test_keep_top"])
def test_identity_budget_all_tokens(case, strategy):
    vlm, make = case
    inputs = vlm.build_inputs(make(2))
    base_logits, base_tokens = forward_logits(vlm, inputs), generate(vlm, inputs, max_new_tokens=4)
    n = n_visual(vlm, inputs)
    before = hook_count(vlm.model)
    s = KeepTop() if strategy == "test_keep_top" else strategy
    with tokenprune.apply(vlm, s, budget=n) as handle:
        logits, tokens = forward_logits(vlm, inputs), generate(vlm, inputs, max_new_tokens=4)
    assert torch.equal(logits, base_logits)
    assert torch.equal(tokens, base_tokens)
    assert all(r["count"] == r["n_visual"] and r["kept"] == list(range(r["n_visual"])) for r in handle.records)
    assert_unpatched(vlm, before)


def test_pruning_changes_the_output(case):
    vlm, make = case
    inputs = vlm.build_inputs(make(1))
    base = forward_logits(vlm, inputs)
    with tokenprune.apply(vlm, KeepTop(), budget=max(1, n_visual(vlm, inputs) // 4)):
        pruned = forward_logits(vlm, inputs)
    assert not torch.allclose(pruned[:, -1], base[:, -1])


# ---------------------------------------------------------------------------------------- (b) cache equivalence
@pytest.mark.parametrize("adapter,strategy,positions", combos(
    core=[("test_merge", "original"), ("random", "reindex")],
    extra=[("test_keep_top", "original"), ("random", "original"), ("test_keep_top", "reindex")]))
def test_cache_equals_slow_reference(adapter, strategy, positions):
    vlm, make = get_case(adapter)
    inputs = vlm.build_inputs(make(1, seed=3))
    budget = max(1, n_visual(vlm, inputs) // 3)
    s = {"test_keep_top": KeepTop, "test_merge": Merge}.get(strategy, lambda: tokenprune.get_strategy(strategy))()
    with tokenprune.apply(vlm, s, budget, positions=positions) as handle:
        cached = generate(vlm, inputs)
    assert len(handle.records) == 1 and handle.records[0]["count"] == budget
    reference = slow_reference(vlm, inputs, s, budget, positions=positions)
    assert torch.equal(cached, reference)


# ---------------------------------------------------------------------------------------- (c) batch equivalence
@pytest.mark.parametrize("adapter,strategy", combos(core=[("test_merge",), ("random",)],
                                                    extra=[("test_keep_top",), ("uniform",)]))
def test_batch_equals_single_runs(adapter, strategy):
    vlm, make = get_case(adapter)
    samples = make(3, seed=5)
    s = {"test_keep_top": KeepTop, "test_merge": Merge}.get(strategy, lambda: tokenprune.get_strategy(strategy))()
    batch = vlm.build_inputs(samples)
    assert batch["attention_mask"].sum(dim=1).unique().numel() == 3, "prompts must differ in length"
    budget = max(1, n_visual(vlm, batch, min) // 3)
    with tokenprune.apply(vlm, s, budget) as handle:
        together = generate(vlm, batch, max_new_tokens=6)
        kept_batch = [r["kept"] for r in handle.records]
        handle.clear()
        singles = [generate(vlm, vlm.build_inputs([x]), max_new_tokens=6) for x in samples]
        kept_single = [r["kept"] for r in handle.records]
    assert kept_batch == kept_single
    for i, single in enumerate(singles):
        assert torch.equal(together[i, :single.shape[1]], single[0]), f"sample {i}"


# ---------------------------------------------------------------------------------------- (d) every strategy
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@pytest.mark.parametrize("name", tokenprune.list_strategies())
def test_every_registered_strategy_runs(adapter, name):
    strategy = tokenprune.get_strategy(name)
    vlm, make = get_case(adapter, deep=(strategy.prune_layer or 0) >= 4)
    inputs = vlm.build_inputs(make(2, seed=7))
    budget = max(1, n_visual(vlm, inputs, min) // 4)
    before = hook_count(vlm.model)
    try:
        with tokenprune.apply(vlm, strategy, budget) as handle:
            tokens = generate(vlm, inputs, max_new_tokens=2)
    except PruneError as exc:
        # a strategy may refuse a token layout it cannot handle (anyres grids are not full T x H x W boxes),
        # but only with an error naming itself and the model, leaving the model unpatched
        visuals = vlm.visuals(inputs["input_ids"], dict(inputs))
        assert any(v.n != v.grid[0] * v.grid[1] * v.grid[2] for v in visuals), str(exc)
        assert repr(name) in str(exc) and vlm.name in str(exc)
        assert_unpatched(vlm, before)
        return
    assert tokens.shape == (2, 2)
    assert [r["sample"] for r in handle.records] == [0, 1]
    for r in handle.records:
        assert r["n_visual"] == vlm.count_visual(inputs["input_ids"][r["sample"]])
        assert r["count"] == len(r["kept"]) >= 1
        if strategy.exact_budget:
            assert r["count"] == budget
        assert r["select_s"] >= 0 and r["grid"] is not None
    assert_unpatched(vlm, before)


# ---------------------------------------------------------------------------------------- (e) failures
class Raises(KeepTop):
    name = "test_raises"

    def select(self, keys, attn, coords, budget, ctx):
        raise ValueError("boom")


class Garbage(KeepTop):
    name = "test_garbage"

    def select(self, keys, attn, coords, budget, ctx):
        return Selection(keep=torch.zeros(keys.shape[0], budget + 1, dtype=torch.long))


@pytest.mark.parametrize("bad", [Raises, Garbage])
def test_failing_strategy_is_named_and_model_unpatched(case, bad):
    vlm, make = case
    inputs = vlm.build_inputs(make(1))
    base = forward_logits(vlm, inputs)
    before = hook_count(vlm.model)
    handle = tokenprune.apply(vlm, bad(), budget=4)
    with pytest.raises(PruneError) as err:
        forward_logits(vlm, inputs)
    message = str(err.value)
    assert bad.name in message and vlm.name in message
    assert not handle.active
    assert_unpatched(vlm, before)
    assert torch.equal(forward_logits(vlm, inputs), base)
    handle.remove()  # idempotent


def test_text_only_prompt_passes_through(case):
    vlm, _ = case
    from tokenprune.benchmarks.base import Sample
    inputs = vlm.build_inputs([Sample(id="t", prompt="what is a cat ?", references=None)])
    base = generate(vlm, inputs)
    with tokenprune.apply(vlm, "random", budget=2) as handle:
        assert torch.equal(generate(vlm, inputs), base)
    assert handle.records[0]["n_visual"] == 0
