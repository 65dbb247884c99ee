"""Running a model group away from the run directory and sending the results back to the driver.

Used by the Ray and Slurm executors: the worker gets the cells plus the records
already stored for them (so partial cells resume), runs them in a scratch store,
and returns everything; the driver appends only the new records and finishes the cells.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict

from ..runner.execute import run_group
from ..runner.spec import ModelSpec, cell_from_dict
from ..runner.store import RunStore


def group_payload(model_spec, cells, store: RunStore) -> dict:
    return {
        "model": asdict(model_spec),
        "cells": [cell.as_dict() for cell in cells],
        "existing": {cell.id: store.cell(cell).records() for cell in cells},
    }


def run_detached(payload: dict, warmup: int) -> dict:
    """Worker side: run the group in a scratch directory and return records, metrics and errors per cell."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cells = [cell_from_dict(d) for d in payload["cells"]]
    with tempfile.TemporaryDirectory(prefix="tokenprune-") as tmp:
        scratch = RunStore(tmp)
        scratch.init(None, {})
        for cell in cells:
            cs = scratch.cell(cell)
            cs.prepare()
            for record in payload["existing"].get(cell.id, []):
                cs.append(record)
        run_group(ModelSpec(**payload["model"]), cells, scratch, warmup=warmup)
        out = {}
        for cell in cells:
            cs = scratch.cell(cell)
            out[cell.id] = {"records": cs.records(), "metrics": cs.metrics(), "error": cs.error()}
        return out


def merge_result(result: dict, cells, store: RunStore) -> dict[str, str]:
    """Driver side: append the new records, then finish or fail each cell."""
    status = {}
    for cell in cells:
        cs = store.cell(cell)
        cs.prepare()
        got = result.get(cell.id) or {"records": [], "metrics": None, "error": {"message": "no result returned"}}
        have = cs.completed_ids()
        for record in got["records"]:
            if record["id"] not in have:
                cs.append(record)
        if got["metrics"] is not None:
            cs.finish(got["metrics"])
            status[cell.id] = "done"
        else:
            cs.fail(RuntimeError((got["error"] or {}).get("traceback") or (got["error"] or {}).get("message")))
            status[cell.id] = "failed"
    return status
