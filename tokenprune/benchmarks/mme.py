"""MME: paired yes/no questions over 14 subtasks; the score of a subtask is
acc + acc+ (max 200), perception sums 10 subtasks (max 2000), cognition 4 (max 800).
The main metric is their sum, ``total`` (max 2800), as in the MME column of pruning
papers (VLM-Pruner's supplement gives Qwen2-VL-7B 2321 in Table 13, above the
perception maximum); perception and cognition are reported beside it.

lmms-eval and the LLaVA-1.5 script share prompts and scoring and differ only
in how an answer is read as yes/no (see scoring.yesno).
"""
from __future__ import annotations

from collections import defaultdict

from ._data import BenchmarkDataError
from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import SHORT_ANSWER
from .base import Sample
from .scoring.yesno import mme_category_score, mme_label_llava, mme_label_lmms

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene",
              "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
_ORIGINAL_SUFFIX = " Please answer yes or no."


class MME(DatasetBenchmark):
    name = "mme"
    protocols = ("lmms-eval", "llava")
    main_metric = "total"
    max_new_tokens = 16
    max_new_tokens_by_protocol = {"llava": 128}
    hub_id, hub_config, hub_split = "lmms-lab-encoder/MME", None, "test"
    params = dataset_params(hub_id, hub_config, hub_split)

    def group_key(self, table):
        # The two questions about one image are scored together (acc+), so a
        # subset keeps both.
        return list(zip(self.column(table, "category"), self.column(table, "question_id")))

    def build_sample(self, row, check):
        question_id = check.text("question_id")
        answer = check.choice("answer", ("yes", "no"), transform=lambda v: str(v).lower().strip().replace(".", ""))
        question = check.text("question").strip().replace(_ORIGINAL_SUFFIX, "")
        return Sample(
            id=f"{check.index}:{question_id}",  # question_id names the image, shared by its 2 questions
            prompt=question + SHORT_ANSWER,
            references=answer,
            images=[check.image()],
            meta={"category": check.text("category"), "question_id": question_id},
        )

    def score(self, sample, prediction):
        parse = mme_label_llava if self.cfg.protocol == "llava" else mme_label_lmms
        label = parse(prediction)
        return {"pred": label, "correct": float(label == sample.references)}

    def resample_unit(self, record):
        return record["meta"]["category"], record["meta"]["question_id"]

    def resample_copy(self, record, copy):
        return {**record, "meta": {**record["meta"], "question_id": f"{record['meta']['question_id']}#{copy}"}}

    def resample_counts(self, records):
        # an image pair's acc + acc+ in its category; the totals sum the per-category means
        category = records[0]["meta"]["category"]
        return {f"{category}/pairs": 1.0, f"{category}/score": mme_category_score(
            {0: [r["score"]["correct"] for r in records]})}

    def metric_from_counts(self, totals):
        import numpy as np

        # the main metric, total: every category
        cats = [k[: -len("/pairs")] for k in totals if k.endswith("/pairs")]
        with np.errstate(invalid="ignore", divide="ignore"):
            return sum(np.where(totals[f"{c}/pairs"] > 0, totals[f"{c}/score"] / totals[f"{c}/pairs"], 0.0)
                       for c in cats) + np.zeros_like(next(iter(totals.values())))

    def aggregate(self, records):
        images = defaultdict(lambda: defaultdict(list))
        for record in records:
            meta = record["meta"]
            images[meta["category"]][meta["question_id"]].append(record["score"]["correct"])
        out = {"perception": 0.0, "cognition": 0.0}
        for category, pairs in sorted(images.items()):
            for question_id, scores in pairs.items():
                if len(scores) != 2:
                    raise BenchmarkDataError(
                        f"benchmark 'mme': image {question_id!r} of category {category!r} has "
                        f"{len(scores)} scored question(s); MME scores pairs, so both must be present"
                    )
            score = mme_category_score(pairs)
            out[f"category/{category}"] = score
            # lmms-eval files every subtask that is not perception under cognition.
            out["perception" if category in PERCEPTION else "cognition"] += score
        out["total"] = out["perception"] + out["cognition"]
        return out
