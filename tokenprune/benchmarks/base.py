"""The benchmark contract: samples in, per-sample scores and aggregate metrics out.

A benchmark class declares ``name``, ``params`` (options from the YAML grid,
each a tokenprune.Param), ``protocols``, ``main_metric`` and its generation length
(``max_new_tokens``, per protocol where they differ), and implements
``samples()`` (deterministic order, honouring ``limit``/``seed``), ``score()``
(pure, per sample, JSON-able) and ``aggregate()`` (pure, over per-sample records).
``resample_unit()``/``resample_copy()`` tell the report's bootstrap what to draw together,
``resample_counts()``/``metric_from_counts()`` make it fast, ``max_images()`` serves the pre-flight
budget check. What each must return: docs/benchmarks.md, "Write your own benchmark".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable, Iterator

from ..errors import PluginError
from ..params import Config, Param, resolve


@dataclass
class Sample:
    """One question. ``images`` are PIL images; ``frames`` are PIL images of a video (uniformly sampled)."""

    id: str
    prompt: str
    references: Any  # str, list of str (VQA answers), option letter, ...
    images: list = field(default_factory=list)
    frames: list | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # question type, category, split, options...


class Benchmark:
    """Base class of every benchmark."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    protocols: ClassVar[tuple[str, ...]] = ("lmms-eval",)
    main_metric: ClassVar[str] = "accuracy"
    max_new_tokens: ClassVar[int] = 16  # generation length of the default (first) protocol
    # protocols whose own generation length differs from ``max_new_tokens``
    max_new_tokens_by_protocol: ClassVar[dict[str, int]] = {}

    @classmethod
    def all_params(cls) -> dict[str, Param]:
        common = {
            "limit": Param(None, "evaluate only this many samples (seeded subset, groups kept whole)", int, min=1),
            "seed": Param(0, "seed of the subset drawn by limit", int),
            "protocol": Param(cls.protocols[0], "scoring protocol", str, choices=tuple(cls.protocols)),
        }
        return {**common, **cls.params}

    def __init__(self, **options):
        if not self.name:
            raise PluginError(f"benchmark class {type(self).__qualname__} has no name")
        self.cfg = Config(resolve(self.all_params(), options, owner=f"benchmark {self.name!r}"))
        # the chosen protocol's generation length; a grid's ``generation.max_new_tokens`` overrides it
        self.max_new_tokens = self.max_new_tokens_by_protocol.get(self.cfg.protocol, type(self).max_new_tokens)

    def samples(self) -> Iterator[Sample]:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, sample: Sample, prediction: str) -> dict[str, Any]:  # pragma: no cover - abstract
        """Per-sample scores, e.g. {"correct": 1.0}; must be JSON-serialisable."""
        raise NotImplementedError

    def aggregate(self, records: list[dict]) -> dict[str, float]:  # pragma: no cover - abstract
        """Metrics from records {"id", "prediction", "score", "meta"}; includes ``main_metric``."""
        raise NotImplementedError

    def resample_unit(self, record: dict) -> Hashable:
        """The unit a bootstrap of the score draws: records with the same unit are drawn together.

        The sample by default; a benchmark whose metric is defined on groups of samples (MME's
        image pairs, MMBench's circular variants) returns the group.
        """
        return record["id"]

    def resample_copy(self, record: dict, copy: int) -> dict:
        """``record`` drawn a ``copy``-th extra time in one bootstrap resample, relabelled so that
        ``aggregate`` counts it as a unit of its own (by default: a suffixed id)."""
        return {**record, "id": f"{record['id']}#{copy}"}

    def resample_counts(self, records: list[dict]) -> dict[str, float] | None:
        """Optional, for a fast bootstrap of a main metric that is not a mean of its units (an F1, a sum of
        per-category scores): one unit's records as counts (e.g. {"tp": 1.0}). A resample sums its units'
        counts and :meth:`metric_from_counts` scores the sums; None (the default): the aggregate is called."""
        return None

    def metric_from_counts(self, totals: dict) -> Any:
        """The main metric from summed :meth:`resample_counts`, each a numpy array over resamples."""
        raise NotImplementedError

    def source(self) -> dict[str, Any]:
        """Provenance recorded with every result: dataset id or path, revision, split."""
        return {}

    def max_images(self) -> int | None:
        """The most images one sample shows when no sample holds video frames; None when samples may hold
        video or the count is unknown. The run's pre-flight checks absolute budgets against it."""
        return None
