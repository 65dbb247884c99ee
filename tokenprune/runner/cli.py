"""`tokenprune run GRID`: validate, expand, execute, summarise, report."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .. import registry
from ..errors import ConfigError, TokenpruneError
from ..timing import duration
from . import latency, preflight, run_spec
from .grid import load_grid
from .progress import Progress
from .spec import group_by_model
from .store import RunStore


def smoke_overrides(raw_path: Path, limit: int | None, checkpoint: str | None = None) -> dict:
    """--smoke: the bundled model in place of every model, the bundled benchmark with a small limit,
    and two new tokens per answer.

    The grid's own ``smoke`` section may name another adapter, checkpoint, benchmark or limit, and
    ``visual_tokens``: the real model's count, so absolute budgets become the same keep ratios.
    Everything else (strategies, params, budgets, executor) runs as written, so any grid is exercised offline.
    """
    import yaml

    raw = yaml.safe_load(raw_path.read_text()) or {}
    smoke = raw.get("smoke") or {}
    model = {"adapter": smoke.get("adapter", "llava"),
             "checkpoint": checkpoint or smoke.get("checkpoint", "zoo:shapes-llava-144"), "label": "smoke"}
    bench = {"name": smoke.get("benchmark", "shapes"), "limit": limit if limit is not None else smoke.get("limit", 4)}
    # a smoke run exercises every cell, it does not measure: two new tokens are enough
    out = {"models": [model], "benchmarks": [bench], "generation": {"max_new_tokens": 2}}
    n_visual = smoke.get("visual_tokens")
    budgets = raw.get("budgets")
    if n_visual and isinstance(budgets, list) and all(isinstance(b, int) for b in budgets):
        # absolute budgets of the real model become the same fractions of the smoke model's tokens
        out["budgets"] = {"keep_ratio": [round(b / n_visual, 4) for b in budgets]}
    return out


def clamp_layers(cells, depth: int):
    """Smoke runs only: prune layers past the smoke model's depth move to its last layer."""
    import dataclasses

    out = []
    for cell in cells:
        layer = cell.params.get("layer")
        if isinstance(layer, int) and layer >= depth:
            cell = dataclasses.replace(cell, params={**cell.params, "layer": depth - 1})
        out.append(cell)
    return out


def _decoder_depth(checkpoint: str) -> int | None:
    try:
        config, _ = preflight.read_configs(checkpoint)
    except TokenpruneError:
        return None  # the pre-flight reports it, with its place in the grid
    return preflight.decoder_depth(config) if config is not None else None


def limited_benchmarks(raw_path: Path, limit: int) -> list:
    """--limit N: the grid's benchmarks, each with ``limit: N``."""
    import yaml

    raw = yaml.safe_load(raw_path.read_text()) or {}
    return [{**({"name": b} if isinstance(b, str) else b), "limit": limit} for b in raw.get("benchmarks") or []]


def execution_override(raw_path: Path, mode: str) -> dict:
    """--execution MODE: the grid's execution section with its mode replaced (its memory cap kept)."""
    import yaml

    raw = (yaml.safe_load(raw_path.read_text()) or {}).get("execution")
    return {**(raw if isinstance(raw, dict) else {}), "mode": mode}


def check_limit(limit: int | None):
    """--limit N: N samples per benchmark; 0 or less is a mistake, not "no limit"."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: must be a number of samples >= 1 per benchmark "
                          f"(leave --limit out to run every sample)")


def run_command(args) -> int:
    path = Path(args.grid)
    check_limit(args.limit)
    overrides = {}
    smoke = getattr(args, "smoke", False)
    if smoke:
        overrides.update(smoke_overrides(path, args.limit, getattr(args, "smoke_checkpoint", None)))
    elif args.limit is not None:
        overrides["benchmarks"] = limited_benchmarks(path, args.limit)
    if args.executor:
        overrides["executor"] = args.executor
    if getattr(args, "execution", None):
        overrides["execution"] = execution_override(path, args.execution)
    grid = load_grid(path, overrides=overrides)
    if smoke:
        depth = _decoder_depth(grid.cells[0].model.checkpoint)
        if depth:
            grid.cells = clamp_layers(grid.cells, depth)
    if not getattr(args, "no_preflight", False):
        preflight.check(grid, budgets=not smoke)  # every model's config against every cell, before anything runs
    if args.dry_run:
        print(f"{grid.name}: {len(grid.cells)} cells, executor {grid.executor}")
        for cell in grid.cells:
            print(f"  {cell.id}  {cell.describe()}")
        return 0
    # a smoke run is another model: it gets a directory of its own beside the real run's
    out = Path(args.out) if args.out else Path("runs") / (grid.name + ("-smoke" if smoke else ""))
    store = RunStore(out)
    cli = {"limit": args.limit, "smoke": bool(smoke), "smoke_checkpoint": getattr(args, "smoke_checkpoint", None),
           "executor": args.executor}
    run_spec.bind(store, run_spec.spec_record(grid, cli), extend=getattr(args, "extend", False))
    store.init(grid.path, grid.raw)
    executor = registry.lookup("executors", grid.executor)(**grid.executor_options)
    latency.warn_if_busy(grid.latency.max_load, "the run")
    progress = Progress(total_cells=len(grid.cells), enabled=not args.quiet, store=store)
    started, started_at = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        status = executor.run(group_by_model(grid.cells), store, warmup=grid.latency_warmup, progress=progress)
    finally:
        progress.close()
    wall_s = time.perf_counter() - started
    store.record_invocation({"started": started_at, "wall_s": round(wall_s, 1), "executor": grid.executor,
                             **status_counts(status)})
    print_summary(grid, store, status)
    print(f"run took {duration(wall_s)}")
    if not args.no_report:
        try:
            from ..report import write_report
        except ImportError:
            pass
        else:
            try:
                report_started = time.perf_counter()
                where = write_report(store.root, out=args.report_out or store.root / "report")
                print(f"report: {where} (took {duration(time.perf_counter() - report_started)})")
            except TokenpruneError as exc:
                print(f"tokenprune: report not written: {exc}", file=sys.stderr)
    failed = [cid for cid, s in status.items() if s == "failed"]
    return 1 if failed else 0


def status_counts(status: dict) -> dict:
    """How many cells ended done, skipped (finished before) and failed."""
    return {s: list(status.values()).count(s) for s in ("done", "skipped", "failed")}


def print_summary(grid, store, status):
    from .collect import collect

    df = collect(store.root)
    ids = {c.id: i for i, c in enumerate(grid.cells)}
    if not df.empty:  # the grid's own order: model, strategy, benchmark, seed, budget
        df = df[df["cell"].isin(ids)].assign(_order=lambda d: d["cell"].map(ids)).sort_values("_order")
    print(f"\n{grid.name}: {len(ids)} cells in {store.root}")
    if not df.empty:
        cols = ["model", "label", "budget_label", "benchmark", *(["seed"] if df["seed"].nunique() > 1 else []),
                "status", "score", "relative", "loyalty", "tokens.kept_mean", "latency.prefill_s_median"]
        shown = df[[c for c in cols if c in df.columns]].copy()
        with __import__("pandas").option_context("display.max_rows", 500, "display.width", 200,
                                                  "display.max_columns", 20, "display.float_format", "{:.3g}".format):
            print(shown.to_string(index=False))
    counts = status_counts(status)
    print(f"done {counts['done']}, skipped (already finished) {counts['skipped']}, failed {counts['failed']}")
    for cs in store.cells():
        if status.get(cs.cell.id) == "failed":
            err = cs.error() or {}
            print(f"FAILED {cs.cell.describe()}: {err.get('type', '')}: {str(err.get('message', ''))[:300]}")
    _warn_timed_under_load(df)


def _warn_timed_under_load(df):
    """Latency measured while other work ran is not evidence: say which cells it concerns."""
    column = "environment.timed_under_load"
    if df.empty or column not in df:
        return
    loaded = df[df[column].map(lambda v: v == 1)]  # True, or 1.0 in a column with missing values
    if loaded.empty:
        return
    threshold = loaded["environment.load_threshold"].max()
    print(f"tokenprune: warning: {len(loaded)} of {len(df)} cells were timed while other processes used more than "
          f"{threshold:g} CPUs (latency.max_load): their latency (marked environment.timed_under_load) shows that "
          f"load more than the strategies; compare speed from a run on a quiet host", file=sys.stderr)
