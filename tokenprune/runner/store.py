"""Results on disk, resumable after a kill at any moment.

Layout: RUN_DIR/{grid.yaml, grid.json, run.json}, RUN_DIR/cells/<cell id>/{spec.json,
samples.jsonl, latency.jsonl, metrics.json, error.json, DONE}. The .jsonl files are
append-only and fsync'ed per line; a torn last line (a kill mid-write) is cut off on
reopen. metrics.json is written atomically (tmp + rename); DONE is written last.
run.json records the grid spec the directory belongs to (see run_spec.py).
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


def _repair_tail(path: Path):
    """Cut a torn last line left by a kill mid-append, so every line is a whole record."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _append_line(path: Path, record: dict):
    line = json.dumps(record, default=str, allow_nan=True) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


class CellStore:
    """One cell's directory."""

    def __init__(self, root: Path, cell: CellSpec):
        self.cell = cell
        self.dir = root / "cells" / cell.id
        self.samples_path = self.dir / "samples.jsonl"
        self.latency_path = self.dir / "latency.jsonl"  # the latency subset's raw times
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
        for path in (self.samples_path, self.latency_path):
            _repair_tail(path)

    @property
    def done(self) -> bool:
        return self.done_path.exists()

    def records(self) -> list[dict]:
        return _read_lines(self.samples_path)

    def completed_ids(self) -> set[str]:
        return {r["id"] for r in self.records()}

    def append(self, record: dict):
        _append_line(self.samples_path, record)

    def latency_records(self) -> list[dict]:
        return _read_lines(self.latency_path)

    def append_latency(self, record: dict):
        _append_line(self.latency_path, record)

    def finish(self, metrics: dict):
        self.write_metrics(metrics)
        write_atomic(self.done_path, "")

    def write_metrics(self, metrics: dict):
        write_atomic(self.metrics_path, json.dumps(metrics, indent=2, default=str, allow_nan=True))

    def fail(self, exc: BaseException):
        self.record_error({"type": type(exc).__name__, "message": str(exc),
                           "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))})

    def record_error(self, info: dict):
        """error.json: {type, message, traceback}, e.g. as a worker on another machine recorded it."""
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

    @property
    def run_path(self) -> Path:
        return self.root / "run.json"

    def read_run(self) -> dict | None:
        """run.json: the grid spec(s) this directory belongs to; None for a new (or older) directory."""
        return json.loads(self.run_path.read_text()) if self.run_path.exists() else None

    def write_run(self, record: dict):
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_path, json.dumps(record, indent=1, default=str))

    def record_invocation(self, record: dict):
        """One line per `tokenprune run` into this directory: when, how long, what it did (the report's run time)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _append_line(self.root / "invocations.jsonl", record)

    def invocations(self) -> list[dict]:
        return _read_lines(self.root / "invocations.jsonl")

    def planned_cells(self) -> list[CellSpec] | None:
        """Every cell the run's grid spec(s) asked for, as run (smoke changes included); None without run.json."""
        record = self.read_run()
        if record is None:
            return None
        seen, out = set(), []
        for spec in record["specs"]:
            for d in spec["cells"]:
                if d["id"] not in seen:
                    seen.add(d["id"])
                    out.append(cell_from_dict(d))
        return out

    def latency_plan(self):
        """The run's latency settings (defaults for a directory without run.json, e.g. a worker's scratch)."""
        from .latency import LatencyPlan

        record = self.read_run()
        return LatencyPlan(**record["latency"]) if record and record.get("latency") else LatencyPlan()

    def execution_plan(self):
        """How the run executes a model's cells (run.json's ``execution``; auto for a directory without it)."""
        from .sample_major import ExecutionPlan

        record = self.read_run()
        return ExecutionPlan(**record["execution"]) if record and record.get("execution") else ExecutionPlan()

    def cells(self) -> list[CellStore]:
        """Every cell recorded in the directory (from its spec.json)."""
        out = []
        for spec_path in sorted((self.root / "cells").glob("*/spec.json")):
            spec = json.loads(spec_path.read_text())
            out.append(CellStore(self.root, cell_from_dict(spec)))
        return out
