"""OCRBench: 1000 OCR questions in 10 types; a hit when a ground-truth string
is contained in the output. Papers print hits out of 1000: ``score`` is the
hits per 1000 questions (the hit count on the full set), ``hits`` the raw count."""
from __future__ import annotations

from collections import Counter

from ._dataset import DatasetBenchmark, dataset_params
from .base import Sample
from .scoring.ocr import ocrbench_hit

TYPES = (
    "Regular Text Recognition", "Irregular Text Recognition", "Artistic Text Recognition",
    "Handwriting Recognition", "Digit String Recognition", "Non-Semantic Text Recognition",
    "Scene Text-centric VQA", "Doc-oriented VQA", "Key Information Extraction",
    "Handwritten Mathematical Expression Recognition",
)
RECOGNITION = TYPES[:6]


class OCRBench(DatasetBenchmark):
    name = "ocrbench"
    main_metric = "score"
    max_new_tokens = 128
    hub_id, hub_config, hub_split = "echo840/OCRBench", None, "test"
    params = dataset_params(hub_id, hub_config, hub_split)

    def build_sample(self, row, check):
        answer = check.get("answer", (str, list))
        answers = [answer] if isinstance(answer, str) else check.texts("answer")
        return Sample(
            id=self.sample_id(check),
            prompt=check.text("question").strip(),
            references=answers,
            images=[check.image()],
            meta={"dataset": check.text("dataset"), "question_type": check.text("question_type")},
        )

    def score(self, sample, prediction):
        return {"hit": int(ocrbench_hit(prediction, sample.references, sample.meta["dataset"]))}

    def aggregate(self, records):
        # Pure: counts are rebuilt from the records on every call (lmms-eval's
        # module-level counter double-counts across calls).
        hits = Counter()
        for record in records:
            hits[record["meta"]["question_type"]] += record["score"]["hit"]
        total = sum(hits.values())
        out = {
            "score": 1000.0 * total / len(records) if records else 0.0,
            "hits": float(total),
            "accuracy": 100.0 * total / len(records) if records else 0.0,
            "hits/Text Recognition": float(sum(hits[t] for t in RECOGNITION)),
        }
        out.update({f"hits/{t}": float(n) for t, n in sorted(hits.items())})
        return out
