"""POPE: object-hallucination yes/no questions (adversarial, popular, random).

lmms-eval pools the three categories and needs an exact "yes"/"no"; the
LLaVA-1.5 script parses the first sentence for a negation and reports the F1
averaged over the categories. Both give accuracy, precision, recall and F1 in %.
"""
from __future__ import annotations

from collections import defaultdict

from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import SHORT_ANSWER
from .base import Sample
from .scoring.yesno import binary_metrics, confusion, pope_label_llava, pope_label_lmms

CATEGORIES = ("adversarial", "popular", "random")


class POPE(DatasetBenchmark):
    name = "pope"
    protocols = ("lmms-eval", "llava")
    main_metric = "f1"
    max_new_tokens = 128
    hub_id, hub_config, hub_split = "lmms-lab-encoder/POPE", None, "test"
    id_field = "question_id"
    params = dataset_params(hub_id, hub_config, hub_split)

    def build_sample(self, row, check):
        answer = check.choice("answer", ("yes", "no"), transform=lambda v: str(v).lower().strip())
        return Sample(
            id=self.sample_id(check),
            prompt=check.text("question").strip() + SHORT_ANSWER,
            references=answer,
            images=[check.image()],
            meta={"category": check.text("category", optional=True)},
        )

    def score(self, sample, prediction):
        parse = pope_label_llava if self.cfg.protocol == "llava" else pope_label_lmms
        label = parse(prediction)
        return {"pred": label, "gt": sample.references, "correct": float(label == sample.references)}

    def resample_counts(self, records):
        # F1 from true/false positive and false negative counts (per category for the llava protocol)
        out = {}
        for r in records:
            prefix = f"{r['meta'].get('category')}/" if self.cfg.protocol == "llava" else ""
            tp, fp, fn = confusion([(r["score"]["pred"], r["score"]["gt"])])
            for name, hit in (("n", 1), ("tp", tp), ("fp", fp), ("fn", fn)):
                out[prefix + name] = out.get(prefix + name, 0.0) + float(hit)
        return out

    def metric_from_counts(self, totals):
        import numpy as np

        prefixes = sorted({k[: -len("tp")] for k in totals if k.endswith("tp")})
        f1 = []
        for p in prefixes:
            tp, wrong = totals[p + "tp"], totals[p + "fp"] + totals[p + "fn"]
            with np.errstate(invalid="ignore", divide="ignore"):
                f1.append(np.where(2 * tp + wrong > 0, 200.0 * tp / (2 * tp + wrong), 0.0))
        present = [totals[p + "n"] > 0 for p in prefixes]  # a category no sample of a resample is in is skipped
        return sum(np.where(m, f, 0.0) for m, f in zip(present, f1)) / sum(m.astype(float) for m in present)

    def aggregate(self, records):
        if not records:
            return {"f1": 0.0, "accuracy": 0.0}
        pairs = [(r["score"]["pred"], r["score"]["gt"]) for r in records]
        by_category = defaultdict(list)
        for record, pair in zip(records, pairs):
            by_category[record["meta"].get("category")].append(pair)
        per_category = {c: binary_metrics(p) for c, p in sorted(by_category.items(), key=lambda kv: str(kv[0]))}
        out = {}
        if self.cfg.protocol == "llava":
            # eval_pope.py runs once per category; papers quote the mean over categories.
            for metric in ("accuracy", "precision", "recall", "f1"):
                out[metric] = 100.0 * sum(m[metric] for m in per_category.values()) / len(per_category)
            for category, group in by_category.items():
                out[f"yes_ratio/{category}"] = 100.0 * sum(p == "yes" for p, _ in group) / len(group)
        else:
            out.update({k: 100.0 * v for k, v in binary_metrics(pairs).items()})
            out["yes_ratio"] = 100.0 * sum(g == "yes" for _, g in pairs) / len(pairs)  # of the ground truth
        for category, metrics in per_category.items():
            for metric in ("accuracy", "f1"):
                out[f"{metric}/{category}"] = 100.0 * metrics[metric]
        return out
