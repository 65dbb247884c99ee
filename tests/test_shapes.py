"""The synthetic ``shapes`` benchmark: fixed split, balanced types, answers true to the scene, scoring."""
import random
from collections import Counter

import numpy as np
import pytest

from tokenprune import registry
from tokenprune.benchmarks.shapes import Shapes, chance, eval_split, normalize
from tokenprune.benchmarks.shapes_render import FONT, render
from tokenprune.benchmarks.shapes_scene import (
    ANSWERS, COLORS, PLURALS, REGIONS, TYPES, sample_scene, scene_with_question,
)


def oracle(scene, question: str) -> str:
    """The answer to ``question`` recomputed from the scene, independently of the question makers."""
    words = question.rstrip(" ?").split()
    at = {it.region: it for it in scene.items}
    if words[:2] == ["is", "there"]:
        return "yes" if any(words[3] in (it.color, it.shape) for it in scene.items) else "no"
    if words[:2] == ["what", "color"] or words[:2] == ["what", "shape"] or words[:2] == ["what", "digit"]:
        item = at[words[-1]]
        return {"color": item.color, "shape": item.shape, "digit": item.digit}[words[1]]
    if words[:2] == ["how", "many"]:
        if words[2] in COLORS:
            return str(sum(it.color == words[2] for it in scene.items))
        shape = next(s for s, p in PLURALS.items() if p == words[2])
        return str(sum(it.shape == shape for it in scene.items))
    assert words[:2] == ["is", "the"]
    a, b = related(scene, words)
    second = len(words) - 1 - words[::-1].index("the")
    rel = " ".join(w for w in words[3:second] if w != "shape")
    holds = {"left of": a.col < b.col, "right of": a.col > b.col, "above": a.row < b.row, "below": a.row > b.row}
    return "yes" if holds[rel] else "no"


def related(scene, words):
    """The two shapes a relation question names by their one attribute (``circle``, ``red shape``)."""
    second = len(words) - 1 - words[::-1].index("the")
    out = []
    for word in (words[2], words[second + 1]):
        (item,) = [it for it in scene.items if word in (it.color, it.shape)]  # the name singles it out
        out.append(item)
    return out


def evidence_cells(scene, qa) -> set[int]:
    """The cells an answer rests on: the named cell, the two related items, or every matching item."""
    words = qa.question.rstrip(" ?").split()
    if qa.type in ("color", "shape", "ocr"):
        return {REGIONS.index(words[-1])}
    if qa.type == "relation":
        return {it.cell for it in related(scene, words)}
    if qa.type == "exist":
        return {it.cell for it in scene.items if words[3] in (it.color, it.shape)}
    return {it.cell for it in scene.items if words[2] in (it.color, PLURALS.get(it.shape))}


def test_registered_with_a_valid_contract():
    cls = registry.lookup("benchmarks", "shapes")
    assert cls is Shapes
    assert {"limit", "seed", "protocol", "size", "image_size"} <= set(cls.all_params())
    with pytest.raises(Exception, match="benchmark 'shapes'.*size"):
        Shapes(size=2)


def test_split_is_fixed_balanced_and_true_to_its_scenes():
    split = eval_split(600)
    assert eval_split(600)[:50] == split[:50]  # same seed, same scenes and questions
    per_type = Counter(qa.type for _, qa in split)
    assert per_type == {t: 100 for t in TYPES}
    for t in TYPES:
        answers = Counter(qa.answer for _, qa in split if qa.type == t)
        assert set(answers) == set(ANSWERS[t])
        assert max(answers.values()) - min(answers.values()) <= 1  # no answer prior to exploit
    for scene, qa in split:
        assert oracle(scene, qa.question) == qa.answer, qa
        assert set(qa.cells) == evidence_cells(scene, qa), qa
        cells = [it.cell for it in scene.items]
        assert len(cells) == len(set(cells)) and 3 <= len(cells) <= 7


def test_relation_questions_name_unique_objects_in_decisive_cells():
    for scene, qa in eval_split(600):
        if qa.type != "relation":
            continue
        words = qa.question.rstrip(" ?").split()
        a, b = related(scene, words)  # each name fits exactly one item
        assert a is not b and (a.cell, b.cell) == qa.cells
        assert (a.row != b.row) if ("above" in words or "below" in words) else (a.col != b.col)


def test_items_stay_inside_their_cell():
    rng = random.Random(3)
    for _ in range(300):
        for it in sample_scene(rng).items:
            assert it.col / 3 <= it.x - it.size / 2 and it.x + it.size / 2 <= (it.col + 1) / 3
            assert it.row / 3 <= it.y - it.size / 2 and it.y + it.size / 2 <= (it.row + 1) / 3


def test_samples_render_the_scene_deterministically():
    a = list(Shapes(limit=12).samples())
    b = list(Shapes(limit=12).samples())
    assert [s.id for s in a] == [s.id for s in b]
    assert all(np.array_equal(np.asarray(x.images[0]), np.asarray(y.images[0])) for x, y in zip(a, b))
    assert a[0].images[0].size == (96, 96) and a[0].images[0].mode == "RGB"
    big = next(Shapes(limit=1, image_size=192).samples())
    assert big.images[0].size == (192, 192)
    assert all(s.meta["type"] in TYPES and s.prompt.endswith("?") for s in a)


def test_limit_draws_a_balanced_seeded_subset():
    ids = lambda **kw: [s.id for s in Shapes(**kw).samples()]  # noqa: E731
    first = ids(limit=60)
    assert len(first) == 60 and first == sorted(first)
    assert first == ids(limit=60)
    assert first != ids(limit=60, seed=1)
    types = Counter(s.meta["type"] for s in Shapes(limit=60).samples())
    assert types == {t: 10 for t in TYPES}
    assert len(ids(limit=7)) == 7


def test_cells_and_digits_are_visible_in_the_pixels():
    scene, qa = scene_with_question(random.Random(5), "ocr")
    img = np.asarray(render(scene, 96)).astype(int)
    for it in scene.items:
        x, y = round(it.x * 96), round(it.y * 96)
        if it.digit is not None:
            patch = img[y - 7:y + 8, x - 5:x + 6].mean(-1)
            assert patch.max() > 200 and patch.min() < 60  # white tag, black ink
        else:
            assert img[y, x].std() > 25  # saturated colour, not the grey background
    assert len({tuple(v) for v in FONT.values()}) == 10


def test_scoring_normalises_one_word_answers():
    assert normalize(" Red.") == "red"
    assert normalize("two") == "2"
    assert normalize("Yes, there is") == "yes"
    assert normalize("") == ""
    bench = Shapes(limit=6)
    samples = list(bench.samples())
    records = []
    for i, s in enumerate(samples):
        pred = s.references if i % 2 == 0 else "banana"
        records.append({"id": s.id, "prediction": pred, "score": bench.score(s, pred), "meta": s.meta})
    metrics = bench.aggregate(records)
    assert metrics["accuracy"] == pytest.approx(50.0) and metrics["n"] == 6
    assert {f"type/{t}" for t in TYPES} <= set(metrics)
    assert all(metrics[f"type/{s.meta['type']}"] == (100.0 if i % 2 == 0 else 0.0) for i, s in enumerate(samples))
    assert bench.main_metric in metrics
    assert chance("ocr") == pytest.approx(0.1) and chance("exist") == 0.5

