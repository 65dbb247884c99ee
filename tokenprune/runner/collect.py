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


def sample_correct(score: dict) -> float | None:
    """A sample's correctness in [0, 1] from its score dict ('correct', or OCRBench's 'hit')."""
    for key in ("correct", "hit"):
        if isinstance(score, dict) and isinstance(score.get(key), (int, float)):
            return float(score[key])
    return None


def _answer(record: dict) -> str:
    """What the model answered: the parsed choice when the scorer extracted one, else the normalised text."""
    score = record.get("score") or {}
    if isinstance(score, dict) and score.get("pred") is not None:
        return str(score["pred"])
    return " ".join(str(record.get("prediction", "")).lower().split()).rstrip(".")


def loyalty(records: list[dict], reference: list[dict]) -> float | None:
    """% of shared samples where the answer equals the reference (unpruned) model's answer."""
    ref = {r["id"]: _answer(r) for r in reference}
    shared = [r for r in records if r["id"] in ref]
    if not shared:
        return None
    return 100.0 * sum(_answer(r) == ref[r["id"]] for r in shared) / len(shared)


def hard_accuracy(records: list[dict], pool_records: list[dict]) -> tuple[float | None, int]:
    """Accuracy (%) on the samples the `pool` baseline got wrong, and how many there are."""
    wrong = {r["id"] for r in pool_records if (sample_correct(r.get("score")) or 0.0) < 1.0}
    mine = [sample_correct(r.get("score")) for r in records if r["id"] in wrong]
    mine = [m for m in mine if m is not None]
    return (100.0 * sum(mine) / len(mine) if mine else None), len(wrong)


def collect(run_dir) -> pd.DataFrame:
    """A row per cell: its spec, status, error, and every metric (flattened, dotted names).

    ``relative`` is the cell's main metric as a percentage of the vanilla cell with the
    same model, benchmark (and options) and seed; missing when there is no finished vanilla cell.
    ``loyalty`` is the % of samples answered as that vanilla cell answered them; ``hard_accuracy``
    the accuracy on the samples the `pool` cell at the same budget got wrong (``hard_samples`` of them).
    """
    rows = []
    stores = RunStore(run_dir).cells()
    for cs in stores:
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
    _add_sample_comparisons(df, group_key, {cs.cell.id: cs for cs in stores})
    return df


def _add_sample_comparisons(df, group_key, stores):
    done = df["status"] == "done"
    records = {cid: stores[cid].records() for cid in df.loc[done, "cell"]}
    vanilla_cell = {k: c for k, c, strat, ok in zip(group_key, df["cell"], df["strategy"], done)
                    if strat == "vanilla" and ok}
    pool_cell = {(k, b): c for k, b, c, strat, ok in zip(group_key, df["budget_label"], df["cell"], df["strategy"], done)
                 if strat == "pool" and ok}
    loyal, hard, n_hard = [], [], []
    for k, budget, cid, ok in zip(group_key, df["budget_label"], df["cell"], done):
        ref = vanilla_cell.get(k)
        loyal.append(loyalty(records[cid], records[ref]) if ok and ref else None)
        pool = pool_cell.get((k, budget))
        acc, n = hard_accuracy(records[cid], records[pool]) if ok and pool else (None, None)
        hard.append(acc)
        n_hard.append(n)
    df["loyalty"] = loyal
    df["hard_accuracy"] = hard
    df["hard_samples"] = n_hard


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
