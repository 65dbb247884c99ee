"""GQA (testdev-balanced): compositional questions with one-word answers.

Questions and images are two configurations of the hub dataset, joined on
``imageId``. lmms-eval scores exact match ignoring case and punctuation; the
LLaVA-1.5 script strips trailing periods and lower-cases the answer.
"""
from __future__ import annotations

from ._data import describe_source, load_table
from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import SHORT_ANSWER
from ..params import Param
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns
from .scoring.vqa import exact_match, gqa_llava_match


class GQA(DatasetBenchmark):
    name = "gqa"
    protocols = ("lmms-eval", "llava")
    max_new_tokens = 16
    max_new_tokens_by_protocol = {"llava": 128}
    hub_id, hub_config, hub_split = "lmms-lab-encoder/GQA", "testdev_balanced_instructions", "testdev"
    id_field = "id"
    params = {
        **dataset_params(hub_id, hub_config, hub_split),
        "images_dataset": Param(None, "where the images are (hub id or local copy); default: 'dataset'",
                                str, nullable=True),
        "images_config": Param("testdev_balanced_images", "configuration holding the images", str, nullable=True),
        "images_split": Param(None, "split of the images; default: 'split'", str, nullable=True),
    }

    def __init__(self, **options):
        super().__init__(**options)
        self._images = None
        self._image_rows = None

    def _images_where(self):
        cfg = self.cfg
        return (cfg.images_dataset or cfg.dataset, cfg.images_config, cfg.images_split or cfg.split, cfg.revision)

    def image_table(self):
        if self._images is None:
            self._images = load_table(self.name, *self._images_where())
            self.require_columns(self._images, "id", "image", where=f"the images table {self._images_where()[0]!r}")
            # Index the image ids only; images are decoded when a sample needs one.
            self._image_rows = {str(i): n for n, i in enumerate(self.column(self._images, "id"))}
        return self._images

    def build_sample(self, row, check):
        image_id = str(check.get("imageId"))
        images = self.image_table()
        if image_id not in self._image_rows:
            check.fail("imageId", f"= {image_id!r} has no row in the images table {self._images_where()[0]!r}")
        types = check.get("types", dict, optional=True) or {}
        return Sample(
            id=self.sample_id(check),
            prompt=check.text("question") + SHORT_ANSWER,
            references=check.text("answer"),
            images=[images[self._image_rows[image_id]]["image"].convert("RGB")],
            meta={"structural": types.get("structural"), "semantic": types.get("semantic")},
        )

    def score(self, sample, prediction):
        if self.cfg.protocol == "llava":
            return {"correct": float(gqa_llava_match(prediction, sample.references))}
        return {"correct": float(exact_match(prediction, sample.references))}

    def aggregate(self, records):
        return accuracy_with_breakdowns(records, "structural", "semantic")

    def source(self):
        source = super().source()
        source["images"] = describe_source(*self._images_where(), self.image_table())
        return source
