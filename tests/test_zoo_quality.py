"""The committed tiny LLaVA meets its quality bar (docs/zoo.md, "Numbers"), through the real path:
``tokenprune.models.load("llava", ...)``, ``tokenprune.apply`` and greedy ``generate``.

Unpruned it must answer the held-out ``shapes`` split well on every question
type; keeping 1/9 of the visual tokens at random must cost clearly more than
keeping them all, or the benchmark could not tell pruning methods apart.
It runs the whole held-out split (600 questions, 100 per type) three times,
about 30 s on one CPU thread; ``-s`` prints the numbers docs/zoo.md quotes.
"""
import json

import pytest

import tokenprune
from tokenprune import zoo
from tokenprune.benchmarks.shapes import Shapes, chance
from tokenprune.benchmarks.shapes_scene import TYPES
from tokenprune.models import load

pytestmark = pytest.mark.slow


def evaluate(vlm, bench, strategy: str, budget: int, batch: int = 50) -> dict:
    samples = list(bench.samples())
    predictions = []
    with tokenprune.apply(vlm, strategy, budget=budget, seed=0):
        for i in range(0, len(samples), batch):
            inputs = vlm.build_inputs(samples[i:i + batch])
            predictions += vlm.generate(inputs, max_new_tokens=bench.max_new_tokens).texts
    records = [{"id": s.id, "prediction": p, "score": bench.score(s, p), "meta": s.meta}
               for s, p in zip(samples, predictions)]
    return bench.aggregate(records)


@pytest.fixture(scope="module")
def results():
    vlm = load("llava", str(zoo.checkpoint_path(zoo.DEFAULT)))
    side = vlm.model.config.vision_config.image_size // vlm.model.config.vision_config.patch_size
    bench = Shapes(image_size=vlm.model.config.vision_config.image_size)  # the whole held-out split
    n = side * side
    out = {"vanilla": evaluate(vlm, bench, "vanilla", n)}
    for strategy in ("random", "uniform"):
        out[strategy] = evaluate(vlm, bench, strategy, round(n / 9))
    print(json.dumps(out, indent=1))  # shown with -s: the numbers docs/zoo.md quotes
    return out


def test_unpruned_model_answers_every_question_type_well(results):
    vanilla = results["vanilla"]
    assert vanilla["n"] >= 500
    assert vanilla["accuracy"] >= 85.0
    for t in TYPES:
        # "a wide margin": at least halfway from guessing to perfect
        assert vanilla[f"type/{t}"] >= 100 * (chance(t) + 0.5 * (1 - chance(t))), (t, vanilla)


def test_keeping_a_ninth_of_the_tokens_at_random_costs_clearly_more_than_keeping_all(results):
    assert results["random"]["accuracy"] <= results["vanilla"]["accuracy"] - 10.0, results
