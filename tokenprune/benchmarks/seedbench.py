"""SEED-Bench: four-option questions on images and on video frames; the
prediction is the first character of the output. Papers report SEED-Image
(``data_type: image``, the default)."""
from __future__ import annotations

from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import OPTION_LETTER, lettered
from ..params import Param
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns, percent
from .scoring.choice import seed_correct, seed_letter

# question_type_id -> dimension, from the SEED-Bench release (1-9 image, 10-12 video).
DIMENSIONS = {
    1: "Scene Understanding", 2: "Instance Identity", 3: "Instance Attributes", 4: "Instance Location",
    5: "Instances Counting", 6: "Spatial Relation", 7: "Instance Interaction", 8: "Visual Reasoning",
    9: "Text Understanding", 10: "Action Recognition", 11: "Action Prediction", 12: "Procedure Understanding",
}


class SEEDBench(DatasetBenchmark):
    name = "seedbench"
    max_new_tokens = 1024
    stop = ("ASSISTANT:",)
    hub_id, hub_config, hub_split = "lmms-lab-encoder/SEED-Bench", None, "test"
    id_field = "question_id"
    params = {
        **dataset_params(hub_id, hub_config, hub_split),
        "data_type": Param("image", "which questions: image (SEED-Image), video, or all",
                           str, choices=("image", "video", "all")),
    }

    def selected_rows(self):
        from ._sampling import subset_indices

        table = self.table()
        wanted = self.cfg.data_type
        rows = [i for i, kind in enumerate(self.column(table, "data_type")) if wanted in ("all", kind)]
        picks = subset_indices(len(rows), self.cfg.limit, self.cfg.seed)
        return [rows[i] for i in picks]

    def build_sample(self, row, check):
        kind = check.choice("data_type", ("image", "video"))
        choices = [check.text(f"choice_{c}") for c in "abcd"]
        visuals = check.get("image", (list, tuple))
        if not visuals or not all(hasattr(v, "convert") for v in visuals):
            check.fail("image", "should be a non-empty list of images")
        visuals = [v.convert("RGB") for v in visuals]
        type_id = check.get("question_type_id", (int, str), optional=True)
        return Sample(
            id=self.sample_id(check),
            prompt=f"{check.text('question')}\n{lettered(choices)}{OPTION_LETTER}",
            references=check.choice("answer", tuple("ABCD")),
            # lmms-eval passes video frames as a list of images; here they are frames.
            images=visuals if kind == "image" else [],
            frames=visuals if kind == "video" else None,
            meta={"data_type": kind,
                  "dimension": DIMENSIONS.get(int(type_id)) if str(type_id).isdigit() else None},
        )

    def max_images(self):
        return 1 if self.cfg.data_type == "image" else None  # video questions come as frames

    def score(self, sample, prediction):
        text = self.clean(prediction)
        return {"pred": seed_letter(text), "correct": float(seed_correct(text, sample.references))}

    def aggregate(self, records):
        out = accuracy_with_breakdowns(records, "dimension")
        for kind in ("image", "video"):
            values = [r["score"]["correct"] for r in records if r["meta"]["data_type"] == kind]
            if values:
                out[f"seed_{kind}"] = percent(values)
        out["seed_all"] = out["accuracy"]
        return out
