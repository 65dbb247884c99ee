"""The executor contract: run groups of cells (one model each) into a run store (docs/executors.md)."""
from __future__ import annotations

from typing import ClassVar

from ..params import Param, resolve


class Executor:
    """Runs cell groups; every executor must leave the store exactly as `local` would."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    @classmethod
    def check_options(cls, options: dict) -> dict:
        return resolve(cls.params, options, owner=f"executor {cls.name!r}")

    def __init__(self, **options):
        self.options = self.check_options(options)

    def run(self, groups, store, *, warmup: int, progress) -> dict[str, str]:  # pragma: no cover - abstract
        """groups: list of (ModelSpec, [CellSpec]), the cells by model in grid order; store: the run's RunStore;
        warmup: latency.warmup; progress: told of each cell as it ends (``progress.cell_done(cell, status)``).

        Returns {cell id: 'done' | 'skipped' | 'failed'} for every cell. tokenprune.testing.executors
        checks an executor against `local`."""
        raise NotImplementedError
