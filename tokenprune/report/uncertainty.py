"""Confidence intervals and paired comparisons for a report, from the cells' per-sample records.

Per cell: the 95 % bootstrap interval of its score (the benchmark's own main metric, its own
resampling unit) and of its % of vanilla. Per strategy label, budget and benchmark (seeds pooled):
the difference to vanilla and to the best strategy at that budget, each with its paired interval
and, where every unit is right or wrong, McNemar's exact p. A strategy is *not distinguishable*
from another when the interval of the difference contains 0 or McNemar's p is 0.05 or more.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import registry, stats
from ..runner.collect import sample_correct

AVG = "Avg."  # the benchmark name of the average-over-benchmarks rows


@dataclass
class Uncertainty:
    """What the report shows: per-cell intervals, per-label comparisons, and how long it all took."""

    cells: pd.DataFrame  # cell, score_lo, score_hi, relative_lo, relative_hi, ci_units, ci_method
    comparisons: pd.DataFrame  # one row per (model, budget_label, label, benchmark), AVG included
    seconds: float = 0.0
    resamples: int = stats.RESAMPLES
    problems: list[str] = field(default_factory=list)  # cells left without an interval, and why
    _index: dict = field(default_factory=dict, init=False, repr=False)

    def lookup(self, model, budget, label, benchmark) -> dict:
        """The comparison row of a table entry ({} when there is none)."""
        if not self._index and not self.comparisons.empty:
            self._index = {(r["model"], r["budget_label"], r["label"], r["benchmark"]): r
                           for r in self.comparisons.to_dict("records")}
        return self._index.get((model, budget, label, benchmark), {})


def _benchmark(name: str, options: dict, cache: dict):
    key = (name, json.dumps(options, sort_keys=True, default=str))
    if key not in cache:
        cache[key] = registry.lookup("benchmarks", name)(**options)
    return cache[key]


def _resampler(row, records, cache) -> stats.Resampler:
    bench = _benchmark(row["benchmark"], row["benchmark_options"], cache)
    metric = row["main_metric"]
    counted = metric == bench.main_metric  # the counts give the main metric
    return stats.Resampler(records, lambda recs: bench.aggregate(recs)[metric], bench.resample_unit,
                           bench.resample_copy, outcome=lambda r: sample_correct(r.get("score")),
                           counts=bench.resample_counts if counted else None, from_counts=bench.metric_from_counts)


def compute(df: pd.DataFrame, records: dict[str, list[dict]], resamples: int = stats.RESAMPLES,
            seed: int = 0) -> Uncertainty:
    done = df[(df["status"] == "done") & df["score"].notna()]
    cache: dict = {}
    if not done.empty:
        registry.entries("benchmarks")  # plugins load once per process: not part of the statistics' time
    start = time.perf_counter()
    samplers, problems = {}, []
    for _, row in done.iterrows():
        try:
            sampler = _resampler(row, records[row["cell"]], cache)
            if not math.isclose(sampler.point, float(row["score"]), rel_tol=1e-6, abs_tol=1e-6):
                raise ValueError(f"its {len(records[row['cell']])} records score {sampler.point:.6g}, "
                                 f"metrics.json says {row['score']:.6g}")
            samplers[row["cell"]] = sampler
        except Exception as exc:  # noqa: BLE001 - the score stands; only its interval is missing
            problems.append(f"{row['model']} | {row['label']} | {row['budget_label']} | {row['benchmark']}: "
                            f"no interval ({type(exc).__name__}: {exc})")
    ids = list(samplers)
    draws = dict(zip(ids, stats.bootstrap([samplers[c] for c in ids], resamples, seed)))
    relative = _relative_draws(done, draws)
    cells = pd.DataFrame([{
        "cell": cid,
        **dict(zip(("score_lo", "score_hi"), stats.interval(draws[cid]))),
        **(dict(zip(("relative_lo", "relative_hi"), stats.interval(relative[cid]))) if cid in relative else {}),
        "ci_units": len(samplers[cid].keys),
        "ci_method": samplers[cid].method,
    } for cid in ids], columns=["cell", "score_lo", "score_hi", "relative_lo", "relative_hi", "ci_units",
                                "ci_method"])
    comparisons = _comparisons(done, samplers, draws, relative)
    return Uncertainty(cells, comparisons, time.perf_counter() - start, resamples, problems)


def _relative_draws(done: pd.DataFrame, draws: dict) -> dict[str, np.ndarray]:
    """100 x cell / vanilla on the same resamples (vanilla of the same model, benchmark, options and seed)."""
    def key(r):
        return r["model"], r["benchmark"], json.dumps(r["benchmark_options"], sort_keys=True, default=str), r["seed"]

    vanilla = {key(r): r["cell"] for _, r in done.iterrows() if r["strategy"] == "vanilla" and r["cell"] in draws}
    out = {}
    for _, r in done.iterrows():
        ref = vanilla.get(key(r))
        if ref is not None and r["cell"] in draws and len(draws[ref]) == len(draws[r["cell"]]):
            with np.errstate(divide="ignore", invalid="ignore"):
                out[r["cell"]] = 100.0 * draws[r["cell"]] / draws[ref]
    return out


@dataclass
class _Pooled:
    """One strategy label at one budget on one benchmark (or the Avg.), its seeds pooled."""

    point: float
    draws: np.ndarray | None
    cells: list[str]
    seed_points: list[float]


def _pool(group: pd.DataFrame, draws: dict, value: str) -> _Pooled:
    cells = list(group["cell"])
    have = [draws[c] for c in cells if c in draws]
    pooled = np.mean(have, axis=0) if have and len(have) == len(cells) else None
    return _Pooled(float(group[value].mean()), pooled, cells, [float(v) for v in group[value]])


def _comparisons(done: pd.DataFrame, samplers: dict, draws: dict, relative: dict) -> pd.DataFrame:
    rows = []
    for (model, bench), part in done.groupby(["model", "benchmark"], sort=False):
        vanilla = part[part["strategy"] == "vanilla"]
        ref = _pool(vanilla, draws, "score") if not vanilla.empty else None
        if ref is not None:
            rows.append(_row(model, "all", "vanilla", bench, ref, None, None, samplers))
        for budget, at_budget in part[part["strategy"] != "vanilla"].groupby("budget_label", sort=False):
            pooled = {label: _pool(g, draws, "score") for label, g in at_budget.groupby("label", sort=False)}
            best = max(pooled.values(), key=lambda p: p.point)
            rows += [_row(model, budget, label, bench, p, ref, best, samplers) for label, p in pooled.items()]
    pruned = done[(done["strategy"] != "vanilla") & done["relative"].notna()]
    full = _Pooled(100.0, None, [], [])  # vanilla is 100 % of itself, exactly
    for (model, budget), at_budget in pruned.groupby(["model", "budget_label"], sort=False):
        groups = dict(list(at_budget.groupby("label", sort=False)))
        pooled = {label: _average_over_benchmarks(g, relative) for label, g in groups.items()}
        # averages over different sets of benchmarks are not compared with each other
        covers = {label: frozenset(g["benchmark"]) for label, g in groups.items()}
        widest = max(covers.values(), key=len)
        best = max((p for label, p in pooled.items() if covers[label] == widest), key=lambda p: p.point)
        rows += [_row(model, budget, label, AVG, p, full, best if covers[label] == widest else None, None)
                 for label, p in pooled.items()]
    return pd.DataFrame(rows)


def _average_over_benchmarks(group: pd.DataFrame, relative: dict) -> _Pooled:
    """% of vanilla averaged over seeds, then over benchmarks (independent resamples: their mean is the
    bootstrap of the mean)."""
    per_bench = [_pool(g, relative, "relative") for _, g in group.groupby("benchmark", sort=False)]
    have = [p.draws for p in per_bench if p.draws is not None]
    pooled = np.mean(have, axis=0) if len(have) == len(per_bench) else None
    return _Pooled(float(group["relative"].mean()), pooled, list(group["cell"]), [])


def _difference(a: _Pooled, b: _Pooled, samplers: dict | None) -> dict:
    """a - b: its interval (paired where both come from the same resamples) and, given the cells' samplers,
    McNemar's p for single cells."""
    out = {"diff": a.point - b.point}
    if a.draws is not None and (b.draws is not None or not b.cells):
        other = b.draws if b.draws is not None else b.point
        out["lo"], out["hi"] = stats.interval(a.draws - other)
    if samplers and len(a.cells) == 1 and len(b.cells) == 1 and a.cells[0] in samplers and b.cells[0] in samplers:
        counts = stats.paired_units(samplers[a.cells[0]], samplers[b.cells[0]])
        if counts is not None:
            out["mcnemar_p"] = stats.mcnemar_exact(*counts)
    return out


def _row(model, budget, label, bench, p: _Pooled, vanilla: _Pooled | None, best: _Pooled | None, samplers) -> dict:
    row = {"model": model, "budget_label": budget, "label": label, "benchmark": bench, "score": p.point,
           "n_seeds": len(p.seed_points) or None}
    if p.draws is not None:
        row["lo"], row["hi"] = stats.interval(p.draws)
    if len(p.seed_points) > 1:
        row["seed_mean"], row["seed_sd"] = stats.mean_sd(p.seed_points)
    if best is not None:
        row["is_best"] = p is best
    for name, other in (("vanilla", vanilla), ("best", best)):
        if other is None or other is p:
            continue
        diff = _difference(p, other, samplers)
        row.update({f"vs_{name}_{k}": v for k, v in diff.items()})
        if "lo" in diff:
            row[f"tie_{name}"] = not distinguishable(diff)
    if best is p:
        row["tie_best"] = True
    return row


def distinguishable(diff: dict) -> bool:
    """The paired 95 % interval of the difference excludes 0 and, where McNemar's exact test applies
    (0/1 units), it rejects at 5 % too: the bootstrap alone is too confident when few units differ."""
    if diff["lo"] <= 0.0 <= diff["hi"]:
        return False
    return diff.get("mcnemar_p") is None or diff["mcnemar_p"] < 1 - stats.LEVEL
