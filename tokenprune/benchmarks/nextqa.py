"""NExT-QA multiple choice (test): five options per question on everyday
videos, read with lmms-eval's NExT-QA parser; accuracy per question type and
per causal / temporal / descriptive group."""
from __future__ import annotations

from ._dataset import VideoBenchmark, dataset_params, video_params
from ._prompts import lettered
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns, percent
from .scoring.choice import parse_mc_nextqa

LETTERS = "ABCDE"
GROUPS = {"C": "causal", "T": "temporal", "D": "descriptive"}


class NExTQA(VideoBenchmark):
    name = "nextqa"
    max_new_tokens = 1024
    hub_id, hub_config, hub_split = "lmms-eval/NExTQA", "MC", "test"
    cache_subdir = "nextqa/NExTVideo"
    params = {**dataset_params(hub_id, hub_config, hub_split), **video_params()}

    def build_sample(self, row, check):
        options = [check.text(f"a{i}").strip() for i in range(5)]
        answer = check.get("answer", int)
        if not 0 <= answer < 5:
            check.fail("answer", f"= {answer} should be an option index 0-4")
        video = str(check.get("video", (int, str)))
        qtype = check.text("type", optional=True)
        clip = self.frames(video)
        return Sample(
            id=f"{video}_{check.get('qid', (int, str))}",
            # lmms-eval's NExT-QA MC task has no instruction after the options.
            prompt=check.text("question").strip() + "\n" + lettered(options),
            references=LETTERS[answer],
            frames=clip.frames,
            meta={"options": dict(zip(LETTERS, options)), "type": qtype,
                  "group": GROUPS.get(qtype[:1]) if qtype else None, **clip.meta()},
        )

    def score(self, sample, prediction):
        letter, parsed = parse_mc_nextqa(prediction, sample.meta["options"], seed=f"{self.name}:{sample.id}")
        return {"pred": letter, "parsed": parsed, "correct": float(letter == sample.references)}

    def aggregate(self, records):
        out = accuracy_with_breakdowns(records, "group", "type")
        out["guessed"] = percent(0.0 if r["score"]["parsed"] else 1.0 for r in records)
        return out
