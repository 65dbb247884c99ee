"""Shared machinery of the benchmarks that read a ``datasets`` table: where the
data is (hub id or local copy), sub-sampling, row checking and provenance.

A subclass sets ``hub_id``/``hub_config``/``hub_split``, lists its options in
``params`` (starting from ``dataset_params(...)``) and implements
``build_sample(row, check)``; ``group_key`` keeps groups whole under ``limit``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Iterator

from ..params import Param
from ._data import BenchmarkDataError, RowChecker, describe_source, load_table
from ._sampling import subset_indices
from ._video import SampledFrames, find_video, load_frames
from .base import Benchmark, Sample


def dataset_params(hub_id: str, config: str | None, split: str) -> dict[str, Param]:
    """The options saying where the data is; defaults are the protocol's hub dataset."""
    return {
        "dataset": Param(hub_id, "hub dataset id, or a local folder/parquet/JSON file in the hub schema", str),
        "config": Param(config, "dataset configuration (subset) name", str, nullable=True),
        "split": Param(split, "dataset split", str),
        "revision": Param(None, "hub revision (commit, tag or branch) to pin", str, nullable=True),
    }


def video_params(frames: int = 32) -> dict[str, Param]:
    return {
        "video_dir": Param(None, "folder of the videos (<id>.mp4 ...) or frame folders (<id>/); "
                                 "default: lmms-eval's cache folder under $HF_HOME", str, nullable=True),
        "num_frames": Param(frames, "frames sampled uniformly from each video", int, min=1),
    }


class DatasetBenchmark(Benchmark):
    """A benchmark whose samples are the rows of one ``datasets`` table."""

    hub_id: ClassVar[str] = ""
    hub_config: ClassVar[str | None] = None
    hub_split: ClassVar[str] = "test"
    id_field: ClassVar[str | None] = None  # row field that names a sample; the row index otherwise
    stop: ClassVar[tuple[str, ...]] = ()  # lmms-eval ``until`` strings: output is cut at them

    def __init__(self, **options):
        super().__init__(**options)
        self._table = None

    # --- data ------------------------------------------------------------------
    def location(self) -> tuple[str, str | None, str | None, str | None]:
        """Where the table is: (dataset id or local path, config, split, revision)."""
        cfg = self.cfg
        return cfg.dataset, cfg.config, cfg.split, cfg.revision

    def table(self):
        if self._table is None:
            self._table = load_table(self.name, *self.location())
        return self._table

    def source(self) -> dict[str, Any]:
        source = describe_source(*self.location(), self.table())
        source["protocol"] = self.cfg.protocol
        return source

    def max_images(self) -> int | None:
        return 1  # one image per question (none for ScienceQA's text-only questions); video: VideoBenchmark

    def local_base(self) -> Path | None:
        """The folder relative image paths in a local copy start from."""
        path = Path(self.location()[0]).expanduser()
        return path.parent if path.is_file() else path if path.is_dir() else None

    def group_key(self, table) -> list | None:
        """One key per row when rows must stay together under ``limit``; None otherwise."""
        return None

    def selected_rows(self) -> list[int]:
        table = self.table()
        return subset_indices(len(table), self.cfg.limit, self.cfg.seed, self.group_key(table))

    def samples(self) -> Iterator[Sample]:
        table = self.table()
        for index in self.selected_rows():
            row = table[index]
            row_id = row.get(self.id_field) if self.id_field else None
            yield self.build_sample(row, RowChecker(self.name, row, index, row_id, self.local_base()))

    def build_sample(self, row: dict, check: RowChecker) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_id(self, check: RowChecker) -> str:
        if self.id_field:
            return str(check.get(self.id_field))
        return str(check.index)

    def require_columns(self, table, *names: str, where: str | None = None):
        """A clear error naming the first of ``names`` that ``table`` (by default the benchmark's) lacks."""
        dataset, _, split, _ = self.location()
        where = where or f"dataset {dataset!r}" + (f" split {split!r}" if split else "")
        for name in names:
            if name not in table.column_names:
                raise BenchmarkDataError(
                    f"benchmark {self.name!r}: {where} has no column {name!r} "
                    f"(its columns: {', '.join(sorted(table.column_names))})")

    def column(self, table, name: str) -> list:
        """One column as a list, with a clear error when the table lacks it."""
        self.require_columns(table, name)
        return list(table[name])

    # --- scoring helpers ---------------------------------------------------------
    def clean(self, prediction: str) -> str:
        from .scoring.vqa import truncate_at

        return truncate_at(prediction, self.stop)


class VideoBenchmark(DatasetBenchmark):
    """A dataset benchmark whose rows name a video; frames are sampled uniformly."""

    cache_subdir: ClassVar[str] = ""  # where lmms-eval keeps the videos, under $HF_HOME

    def video_dir(self) -> Path:
        if self.cfg.video_dir:
            return Path(self.cfg.video_dir).expanduser()
        home = os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface"))
        return Path(home) / self.cache_subdir

    def frames(self, stem: str) -> SampledFrames:
        """The video's sampled frames; ``.meta()`` gives the Sample.meta entries saying where they came from."""
        path = find_video(self.name, self.video_dir(), stem)
        return load_frames(self.name, path, self.cfg.num_frames)

    def source(self) -> dict[str, Any]:
        source = super().source()
        source["video_dir"] = str(self.video_dir())
        source["num_frames"] = self.cfg.num_frames
        source["frame_sampling"] = "uniform"
        return source

    def max_images(self) -> int | None:
        return None  # frames, not images
