"""Seaborn figures of a run: accuracy vs tokens, FLOPs and latency (with Pareto fronts), overhead, per type."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .tables import breakdown_columns  # noqa: E402


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pareto_front(points: pd.DataFrame, cost: str, value: str) -> pd.DataFrame:
    """Points not beaten by a cheaper-or-equal point with a higher value (sort by cost, running max)."""
    ordered = points.dropna(subset=[cost, value]).sort_values([cost, value], ascending=[True, False])
    keep, best = [], float("-inf")
    for idx, row in ordered.iterrows():
        if row[value] > best:
            keep.append(idx)
            best = row[value]
    return ordered.loc[keep]


def _done(df):
    return df[(df["status"] == "done") & df["score"].notna()].copy()


def accuracy_vs_tokens(df: pd.DataFrame) -> bytes | None:
    d = _done(df)
    d = d[d["strategy"] != "vanilla"]
    if d.empty or "tokens.kept_mean" not in d:
        return None
    grid = sns.relplot(data=d, x="tokens.kept_mean", y="score", hue="label", style="label", col="benchmark",
                       row="model", kind="line", marker="o", facet_kws={"sharey": False}, height=3.2, aspect=1.2)
    vanilla = _done(df)[lambda x: x["strategy"] == "vanilla"]
    for (model, bench), ax in grid.axes_dict.items():
        v = vanilla[(vanilla["model"] == model) & (vanilla["benchmark"] == bench)]["score"]
        if not v.empty:
            ax.axhline(v.mean(), color="grey", linestyle="--", linewidth=1, label="vanilla")
        ax.set_xlabel("retained visual tokens")
    grid.set_ylabels("score")
    return png(grid.figure)


def relative_vs_tokens(df: pd.DataFrame) -> bytes | None:
    d = _done(df)
    d = d[(d["strategy"] != "vanilla") & d["relative"].notna()]
    if d.empty:
        return None
    avg = d.groupby(["model", "label", "budget_label"], as_index=False).agg(
        relative=("relative", "mean"), kept=("tokens.kept_mean", "mean"))
    grid = sns.relplot(data=avg, x="kept", y="relative", hue="label", style="label", col="model", kind="line",
                       marker="o", height=3.4, aspect=1.3)
    for ax in grid.axes.flat:
        ax.axhline(100, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("retained visual tokens")
    grid.set_ylabels("% of vanilla (avg over benchmarks)")
    return png(grid.figure)


def pareto(df: pd.DataFrame, cost: str, cost_label: str) -> bytes | None:
    d = _done(df)
    if cost not in d or d[cost].isna().all():
        return None
    d = d[d["relative"].notna()] if d["relative"].notna().any() else d
    value = "relative" if d["relative"].notna().any() else "score"
    avg = d.groupby(["model", "label", "budget_label"], as_index=False).agg(**{value: (value, "mean"),
                                                                                cost: (cost, "mean")})
    models = list(avg["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = avg[avg["model"] == model]
        sns.scatterplot(data=part, x=cost, y=value, hue="label", style="label", ax=ax, s=60)
        front = pareto_front(part, cost, value)
        ax.step(front[cost], front[value], where="post", color="black", linewidth=1, label="Pareto front")
        ax.set_title(model)
        ax.set_xlabel(cost_label)
        ax.set_ylabel("% of vanilla" if value == "relative" else "score")
        ax.legend(fontsize=7)
    return png(fig)


def selection_overhead(df: pd.DataFrame) -> bytes | None:
    col = "latency.select_s_median"
    d = _done(df)
    if col not in d or d[col].isna().all():
        return None
    d = d[d[col].notna()].copy()
    d["select_ms"] = d[col] * 1e3
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    sns.barplot(data=d, x="select_ms", y="label", hue="budget_label", ax=ax, errorbar=None)
    ax.set_xlabel("selection time per sample, median (ms)")
    ax.set_ylabel("")
    return png(fig)


def per_type(df: pd.DataFrame) -> bytes | None:
    """Score per breakdown group (``benchmark_metrics.field/group`` columns, e.g. shapes' ``type/count``)
    at the smallest budget, where strategies differ most."""
    d = _done(df)
    type_cols = sorted({c for bench in d["benchmark"].unique() for c in breakdown_columns(d, bench)})
    if not type_cols:
        return None
    pruned = d[d["strategy"] != "vanilla"]
    if not pruned.empty and "tokens.kept_mean" in pruned:
        fewest = pruned.groupby("budget_label")["tokens.kept_mean"].mean().idxmin()
        d = pd.concat([d[d["strategy"] == "vanilla"], pruned[pruned["budget_label"] == fewest]])
    long = d.melt(id_vars=["model", "label", "budget_label", "benchmark"], value_vars=type_cols,
                  var_name="group", value_name="group_score").dropna(subset=["group_score"])
    long["group"] = long["group"].str.replace("benchmark_metrics.", "", regex=False)
    grid = sns.catplot(data=long, x="group_score", y="group", hue="label", col="benchmark", row="model", kind="bar",
                       height=3.4 + 0.15 * long["group"].nunique(), aspect=1.1, errorbar=None, sharey=False)
    grid.set_axis_labels("score", "")
    return png(grid.figure)
