"""The executor contract: run groups of cells (one model each) into a run store."""
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
        """groups: list of (ModelSpec, [CellSpec]); returns {cell id: 'done'|'skipped'|'failed'}."""
        raise NotImplementedError
