"""The pruning engine inside real transformers VLMs (tiny random-weight configs, built offline).

For every adapter: (a) identity at budget = N, (b) cached greedy generation equals a
slow reference that recomputes the whole sequence each step with the same tokens
removed, (c) a left-padded batch equals its samples run one by one, (d) every
registered strategy runs with its defaults, (e) a failing strategy leaves the
model unpatched with an error naming strategy and model, (f) the adapter finds every
visual token. The checks are tokenprune.testing.adapters', which third-party adapters run too.
"""
from __future__ import annotations

import pytest

import tokenprune
import tiny_models as tm
from tokenprune.testing import adapters as conformance
from tokenprune.testing.adapters import (Garbage, KeepTop, Merge, Raises, assert_unpatched,  # noqa: F401
                                         forward_logits, hook_count, make_strategy, n_visual, replaying)

NEW_TOKENS = conformance.NEW_TOKENS


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
        _built[key] = (build(layers=conformance.layers_needed() if deep else 4), make)
    return _built[key]


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def case(request):
    return get_case(request.param)


def combos(core: list, extra: list) -> list:
    """(adapter, *combo) for the core combos on every adapter and the extra ones on FULL adapters."""
    return ([(a, *c) for a in sorted(ADAPTERS) for c in core] +
            [(a, *c) for a in sorted(ADAPTERS) if a in FULL for c in extra])


# ---------------------------------------------------------------------------------------- helpers
def generate(vlm, inputs, **kw):
    return conformance.new_tokens(vlm, inputs, suppress=tm.special_ids(), **kw)


def slow_reference(vlm, inputs, strategy, budget, steps=NEW_TOKENS, **apply_kw):
    return conformance.slow_reference(vlm, inputs, strategy, budget, suppress=tm.special_ids(), steps=steps,
                                      **apply_kw)


# ---------------------------------------------------------------------------------------- (a) identity
@pytest.mark.parametrize("strategy", ["uniform", "test_keep_top"])
def test_identity_budget_all_tokens(case, strategy):
    vlm, make = case
    conformance.check_identity(vlm, vlm.build_inputs(make(2)), make_strategy(strategy), suppress=tm.special_ids())


def test_pruning_changes_the_output(case):
    vlm, make = case
    conformance.check_pruning_changes_the_output(vlm, vlm.build_inputs(make(1)))


# ---------------------------------------------------------------------------------------- (b) cache equivalence
@pytest.mark.parametrize("adapter,strategy,positions", combos(
    core=[("test_merge", "original"), ("random", "reindex")],
    extra=[("test_keep_top", "original"), ("random", "original"), ("test_keep_top", "reindex")]))
def test_cache_equals_slow_reference(adapter, strategy, positions):
    vlm, make = get_case(adapter)
    conformance.check_cached_generation(vlm, vlm.build_inputs(make(1, seed=3)), make_strategy(strategy),
                                        positions=positions, suppress=tm.special_ids())


# ---------------------------------------------------------------------------------------- (c) batch equivalence
@pytest.mark.parametrize("adapter,strategy", combos(core=[("test_merge",), ("random",)],
                                                    extra=[("test_keep_top",), ("uniform",)]))
def test_batch_equals_single_runs(adapter, strategy):
    vlm, make = get_case(adapter)
    conformance.check_batch_equals_single_calls(vlm, make(3, seed=5), make_strategy(strategy),
                                                suppress=tm.special_ids())


# ---------------------------------------------------------------------------------------- (d) every strategy
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
@pytest.mark.parametrize("name", tokenprune.list_strategies())
def test_every_registered_strategy_runs(adapter, name):
    strategy = tokenprune.get_strategy(name)
    vlm, make = get_case(adapter, deep=(strategy.prune_layer or 0) >= 4)
    conformance.check_strategy_runs(vlm, vlm.build_inputs(make(2, seed=7)), strategy, suppress=tm.special_ids())


# ---------------------------------------------------------------------------------------- (e) failures
@pytest.mark.parametrize("bad", [Raises, Garbage])
def test_failing_strategy_is_named_and_model_unpatched(case, bad):
    vlm, make = case
    conformance.check_failure_unpatches(vlm, vlm.build_inputs(make(1)), bad())


def test_text_only_prompt_passes_through(case):
    vlm, make = case
    conformance.check_text_only(vlm, make(1)[0], suppress=tm.special_ids())


def test_visuals_cover_the_visual_tokens(case):
    vlm, make = case
    conformance.check_visuals(vlm, vlm.build_inputs(make(3, seed=1)))
