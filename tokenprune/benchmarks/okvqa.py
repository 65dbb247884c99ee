"""OK-VQA (val2014): questions that need outside knowledge; 10 answers each,
leave-one-out VQA accuracy after the EvalAI normaliser (lmms-eval)."""
from __future__ import annotations

from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import SHORT_ANSWER
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns
from .scoring.vqa import vqa_accuracy

UNANSWERABLE = "\nWhen the provided information is insufficient, respond with 'Unanswerable'."


class OKVQA(DatasetBenchmark):
    name = "okvqa"
    max_new_tokens = 1024
    stop = ("ASSISTANT:",)
    hub_id, hub_config, hub_split = "lmms-lab-encoder/OK-VQA", None, "val2014"
    id_field = "question_id"
    params = dataset_params(hub_id, hub_config, hub_split)

    def build_sample(self, row, check):
        return Sample(
            id=self.sample_id(check),
            prompt=check.text("question") + UNANSWERABLE + SHORT_ANSWER,
            references=check.texts("answers", min_len=0),
            images=[check.image()],
            meta={"question_type": check.text("question_type", optional=True),
                  "answer_type": check.text("answer_type", optional=True)},
        )

    def score(self, sample, prediction):
        return {"correct": vqa_accuracy(self.clean(prediction), sample.references)}

    def aggregate(self, records):
        return accuracy_with_breakdowns(records, "question_type", "answer_type")
