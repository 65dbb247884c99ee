"""``shapes``: a synthetic VQA benchmark that runs offline and is sensitive to pruning.

Each question is about one rendered scene (see shapes_scene.py) and has a
one-word answer. Six question types probe what pruning can lose: ``exist``
(POPE-like yes/no), ``color`` and ``shape`` of the item in a named cell,
``count``, ``ocr`` (a small digit in a named cell) and ``relation``
(left of / right of / above / below, yes/no). The held-out split is drawn from
its own seed, so it never shares a scene with training, and is balanced by
type and, within a type, by answer.
"""
from __future__ import annotations

import random
import re
from typing import Iterator

from ..params import Param
from .base import Benchmark, Sample
from .scoring.aggregate import accuracy_with_breakdowns
from .shapes_render import render
from .shapes_scene import ANSWERS, TYPES, QA, Scene, scene_with_question

SPLIT_SEED = "tokenprune/shapes/eval/v1"  # a string seed: its stream never meets the integer-seeded training one
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))}


def eval_split(size: int, split_seed: str = SPLIT_SEED) -> list[tuple[Scene, QA]]:
    """The held-out questions: types in rotation, and each type's answers in rotation."""
    rng = random.Random(split_seed)
    items = []
    for i in range(size):
        qtype = TYPES[i % len(TYPES)]
        answers = ANSWERS[qtype]
        items.append(scene_with_question(rng, qtype, answers[(i // len(TYPES)) % len(answers)]))
    return items


def normalize(prediction: str) -> str:
    """The first word, lower-cased, without punctuation; number words become digits."""
    words = re.findall(r"[a-z0-9]+", prediction.lower())
    if not words:
        return ""
    return NUMBER_WORDS.get(words[0], words[0])


def chance(qtype: str) -> float:
    """Accuracy of uniform guessing within the type's answer set (answers are balanced)."""
    return 1.0 / len(ANSWERS[qtype])


class Shapes(Benchmark):
    """Synthetic scenes of coloured shapes and small digits; one-word answers, scored by exact match."""

    name = "shapes"
    params = {
        "size": Param(600, "questions in the held-out split (types in rotation)", int, min=len(TYPES)),
        "image_size": Param(96, "side of the rendered images in pixels; match the model (96 = 12x12 patches of 8)",
                            int, min=24),
    }
    protocols = ("exact",)
    main_metric = "accuracy"
    max_new_tokens = 4

    def samples(self) -> Iterator[Sample]:
        split = eval_split(self.cfg.size)
        for i in self._subset(split):
            scene, qa = split[i]
            yield Sample(
                id=f"shapes-{i:04d}",
                prompt=qa.question,
                references=qa.answer,
                images=[render(scene, self.cfg.image_size)],
                meta={"type": qa.type},
            )

    def _subset(self, split) -> list[int]:
        """All indices, or ``limit`` of them drawn per type in turn (seeded), so a subset stays balanced."""
        if self.cfg.limit is None or self.cfg.limit >= len(split):
            return list(range(len(split)))
        rng = random.Random(self.cfg.seed)
        pools = {t: [i for i, (_, qa) in enumerate(split) if qa.type == t] for t in TYPES}
        for pool in pools.values():
            rng.shuffle(pool)
        chosen = []
        while len(chosen) < self.cfg.limit:
            for t in TYPES:
                if pools[t] and len(chosen) < self.cfg.limit:
                    chosen.append(pools[t].pop())
        return sorted(chosen)

    def score(self, sample: Sample, prediction: str) -> dict:
        return {"correct": float(normalize(prediction) == sample.references)}

    def aggregate(self, records: list[dict]) -> dict[str, float]:
        # percentages and `type/<t>` breakdowns, as every other benchmark reports them
        if not records:
            return {"accuracy": float("nan"), "n": 0}
        return {**accuracy_with_breakdowns(records, "type"), "n": len(records)}

    def max_images(self) -> int:
        return 1

    def source(self) -> dict:
        return {"dataset": "tokenprune.benchmarks.shapes (synthetic, rendered offline)", "split": "eval",
                "split_seed": SPLIT_SEED, "size": self.cfg.size, "image_size": self.cfg.image_size}
