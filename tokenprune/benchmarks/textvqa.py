"""TextVQA (validation): questions about text in images, 10 human answers each.

Scored with leave-one-out VQA accuracy after the EvalAI normaliser under both
protocols. The prompts differ: lmms-eval capitalises the question and by
default gives no OCR tokens; LLaVA-1.5's prompt file adds "Reference OCR token: ...".
"""
from __future__ import annotations

from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import SHORT_ANSWER
from ..params import Param
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns
from .scoring.vqa import vqa_accuracy


class TextVQA(DatasetBenchmark):
    name = "textvqa"
    protocols = ("lmms-eval", "llava")
    max_new_tokens = 1024
    max_new_tokens_by_protocol = {"llava": 128}
    stop = ("ASSISTANT:",)
    hub_id, hub_config, hub_split = "lmms-lab-encoder/textvqa", None, "validation"
    id_field = "question_id"
    params = {
        **dataset_params(hub_id, hub_config, hub_split),
        "ocr": Param(None, "add 'Reference OCR token: ...' to the prompt; default: per protocol "
                           "(lmms-eval no, llava yes)", bool, nullable=True),
    }

    def use_ocr(self) -> bool:
        return self.cfg.ocr if self.cfg.ocr is not None else self.cfg.protocol == "llava"

    def build_sample(self, row, check):
        question = check.text("question")
        if self.cfg.protocol == "lmms-eval":
            question = question.capitalize()  # str.capitalize also lower-cases the rest, as lmms-eval does
        ocr = ""
        if self.use_ocr():
            ocr = "\nReference OCR token: " + ", ".join(check.texts("ocr_tokens", min_len=0))
        return Sample(
            id=self.sample_id(check),
            prompt=question + ocr + SHORT_ANSWER,
            references=check.texts("answers"),
            images=[check.image()],
        )

    def score(self, sample, prediction):
        return {"correct": vqa_accuracy(self.clean(prediction), sample.references)}

    def aggregate(self, records):
        return accuracy_with_breakdowns(records)

    def source(self):
        return {**super().source(), "ocr_tokens": self.use_ocr()}
