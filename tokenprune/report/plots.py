"""Figures of a run: accuracy and % of vanilla vs retained tokens (95 % intervals), accuracy vs FLOPs
and vs latency with Pareto fronts, and the selection overhead (median and interquartile range).

Every figure draws a strategy label with the same colour and marker (report.style), at least
9 inches (about 1000 px) wide, with ticks at the budgets the run used.
"""
from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from .environment import under_load  # noqa: E402
from .style import Styles  # noqa: E402
from .tables import budget_order  # noqa: E402
from .uncertainty import AVG  # noqa: E402

WIDTH = 9.5  # inches; at 110 dpi about 1050 px
DPI = 110
HOLLOW = "hollow: timed under load"


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
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


def _interval(unc, model, budget, label, bench) -> tuple[float, float]:
    found = unc.lookup(model, budget, label, bench) if unc is not None else {}
    lo, hi = found.get("lo"), found.get("hi")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return float("nan"), float("nan")
    return lo, hi


def _points(df: pd.DataFrame, value: str, by: list[str], unc, bench_of) -> pd.DataFrame:
    """Seeds (and, for ``relative``, benchmarks) averaged; ``lo``/``hi`` from the report's intervals."""
    d = _done(df)
    d = d[(d["strategy"] != "vanilla") & d[value].notna()]
    if d.empty or "tokens.kept_mean" not in d:
        return pd.DataFrame()
    pts = d.groupby(by, as_index=False, sort=False).agg(value=(value, "mean"), kept=("tokens.kept_mean", "mean"))
    bounds = [_interval(unc, r["model"], r["budget_label"], r["label"], bench_of(r)) for _, r in pts.iterrows()]
    pts["lo"], pts["hi"] = [b[0] for b in bounds], [b[1] for b in bounds]
    return pts


def _budget_ticks(ax, xs):
    ticks = sorted({round(float(x), 1) for x in xs if not math.isnan(x)})
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlabel("retained visual tokens (mean per sample)")


def _curves(ax, pts: pd.DataFrame, styles: Styles):
    """One line per label, with its 95 % intervals as error bars (labels nudged apart so bars do not overlap)."""
    labels = styles.ordered(pts["label"].unique())
    span = (pts["kept"].max() - pts["kept"].min()) or max(pts["kept"].max(), 1.0)
    for i, label in enumerate(labels):
        part = pts[pts["label"] == label].sort_values("kept")
        look = styles[label]
        shift = (i - (len(labels) - 1) / 2) * span * 0.006
        yerr = [(part["value"] - part["lo"]).clip(lower=0).fillna(0), (part["hi"] - part["value"]).clip(lower=0).fillna(0)]
        ax.errorbar(part["kept"] + shift, part["value"], yerr=yerr, color=look.colour, marker=look.marker,
                    markersize=6, linewidth=1.4, elinewidth=0.9, capsize=2, label=label)
    _budget_ticks(ax, pts["kept"])
    ax.grid(alpha=0.25)


def _reference(ax, y: float, text: str, lo=float("nan"), hi=float("nan")):
    """The vanilla line, labelled on the plot itself (and its interval as a band)."""
    ax.axhline(y, color="black", linestyle="--", linewidth=1)
    if not (math.isnan(lo) or math.isnan(hi)):
        ax.axhspan(lo, hi, color="black", alpha=0.07, linewidth=0)
    ax.annotate(text, xy=(0.0, y), xycoords=("axes fraction", "data"), xytext=(4, 3), textcoords="offset points",
                ha="left", va="bottom", fontsize=9)


def _log_if_wide(ax, values: pd.Series, ratio: float = 20.0):
    """A log axis when the values span more than ``ratio`` (timings of fast and slow strategies)."""
    positive = pd.to_numeric(values, errors="coerce")
    positive = positive[positive > 0]
    if not positive.empty and positive.max() / positive.min() > ratio:
        ax.set_xscale("log")


def _facets(n: int, height: float = 4.2):
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _legend(fig, axes):
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    # strategies first (in the order they were drawn), then the front and the notes
    labels.sort(key=lambda lab: lab in ("Pareto front", HOLLOW))
    fig.legend([handles[lab] for lab in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9,
               frameon=False)


def accuracy_vs_tokens(df: pd.DataFrame, styles: Styles, unc=None) -> bytes | None:
    pts = _points(df, "score", ["model", "benchmark", "label", "budget_label"], unc, lambda r: r["benchmark"])
    if pts.empty:
        return None
    panels = list(pts.groupby(["model", "benchmark"], sort=True))
    fig, axes = _facets(len(panels), height=5.4)
    vanilla = _done(df)[lambda x: x["strategy"] == "vanilla"]
    for ax, ((model, bench), part) in zip(axes, panels):
        _curves(ax, part, styles)
        v = vanilla[(vanilla["model"] == model) & (vanilla["benchmark"] == bench)]["score"]
        if not v.empty:
            lo, hi = _interval(unc, model, "all", "vanilla", bench)
            _reference(ax, v.mean(), f"vanilla (all tokens) {v.mean():.1f}", lo, hi)
        ax.set_title(f"{model} · {bench}")
        ax.set_ylabel("score (95 % interval)")
    _legend(fig, axes)
    return png(fig)


def relative_vs_tokens(df: pd.DataFrame, styles: Styles, unc=None) -> bytes | None:
    pts = _points(df, "relative", ["model", "label", "budget_label"], unc, lambda r: AVG)
    if pts.empty:
        return None
    panels = list(pts.groupby("model", sort=True))
    fig, axes = _facets(len(panels), height=5.4)
    for ax, (model, part) in zip(axes, panels):
        _curves(ax, part, styles)
        _reference(ax, 100.0, "vanilla = 100 %")
        ax.set_title(model)
        ax.set_ylabel("% of vanilla, mean over benchmarks (95 % interval)")
    _legend(fig, axes)
    return png(fig)


def pareto(df: pd.DataFrame, cost: str, cost_label: str, styles: Styles, spread: tuple[str, str] | None = None,
           unc=None, engineering: bool = False) -> bytes | None:
    """Score (% of vanilla where there is a vanilla cell) against a cost, one point per label and budget.

    ``spread`` names the columns of the cost's 25th and 75th percentiles (drawn as horizontal bars);
    cells timed under load are drawn hollow; ``engineering``: cost ticks as 50M, 1.5G...
    """
    d = _done(df)
    if cost not in d or d[cost].isna().all():
        return None
    value = "relative" if d["relative"].notna().any() else "score"
    d = d[d[value].notna() & d[cost].notna()].assign(_loaded=under_load(d))
    cols = [c for c in (spread or ()) if c in d]
    agg = {value: (value, "mean"), cost: (cost, "mean"), "loaded": ("_loaded", "any"),
           **{c: (c, "mean") for c in cols}}
    pts = d.groupby(["model", "label", "budget_label"], as_index=False, sort=False).agg(
        **{k.replace(".", "_"): v for k, v in agg.items()})
    x, y = cost.replace(".", "_"), value
    panels = list(pts.groupby("model", sort=True))
    fig, axes = _facets(len(panels), height=4.6)
    for ax, (model, part) in zip(axes, panels):
        for label in styles.ordered(part["label"].unique()):
            mine = part[part["label"] == label]
            look = styles[label]
            for i, p in mine.iterrows():
                lo, hi = _interval(unc, model, p["budget_label"], label, AVG if value == "relative" else None)
                xerr = None
                if len(cols) == 2:
                    a, b = p[cols[0].replace(".", "_")], p[cols[1].replace(".", "_")]
                    xerr = [[max(p[x] - a, 0)], [max(b - p[x], 0)]] if not (pd.isna(a) or pd.isna(b)) else None
                yerr = None if math.isnan(lo) else [[max(p[y] - lo, 0)], [max(hi - p[y], 0)]]
                ax.errorbar([p[x]], [p[y]], xerr=xerr, yerr=yerr, color=look.colour, marker=look.marker,
                            markersize=11 if look.marker == "*" else 7, elinewidth=0.8, capsize=2, linestyle="none",
                            markerfacecolor="white" if p["loaded"] else look.colour,
                            label=label if i == mine.index[0] else None)
        front = pareto_front(part, x, y)
        ax.step(front[x], front[y], where="post", color="black", linewidth=1, alpha=0.6, label="Pareto front")
        _log_if_wide(ax, part[x])
        if engineering:
            ax.xaxis.set_major_formatter(EngFormatter())
        ax.set_title(model)
        ax.set_xlabel(cost_label)
        ax.set_ylabel("% of vanilla (95 % interval)" if value == "relative" else "score")
        ax.grid(alpha=0.25)
    if pts["loaded"].any():
        axes[0].plot([], [], linestyle="none", marker="o", markerfacecolor="white", color="grey",
                     label=HOLLOW)
    _legend(fig, axes)
    return png(fig)


def selection_overhead(df: pd.DataFrame, styles: Styles) -> bytes | None:
    """Median selection time per sample with its interquartile range, one panel per budget."""
    col = "latency.select_s_median"
    d = _done(df)
    if col not in d or d[col].isna().all():
        return None
    d = d[d[col].notna() & (d["strategy"] != "vanilla")].assign(_loaded=under_load(d))
    if d.empty:
        return None
    budgets = budget_order(d)
    labels = styles.ordered(d["label"].unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(max(WIDTH, 3.2 * len(budgets)), 0.32 * len(labels) + 1.6),
                             sharey=True, squeeze=False)
    values = pd.to_numeric(d[col], errors="coerce") * 1e3
    for ax, budget in zip(axes[0], budgets):
        part = d[d["budget_label"] == budget]
        for row, label in enumerate(labels):
            mine = part[part["label"] == label]
            if mine.empty:
                continue
            med = float(pd.to_numeric(mine[col]).mean()) * 1e3
            q = [pd.to_numeric(mine.get(f"latency.select_s_{k}"), errors="coerce").mean() * 1e3
                 for k in ("p25", "p75")]
            xerr = None if any(math.isnan(v) for v in q) else [[max(med - q[0], 0)], [max(q[1] - med, 0)]]
            look = styles[label]
            ax.errorbar([med], [row], xerr=xerr, color=look.colour, marker=look.marker, markersize=7, capsize=3,
                        markerfacecolor="white" if mine["_loaded"].any() else look.colour, linestyle="none")
        ax.set_title(f"budget {budget}")
        ax.set_xlabel("selection time per sample (ms)")
        _log_if_wide(ax, values)
        ax.grid(alpha=0.25, axis="x")
    axes[0][0].set_yticks(range(len(labels)))
    axes[0][0].set_yticklabels(labels)
    axes[0][0].invert_yaxis()
    return png(fig)
