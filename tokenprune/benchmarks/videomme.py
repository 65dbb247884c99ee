"""Video-MME (without subtitles): four-option questions on short, medium and
long videos, read with lmms-eval's regex MCQ extractor."""
from __future__ import annotations

from ._dataset import VideoBenchmark, dataset_params, video_params
from ._prompts import OPTION_LETTER
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns
from .scoring.choice import extract_mcq_answer

INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video "
               "and the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")


class VideoMME(VideoBenchmark):
    name = "videomme"
    max_new_tokens = 16
    # the repository's one configuration, named so that loading does not depend on it being the default
    hub_id, hub_config, hub_split = "lmms-eval/Video-MME", "videomme", "test"
    id_field = "question_id"
    cache_subdir = "videomme/data"
    params = {**dataset_params(hub_id, hub_config, hub_split), **video_params()}

    def build_sample(self, row, check):
        options = check.texts("options", min_len=4)
        clip = self.frames(check.text("videoID"))
        return Sample(
            id=self.sample_id(check),
            # Options carry their letters; lmms-eval's post-prompt starts with a
            # newline and is joined with another, hence the blank line.
            prompt=f"{INSTRUCTION}\n{check.text('question')}\n" + "\n".join(options) + "\n" + OPTION_LETTER,
            references=check.choice("answer", tuple("ABCD")),
            frames=clip.frames,
            meta={"duration": check.text("duration", optional=True), "domain": check.text("domain", optional=True),
                  "task_type": check.text("task_type", optional=True), **clip.meta()},
        )

    def score(self, sample, prediction):
        letter = extract_mcq_answer(prediction, list("ABCD"))
        return {"pred": letter, "correct": float(letter.lower() == sample.references.lower())}

    def aggregate(self, records):
        return accuracy_with_breakdowns(records, "duration", "domain", "task_type")
