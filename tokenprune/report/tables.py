"""The paper-style comparison table: budgets as row groups, strategies as rows, benchmarks as columns."""
from __future__ import annotations

import math

import pandas as pd

from .document import Cell, Table, markdown_table
from .style import score_colour
from .uncertainty import AVG


def _mean(values):
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


STAT_COLUMNS = ("lo", "hi", "tie_best", "tie_vanilla", "seed_sd")  # per score column, from the uncertainty


def paper_table(df: pd.DataFrame, model: str, label_order: list[str] | None = None, unc=None) -> pd.DataFrame:
    """One row per (budget group, strategy label): benchmark scores, Avg. % of vanilla, retained tokens.

    Seeds are averaged. Cells that did not finish show as None (rendered as a dash)
    and are excluded from the average, which then says how many benchmarks it covers.
    Budget groups run from the most retained tokens to the fewest; strategies follow
    ``label_order`` (the grid's order), then the alphabet. With ``unc`` (report.uncertainty),
    every score column ``c`` gets ``c__lo``/``c__hi`` (95 % interval), ``c__tie_best`` and
    ``c__tie_vanilla`` (not distinguishable from the best / from vanilla) and ``c__seed_sd``.
    """
    sub = df[df["model"] == model]
    benchmarks = sorted(sub["benchmark"].unique())
    rows = []
    rank = {label: i for i, label in enumerate(label_order or [])}
    pruned = sub[sub["strategy"] != "vanilla"]
    groups = [("all", sub[sub["strategy"] == "vanilla"])] + [
        (b, pruned[pruned["budget_label"] == b]) for b in budget_order(pruned)]
    for budget_label, part in groups:
        kept = _mean(part.get("tokens.kept_mean", pd.Series(dtype=float)).tolist())
        n_visual = _mean(part.get("tokens.n_visual_mean", pd.Series(dtype=float)).tolist())
        labels = sorted(part["label"].unique(), key=lambda lab: (rank.get(lab, len(rank)), lab))
        for label in labels:
            cells = part[part["label"] == label]
            row = {"budget": budget_label, "strategy": label, "retained": kept, "n_visual": n_visual}
            for bench in benchmarks:
                mine = cells[(cells["benchmark"] == bench) & (cells["status"] == "done")]
                row[bench] = _mean(mine["score"].tolist()) if not mine.empty else None
                row[f"{bench}__status"] = ("done" if not mine.empty else
                                           "failed" if (cells[cells["benchmark"] == bench]["status"] == "failed").any()
                                           else "missing")
            rel = _mean(cells[cells["status"] == "done"]["relative"].tolist())
            row["avg_relative"] = rel
            row["avg_over"] = int(cells[cells["status"] == "done"]["relative"].notna().sum())
            if unc is not None:
                for column, bench in [(b, b) for b in benchmarks] + [("avg_relative", AVG)]:
                    found = unc.lookup(model, budget_label, label, bench)
                    row.update({f"{column}__{k}": found.get(k) for k in STAT_COLUMNS})
            rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table.attrs["benchmarks"] = benchmarks
    return table


def budget_order(df: pd.DataFrame) -> list[str]:
    """Budget labels from the most retained tokens to the fewest (unknown counts last)."""
    kept = df.get("tokens.kept_mean", pd.Series(float("nan"), index=df.index)).astype(float)
    means = kept.groupby(df["budget_label"], sort=False).mean().fillna(-1.0)
    return sorted(means.index, key=lambda b: -means[b])


def budget_heading(budget: str, retained, n_visual) -> str:
    if budget == "all":
        return "Upper bound, all tokens (100%)"
    if retained is None:
        return f"Retain {budget}"
    pruned = f" (↓{100 * (1 - retained / n_visual):.1f}%)" if n_visual else ""
    return f"Retain {retained:.0f} tokens{pruned}"


def best_per_column(table: pd.DataFrame) -> set[tuple[int, str]]:
    """(row index, column) of the entries shown in bold, within each budget group (vanilla excluded): the
    best score and every score not distinguishable from it where intervals exist, else the top value only."""
    best = set()
    columns = list(table.attrs.get("benchmarks", [])) + ["avg_relative"]
    for _, group in table[table["budget"] != "all"].groupby("budget", sort=False):
        for col in columns:
            vals = group[col].dropna()
            ties = group.get(f"{col}__tie_best")
            if len(vals) < 2:
                continue
            if ties is not None and ties.notna().any():
                best.update((i, col) for i in vals.index if _true(ties[i]))
            else:
                top = vals.max()
                best.update((i, col) for i in vals.index if vals[i] == top)
    return best


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, digits=1):
    return "—" if _missing(value) else f"{value:.{digits}f}"


def _true(value) -> bool:
    return not _missing(value) and bool(value)


def entry_text(row, col: str) -> str:
    """``84.7 ±2.9``: the score and half the width of its 95 % interval; ``†`` when it is not distinguishable
    from vanilla; ``sd 1.2`` when seeds were pooled."""
    value = row[col]
    if _missing(value):
        return "—"
    text = _fmt(value) + ("%" if col == "avg_relative" else "")
    lo, hi = row.get(f"{col}__lo"), row.get(f"{col}__hi")
    if not _missing(lo) and not _missing(hi):
        text += f" ±{(hi - lo) / 2:.1f}"
    if _true(row.get(f"{col}__tie_vanilla")) and row["budget"] != "all":
        text += " †"
    sd = row.get(f"{col}__seed_sd")
    if not _missing(sd):
        text += f" sd {sd:.1f}"
    return text


def to_table(table: pd.DataFrame) -> Table | None:
    """The comparison table as a report table: missing cells as dashes, see :func:`best_per_column` for bold."""
    if table.empty:
        return None
    benches = table.attrs["benchmarks"]
    best = best_per_column(table)
    header = ["Method", *benches, "Avg."]
    rows = []
    for budget, group in table.groupby("budget", sort=False):
        first = group.iloc[0]
        rows.append([Cell(budget_heading(budget, first["retained"], first["n_visual"]), italic=True)]
                    + [""] * (len(header) - 1))
        for i, row in group.iterrows():
            cells = [row["strategy"]]
            for col in [*benches, "avg_relative"]:
                text = entry_text(row, col)
                if col != "avg_relative" and row.get(f"{col}__status") == "failed":
                    text = "failed"
                cells.append(Cell(text, bold=(i, col) in best))
            rows.append(cells)
    return Table(header, rows)


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub markdown of :func:`to_table`."""
    block = to_table(table)
    return markdown_table(block) if block is not None else "_no finished cells_\n"


def in_table_order(df: pd.DataFrame, label_order: list[str] | None = None) -> pd.DataFrame:
    """Rows ordered as the comparison table orders them: model, most retained tokens first, the grid's
    strategy order, benchmark."""
    if df.empty:
        return df
    rank = {label: i for i, label in enumerate(label_order or [])}
    kept = df.get("tokens.kept_mean", pd.Series(float("nan"), index=df.index)).astype(float)
    key = pd.DataFrame({
        "model": df["model"].astype(str),
        "vanilla": df["strategy"] != "vanilla",
        "kept": -kept.groupby([df["model"], df["budget_label"]]).transform("mean").fillna(-1.0),
        "label": [rank.get(lab, len(rank)) for lab in df["label"]],
        "name": df["label"].astype(str),
        "benchmark": df["benchmark"].astype(str),
    }, index=df.index)
    return df.loc[key.sort_values(list(key.columns), kind="stable").index]


def breakdown_columns(df: pd.DataFrame, benchmark: str) -> list[str]:
    """The ``field/group`` breakdowns a benchmark reported (benchmarks name them so: ``type/count``),
    present in at least one finished cell of that benchmark."""
    done = df[(df["benchmark"] == benchmark) & (df["status"] == "done")]
    return [c for c in df.columns if c.startswith("benchmark_metrics.") and "/" in c and done[c].notna().any()]


def breakdown_table(df: pd.DataFrame, benchmark: str, label_order: list[str] | None = None) -> pd.DataFrame:
    """One row per finished cell of ``benchmark`` (seeds averaged): its score per breakdown group."""
    cols = breakdown_columns(df, benchmark)
    done = df[(df["benchmark"] == benchmark) & (df["status"] == "done")]
    if not cols or done.empty:
        return pd.DataFrame()
    keys = ["model", "label", "budget_label", "strategy", "benchmark"]
    means = done[keys + ["score", "tokens.kept_mean"] + cols].groupby(keys, sort=False, dropna=False).mean().reset_index()
    table = in_table_order(means, label_order)
    return table[["model", "label", "budget_label", "score"] + cols].rename(
        columns=lambda c: c.removeprefix("benchmark_metrics."))


def breakdown_heatmap(parts: pd.DataFrame) -> Table:
    """:func:`breakdown_table` as strategy x group, rows grouped by model and budget; in the HTML each entry
    is shaded from red (low) to green (high): on 0-100 when every value is a percentage, else per column."""
    groups = [c for c in parts.columns if c not in ("model", "label", "budget_label")]
    values = parts[groups].apply(pd.to_numeric, errors="coerce")
    percent = bool(((values >= 0) & (values <= 100) | values.isna()).all().all())
    span = {c: (0.0, 100.0) if percent else (values[c].min(), values[c].max()) for c in groups}
    models = parts["model"].nunique() > 1
    rows = []
    for (model, budget), part in parts.groupby(["model", "budget_label"], sort=False):
        heading = ("all tokens" if budget == "all" else f"budget {budget}") + (f" · {model}" if models else "")
        rows.append([Cell(heading, italic=True)] + [""] * len(groups))
        for i, r in part.iterrows():
            rows.append([r["label"]] + [Cell(_fmt(values.at[i, c]), colour=score_colour(values.at[i, c], *span[c]))
                                        for c in groups])
    return Table(["strategy", *groups], rows)
