"""One pandas DataFrame (and a parquet file) of every cell in a run directory."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .store import RunStore


def _flat(prefix: str, d: dict | None) -> dict:
    out = {}
    for key, value in (d or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(name + ".", value))
        else:
            out[name] = value
    return out


def collect(run_dir) -> pd.DataFrame:
    """A row per cell: its spec, status, error, and every metric (flattened, dotted names).

    ``relative`` is the cell's main metric as a percentage of the vanilla cell with the
    same model, benchmark (and options) and seed; missing when there is no finished vanilla cell.
    """
    rows = []
    for cs in RunStore(run_dir).cells():
        cell = cs.cell
        metrics = cs.metrics()
        error = cs.error()
        row = {
            "cell": cell.id,
            "model": cell.model.label,
            "adapter": cell.model.adapter,
            "checkpoint": cell.model.checkpoint,
            "strategy": cell.strategy,
            "label": cell.label or cell.strategy,
            "params": cell.params,
            "budget": cell.budget,
            "keep_ratio": cell.keep_ratio,
            "budget_label": cell.budget_label(),
            "benchmark": cell.benchmark,
            "benchmark_options": cell.benchmark_options,
            "seed": cell.seed,
            "status": "done" if metrics is not None else ("failed" if error else "incomplete"),
            "error": (error or {}).get("message"),
            "samples_recorded": len(cs.records()),
        }
        if metrics is not None:
            main = metrics.get("main_metric")
            row["main_metric"] = main
            row["score"] = (metrics.get("benchmark_metrics") or {}).get(main)
            for key in ("benchmark_metrics", "tokens", "flops", "latency", "memory", "environment"):
                row.update(_flat(f"{key}.", metrics.get(key)))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if "score" not in df:
        df["score"] = None
    df["relative"] = None
    group_key = df.apply(lambda r: (r["model"], r["benchmark"], str(sorted(r["benchmark_options"].items())), r["seed"]),
                         axis=1)
    vanilla = {k: s for k, s, strat, status in zip(group_key, df["score"], df["strategy"], df["status"])
               if strat == "vanilla" and status == "done"}
    df["relative"] = [
        (100.0 * s / vanilla[k]) if k in vanilla and s is not None and vanilla[k] else None
        for k, s in zip(group_key, df["score"])
    ]
    return df


def write_parquet(df: pd.DataFrame, path) -> Path:
    """Parquet needs flat columns: dict-valued ones are stored as JSON text."""
    import json

    path = Path(path)
    out = df.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, (dict, list))).any():
            out[col] = out[col].map(lambda v: json.dumps(v, sort_keys=True, default=str) if v is not None else None)
    out.to_parquet(path, index=False)
    return path
