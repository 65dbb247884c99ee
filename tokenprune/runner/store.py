"""Results on disk, resumable after a kill at any moment.

Layout: RUN_DIR/grid.yaml, RUN_DIR/cells/<cell id>/{spec.json, samples.jsonl,
metrics.json, error.json, DONE}. samples.jsonl is append-only and fsync'ed per
sample; a torn last line (a kill mid-write) is cut off on reopen. metrics.json
is written atomically (tmp + rename); DONE is written last.
"""
from __future__ import annotations

import json
import os
import shutil
import traceback
from pathlib import Path

from .spec import CellSpec, canonical_json, cell_from_dict


def write_atomic(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CellStore:
    """One cell's directory."""

    def __init__(self, root: Path, cell: CellSpec):
        self.cell = cell
        self.dir = root / "cells" / cell.id
        self.samples_path = self.dir / "samples.jsonl"
        self.metrics_path = self.dir / "metrics.json"
        self.error_path = self.dir / "error.json"
        self.done_path = self.dir / "DONE"

    def prepare(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        spec_path = self.dir / "spec.json"
        if not spec_path.exists():
            write_atomic(spec_path, json.dumps({"id": self.cell.id, **self.cell.as_dict()}, indent=2, default=str))
        if self.error_path.exists():
            self.error_path.unlink()  # a rerun retries a failed cell
        self._repair_tail()

    @property
    def done(self) -> bool:
        return self.done_path.exists()

    def _repair_tail(self):
        """Cut a torn last line left by a kill mid-append, so every line is a whole record."""
        if not self.samples_path.exists():
            return
        data = self.samples_path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.samples_path, "r+b") as f:
                f.truncate(cut)

    def records(self) -> list[dict]:
        if not self.samples_path.exists():
            return []
        out = []
        with open(self.samples_path) as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(json.loads(line))
        return out

    def completed_ids(self) -> set[str]:
        return {r["id"] for r in self.records()}

    def append(self, record: dict):
        line = json.dumps(record, default=str, allow_nan=True) + "\n"
        with open(self.samples_path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def finish(self, metrics: dict):
        write_atomic(self.metrics_path, json.dumps(metrics, indent=2, default=str, allow_nan=True))
        write_atomic(self.done_path, "")

    def fail(self, exc: BaseException):
        info = {"type": type(exc).__name__, "message": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
        write_atomic(self.error_path, json.dumps(info, indent=2))

    def error(self) -> dict | None:
        return json.loads(self.error_path.read_text()) if self.error_path.exists() else None

    def metrics(self) -> dict | None:
        return json.loads(self.metrics_path.read_text()) if self.done and self.metrics_path.exists() else None


class RunStore:
    """A run directory: the grid that produced it and one CellStore per cell."""

    def __init__(self, root):
        self.root = Path(root)

    def init(self, grid_path: Path | None, grid_raw: dict):
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "cells").mkdir(exist_ok=True)
        if grid_path is not None and grid_path.exists():
            shutil.copyfile(grid_path, self.root / "grid.yaml")
        write_atomic(self.root / "grid.json", canonical_json(grid_raw))

    def cell(self, cell: CellSpec) -> CellStore:
        return CellStore(self.root, cell)

    def cells(self) -> list[CellStore]:
        """Every cell recorded in the directory (from its spec.json)."""
        out = []
        for spec_path in sorted((self.root / "cells").glob("*/spec.json")):
            spec = json.loads(spec_path.read_text())
            spec.pop("id", None)
            out.append(CellStore(self.root, cell_from_dict(spec)))
        return out
