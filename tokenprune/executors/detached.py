"""Running a model group away from the run directory and sending the results back to the driver.

Used by the Ray and Slurm executors. The worker gets the cells, the run's latency settings and what the
run directory holds for each cell (its records, latency timings, and metrics when it is finished), so it
resumes exactly as `local` would: finished cells are skipped, partial cells continue, a latency subset
is timed. It runs the group in a scratch store and returns each cell's state; the driver appends only
the new records and timings and finishes or fails the cells. A worker that returns nothing (killed, out
of memory, a job's time limit) fails its own cells; the other groups go on.
"""
from __future__ import annotations

import tempfile
import traceback
from dataclasses import asdict

from ..runner.execute import idle, run_group
from ..runner.spec import ModelSpec, cell_from_dict
from ..runner.store import CellStore, RunStore


def _state(cs: CellStore) -> dict:
    return {"records": cs.records(), "latency": cs.latency_records(), "metrics": cs.metrics()}


def group_payload(model_spec, cells, store: RunStore) -> dict:
    return {
        "model": asdict(model_spec),
        "cells": [cell.as_dict() for cell in cells],
        "latency": store.latency_plan().as_dict(),
        "execution": store.execution_plan().as_dict(),
        "existing": {cell.id: _state(store.cell(cell)) for cell in cells},
    }


def run_detached(payload: dict, warmup: int) -> dict:
    """Worker side: run the group in a scratch directory; per cell its status, records, timings, metrics, error."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cells = [cell_from_dict(d) for d in payload["cells"]]
    with tempfile.TemporaryDirectory(prefix="tokenprune-") as tmp:
        scratch = RunStore(tmp)
        scratch.init(None, {})
        # the run's latency settings and execution
        scratch.write_run({"latency": payload["latency"], "execution": payload.get("execution"), "specs": []})
        for cell in cells:
            cs = scratch.cell(cell)
            cs.prepare()
            state = payload["existing"].get(cell.id) or {}
            for record in state.get("records", []):
                cs.append(record)
            for record in state.get("latency", []):
                cs.append_latency(record)
            if state.get("metrics") is not None:
                cs.finish(state["metrics"])
        status = run_group(ModelSpec(**payload["model"]), cells, scratch, warmup=warmup)
        return {cell.id: {"status": status.get(cell.id, "failed"), **_state(scratch.cell(cell)),
                          "error": scratch.cell(cell).error()} for cell in cells}


def lost(cells, exc: BaseException) -> dict:
    """The result of a worker that ended without one: each of its cells failed, saying why."""
    error = {"type": type(exc).__name__,
             "message": f"the worker running this cell's model group returned no result: {exc}",
             "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    return {cell.id: {"status": "failed", "error": error} for cell in cells}


def merge_result(result: dict, cells, store: RunStore) -> dict[str, str]:
    """Driver side: append the new records and timings, then finish or fail each cell as the worker did."""
    status = {}
    for cell in cells:
        cs = store.cell(cell)
        cs.prepare()
        got = result.get(cell.id) or lost([cell], RuntimeError("no result for this cell"))[cell.id]
        have = cs.completed_ids()
        for record in got.get("records", []):
            if record["id"] not in have:
                cs.append(record)
        timed = {(r["repeat"], r["sample"]) for r in cs.latency_records()}
        for record in got.get("latency", []):
            if (record["repeat"], record["sample"]) not in timed:
                cs.append_latency(record)
        if got["status"] != "skipped" and got.get("metrics") is not None:
            cs.finish(got["metrics"])
        if got.get("error"):
            cs.record_error(got["error"])
        status[cell.id] = got["status"]
    return status


def run_groups(groups, store: RunStore, progress, submit) -> dict[str, str]:
    """Start a worker per group that has work (``submit(payload)`` starts one and returns a function that
    waits for its result), then merge the results in order; {cell id: 'done' | 'skipped' | 'failed'}."""
    # all workers start before the first result is awaited, so the groups run at once
    pending = [(cells, None if idle(cells, store) else submit(group_payload(model, cells, store)))
               for model, cells in groups]
    status = {}
    for cells, fetch in pending:
        if fetch is None:  # nothing to do for this group
            got = {cell.id: "skipped" for cell in cells}
        else:
            try:
                result = fetch()  # waits for the worker's result
            except Exception as exc:  # noqa: BLE001 - isolation: this group's cells fail, the others go on
                result = lost(cells, exc)
            got = merge_result(result, cells, store)
        status.update(got)
        for cell in cells:
            progress.cell_done(cell, status[cell.id])
    return status
