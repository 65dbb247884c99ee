"""EgoSchema (the 500-question subset with public answers): five-option
questions on 3-minute egocentric videos, read with lmms-eval's EgoSchema parser."""
from __future__ import annotations

from ._dataset import VideoBenchmark, dataset_params, video_params
from ._prompts import OPTION_LETTER
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns, percent
from .scoring.choice import parse_mc_egoschema

LETTERS = "ABCDE"


class EgoSchema(VideoBenchmark):
    name = "egoschema"
    max_new_tokens = 16
    hub_id, hub_config, hub_split = "lmms-eval/egoschema", "Subset", "test"
    id_field = "video_idx"
    cache_subdir = "egoschema/videos"
    params = {**dataset_params(hub_id, hub_config, hub_split), **video_params()}

    def build_sample(self, row, check):
        options = check.texts("option", min_len=5)[:5]
        answer = check.get("answer", (int, str))
        if str(answer).strip() not in {str(i) for i in range(5)}:
            check.fail("answer", f"= {answer!r} should be an option index 0-4 (the 'Subset' config has answers)")
        video = self.sample_id(check)
        clip = self.frames(video)
        return Sample(
            id=video,
            # Options already carry their letters ("A. ...").
            prompt=check.text("question") + "".join("\n" + o for o in options) + OPTION_LETTER,
            references=LETTERS[int(str(answer).strip())],
            frames=clip.frames,
            meta={"options": {c: o.strip() for c, o in zip(LETTERS, options)}, **clip.meta()},
        )

    def score(self, sample, prediction):
        letter, parsed = parse_mc_egoschema(prediction, sample.meta["options"], seed=f"{self.name}:{sample.id}")
        return {"pred": letter, "parsed": parsed, "correct": float(letter == sample.references)}

    def aggregate(self, records):
        out = accuracy_with_breakdowns(records)
        out["guessed"] = percent(0.0 if r["score"]["parsed"] else 1.0 for r in records)
        return out
