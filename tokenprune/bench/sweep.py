"""`tokenprune bench sweep GRID.yaml`: a grid's accuracy pass run cell by cell and sample-major in one
invocation, checked identical, and timed.

Each mode runs into its own temporary run directory with the same loaded model(s), after one
untimed batch per mode (first calls pay for lazy set-up). With ``repeats`` R the modes alternate
(cell, sample, sample, cell, ...) so a drift of the host falls on both. The latency subset (timed
cell by cell after the accuracy pass in either mode) is left out: only the accuracy pass differs.
Identical means: every cell's records (answer, score, kept indices, order, counts, diagnostics;
everything but the timings) and metrics (everything but latency, environment and memory) are equal.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from .. import timing
from ..errors import TokenpruneError
from ..runner import run_spec
from ..runner.cli import execution_override, limited_benchmarks
from ..runner.execute import load_model, run_group
from ..runner.grid import load_grid
from ..runner.spec import canonical_json, group_by_model
from ..runner.store import RunStore
from .phases import PHASES, PhaseClock

MODES = ("cell", "sample")
RECORD_TIMING = ("timings",)  # per-sample fields that are measurements, not results
METRIC_TIMING = ("latency", "latency_accuracy_pass", "environment", "memory")


def sweep_grid(path: Path, mode: str, limit: int | None = None):
    """The grid as the bench runs it: ``execution`` set to ``mode``, the local executor, no latency subset."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    latency = {k: v for k, v in (raw.get("latency") or {}).items() if k not in ("subset", "repeats")}
    overrides = {"execution": execution_override(Path(path), mode), "executor": "local", "latency": latency}
    if limit is not None:
        overrides["benchmarks"] = limited_benchmarks(Path(path), limit)
    return load_grid(path, overrides=overrides)


def run_mode(grid, out: Path, models: dict, phases: bool = False) -> dict:
    """Run ``grid`` into the new run directory ``out`` with the loaded ``models``; wall seconds and phases."""
    store = RunStore(out)
    run_spec.bind(store, run_spec.spec_record(grid, {"limit": None, "smoke": False, "smoke_checkpoint": None,
                                                     "executor": None}))
    store.init(grid.path, grid.raw)
    seconds = dict.fromkeys(PHASES, 0.0)
    status = {}
    meter = timing.LoadMeter()  # CPUs other processes kept busy meanwhile
    start = time.perf_counter()
    with meter.span():
        for model_spec, cells in group_by_model(grid.cells):
            vlm = models[model_spec.key()]
            clock = PhaseClock(vlm, _first_prune_layer(cells)) if phases else nullcontext()
            with clock:
                status.update(run_group(model_spec, cells, store, warmup=grid.latency_warmup, vlm=vlm))
            if phases:
                for k, v in clock.seconds.items():
                    seconds[k] += v
    wall = time.perf_counter() - start
    failed = [cs.cell.describe() for cs in store.cells() if status.get(cs.cell.id) == "failed"]
    if failed:
        raise TokenpruneError(f"{len(failed)} cell(s) failed in {grid.execution.mode} mode, so the modes cannot "
                              f"be compared: " + "; ".join(failed[:5]) + f" (see {out}/cells/*/error.json)")
    out_phases = {k: round(v, 4) for k, v in seconds.items()} if phases else None
    if out_phases is not None:
        out_phases["rest"] = round(wall - sum(seconds.values()), 4)
    other = meter.other_cpus()
    return {"wall_s": wall, "phases": out_phases, "other_cpu_load": None if other is None else round(other, 3)}


def _first_prune_layer(cells) -> int:
    """The shallowest prune layer of the cells' llm-stage strategies (where the shared prefix ends), else 0."""
    from ..api import get_strategy

    layers = []
    for cell in cells:
        if cell.strategy != "vanilla":
            strategy = get_strategy(cell.strategy, **cell.params)
            if strategy.stage == "llm":
                layers.append(strategy.prune_layer)
    return min(layers, default=0)


def comparable(run_dir: Path) -> dict:
    """Per cell: its records (sorted by sample, timings left out) and metrics (measurements left out)."""
    out = {}
    for cs in RunStore(run_dir).cells():
        records = sorted(({k: v for k, v in r.items() if k not in RECORD_TIMING} for r in cs.records()),
                         key=lambda r: r["id"])
        metrics = {k: v for k, v in (cs.metrics() or {}).items() if k not in METRIC_TIMING}
        out[cs.cell.id] = {"cell": cs.cell.describe(), "records": records, "metrics": metrics}
    return out


def differences(reference: dict, other: dict, limit: int = 10) -> list[str]:
    """What differs between two comparable() results, one line per cell (at most ``limit``)."""
    lines = []
    for cid in sorted(set(reference) | set(other)):
        a, b = reference.get(cid), other.get(cid)
        if a is None or b is None:
            lines.append(f"{(a or b)['cell']}: only in one mode")
            continue
        if len(a["records"]) != len(b["records"]):
            lines.append(f"{a['cell']}: {len(a['records'])} vs {len(b['records'])} samples")
            continue
        for ra, rb in zip(a["records"], b["records"]):
            keys = [k for k in sorted(set(ra) | set(rb)) if canonical_json(ra.get(k)) != canonical_json(rb.get(k))]
            if keys:
                lines.append(f"{a['cell']}: sample {ra['id']}: {', '.join(keys)} differ")
                break
        else:
            keys = [k for k in sorted(set(a["metrics"]) | set(b["metrics"]))
                    if canonical_json(a["metrics"].get(k)) != canonical_json(b["metrics"].get(k))]
            if keys:
                lines.append(f"{a['cell']}: metrics {', '.join(keys)} differ")
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def run(path, *, limit: int | None = None, repeats: int = 1, phases: bool = False, keep: Path | None = None) -> dict:
    """Both modes, ``repeats`` times each (alternating), compared; the result as a JSON-able dict."""
    if repeats < 1:
        raise TokenpruneError(f"--repeats must be at least 1, got {repeats}")
    grids = {mode: sweep_grid(path, mode, limit) for mode in MODES}
    cells = grids["cell"].cells
    max_load = grids["cell"].latency.max_load
    loads = [timing.load_average()]
    models = {spec.key(): load_model(spec) for spec, _ in group_by_model(cells)}
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="tokenprune-bench-sweep-"))
    batch = max(c.batch_size for c in cells)
    for mode in MODES:  # untimed: one batch per mode, so neither pays for first calls
        run_mode(sweep_grid(path, mode, batch), root / f"warmup-{mode}", models)
    runs, results = [], {}
    for r in range(repeats):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            out = root / f"{mode}-{r}"
            measured = run_mode(grids[mode], out, models, phases)
            runs.append({"mode": mode, "repeat": r, **measured})
            results[(mode, r)] = comparable(out)
    reference = results[("cell", 0)]
    diffs = []
    for key, result in results.items():
        if key != ("cell", 0):
            diffs += [f"{key[0]} run {key[1]}: {line}" for line in differences(reference, result)]
    loads.append(timing.load_average())
    answers = sum(len(c["records"]) for c in reference.values())
    summary = []
    for mode in MODES:
        walls = [r["wall_s"] for r in runs if r["mode"] == mode]
        wall = statistics.median(walls)
        row = {"mode": mode, "wall_s": round(wall, 3), "runs_s": [round(w, 3) for w in walls],
               "answers": answers, "ms_per_answer": round(1000 * wall / max(answers, 1), 3)}
        mode_phases = [r["phases"] for r in runs if r["mode"] == mode and r["phases"]]
        if mode_phases:
            row["phases_s"] = {k: round(statistics.median(p[k] for p in mode_phases), 3) for k in mode_phases[0]}
        summary.append(row)
    speedup = summary[0]["wall_s"] / summary[1]["wall_s"] if summary[1]["wall_s"] else None
    if not keep:  # kept when a run failed (run_mode raised): its error.json files name the cause
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return {"grid": str(path), "name": grids["cell"].name, "cells": len(cells),
            "samples_per_cell": sorted({len(c["records"]) for c in reference.values()}),
            "batch_size": sorted({c.batch_size for c in cells}), "limit": limit, "repeats": repeats,
            "identical": not diffs, "differences": diffs, "speedup": speedup, "rows": summary, "runs": runs,
            "load_average_1min": loads, "other_cpu_load": [r["other_cpu_load"] for r in runs],
            "max_load": max_load, "busy": _busy(runs, max_load)}


def _busy(runs, max_load: float) -> bool | None:
    """Whether other processes kept more than ``max_load`` of the CPUs busy during any timed run (the grid's
    latency.max_load, the threshold the runner applies to its own timings)."""
    known = [r["other_cpu_load"] for r in runs if r.get("other_cpu_load") is not None]
    return None if not known else max(known) > max_load * timing.usable_cpus()


def speedup_text(speedup: float | None) -> str:
    return "—" if speedup is None else f"{speedup:.1f}x"


def summary_lines(result: dict) -> list[str]:
    """What the command prints and the markdown leads with."""
    cell, sample = result["rows"]
    same = ("identical in both modes (every cell's answers, kept indices, scores and metrics)" if result["identical"]
            else "DIFFERENT between the modes:\n  " + "\n  ".join(result["differences"]))
    return [
        f"grid {result['grid']} ({result['name']}): {result['cells']} cells x {result['samples_per_cell']} samples, "
        f"batch size {result['batch_size']}, accuracy pass only, {result['repeats']} run(s) per mode",
        f"cell by cell: {cell['wall_s']:.2f} s, {cell['ms_per_answer']:.2f} ms per answer",
        f"sample-major: {sample['wall_s']:.2f} s, {sample['ms_per_answer']:.2f} ms per answer",
        f"speed-up: {speedup_text(result['speedup'])}",
        f"results: {same}",
        f"host: other processes kept {_loads(result)} CPUs busy during the timed runs"
        + (" (busy: these timings are no evidence)" if result["busy"] else "")
        + f"; 1-minute load average before and after: {' / '.join(str(v) for v in result['load_average_1min'])} "
          f"(it counts this bench's own threads)",
    ]


def _loads(result: dict) -> str:
    known = [v for v in result["other_cpu_load"] if v is not None]
    return "an unknown number of" if not known else " / ".join(f"{v:.2f}" for v in known)


def markdown(result: dict, legend: str = "") -> str:
    from .report import markdown_table

    lines = summary_lines(result)
    body = "\n".join(f"- {line}" for line in lines) + "\n\n"
    body += markdown_table(result["rows"], ["mode", "wall_s", "runs_s", "answers", "ms_per_answer"])
    phased = [r for r in result["rows"] if r.get("phases_s")]
    if phased:
        rows = [{"mode": r["mode"], **r["phases_s"]} for r in phased]
        body += ("\nSeconds per phase (median over runs): inputs = build_inputs, vision = the vision tower, "
                 "prefill_below / prefill_from = decoder layers at prefill below / from the shallowest prune "
                 "layer, decode = decoder layers while decoding, rest = everything else (generate's own work, "
                 "selection, scoring, records).\n\n")
        body += markdown_table(rows, ["mode", *PHASES, "rest"])
    if result.get("flops"):
        body += ("\nAnalytic prefill FLOPs of the same grid (`tokenprune bench sweep GRID --flops-only`):\n\n"
                 + "\n".join(f"    {line}" for line in result["flops"]) + "\n")
    if result.get("busy"):
        body += ("\n**The host was busy**: other processes kept "
                 f"{max(v for v in result['other_cpu_load'] if v is not None):.2f} CPUs busy during a timed run, over "
                 f"{result['max_load']:g} of the {timing.usable_cpus()} CPUs: these timings are not evidence.\n")
    return legend + body


def write(result: dict, out_dir, environment: dict) -> tuple[Path, Path]:
    from . import report

    env = {**environment, "load_average_1min": result["load_average_1min"],
           "other_cpu_load": result["other_cpu_load"], "busy": result["busy"]}
    return report.write(out_dir, f"sweep_{result['name']}", {"environment": env, **result}, markdown(result))
