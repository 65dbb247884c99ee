"""ScienceQA-IMG (test): science multiple choice with an image. Both protocols
use the same prompt and read the letter differently: lmms-eval accepts "b",
"B." or "B.Georgia" and not "The answer is B."; LLaVA-1.5's script the other
way round (scoring.choice.sqa_correct / sqa_llava_letter)."""
from __future__ import annotations

from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import OPTION_LETTER, lettered
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns
from .scoring.choice import sqa_correct, sqa_llava_letter


class ScienceQAImg(DatasetBenchmark):
    name = "scienceqa_img"
    protocols = ("lmms-eval", "llava")
    max_new_tokens = 16
    max_new_tokens_by_protocol = {"llava": 1024}
    hub_id, hub_config, hub_split = "lmms-lab-encoder/ScienceQA", "ScienceQA-IMG", "test"
    params = dataset_params(hub_id, hub_config, hub_split)

    def build_sample(self, row, check):
        choices = check.texts("choices", min_len=2)
        answer = check.get("answer", int)
        if not 0 <= answer < len(choices):
            check.fail("answer", f"= {answer} is not an index into its {len(choices)} choices")
        hint = check.text("hint", nullable=True)  # part of the prompt: the column must exist
        context = f"Context: {hint}\n" if hint else ""
        image = check.get("image", nullable=True)  # a text-only question has no image
        return Sample(
            id=self.sample_id(check),
            prompt=f"{context}{check.text('question')}\n{lettered(choices)}{OPTION_LETTER}",
            references=chr(ord("A") + answer),
            images=[check.image()] if image is not None else [],
            meta={"subject": check.text("subject", optional=True),
                  "grade": check.text("grade", optional=True)},
        )

    def score(self, sample, prediction):
        if self.cfg.protocol == "llava":
            letter = sqa_llava_letter(prediction)
            return {"pred": letter, "correct": float(letter == sample.references)}
        return {"correct": float(sqa_correct(prediction, sample.references))}

    def aggregate(self, records):
        return accuracy_with_breakdowns(records, "subject")
