"""The report's statistics in words and tables: how to read the intervals, every paired comparison,
and the spread over seeds."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .document import Bullets, Section, Table, Text
from .tables import budget_order
from .uncertainty import AVG, Uncertainty


def table_notes(unc: Uncertainty, model: str) -> list:
    """How to read the table's intervals and marks, and which of the model's cells have none."""
    mine = [p for p in unc.problems if p.startswith(f"{model} | ")]
    problems = [Text("No interval for these cells (their scores stand):"), Bullets(mine)] if mine else []
    return [_caption(unc)] + problems


def _caption(unc: Uncertainty) -> Text:
    return Text(
        f"Each entry: the score ± half the width of its 95 % bootstrap interval ({unc.resamples} resamples of "
        "each benchmark's resampling unit: a sample, or the group a benchmark scores together, such as MME's "
        "image pairs and MMBench's circular variants; Avg.: of the mean ratio to vanilla). **Bold**: the best "
        "strategy at its budget and every strategy not distinguishable from it: the paired 95 % interval of "
        "the difference to the best contains 0 or, where every unit is right or wrong, McNemar's exact p is "
        "0.05 or more. †: not distinguishable from vanilla in the same way. Each "
        "interval stands alone (no correction for the many comparisons); see Paired comparisons below.")


def _num(value, digits=1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}".replace("-", "−")


def _with_interval(row: dict, value: str, lo: str, hi: str) -> str:
    if row.get(lo) is None or (isinstance(row.get(lo), float) and math.isnan(row[lo])):
        return _num(row.get(value))
    return f"{_num(row.get(value))} [{_num(row[lo])}, {_num(row[hi])}]"


def _p(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _verdict(row: dict) -> str:
    if row.get("is_best") is True:
        return "best"
    tie = row.get("tie_best")
    if tie is None or (isinstance(tie, float) and math.isnan(tie)):
        return "—"
    return "≈ best" if tie else "below best"


def _ordered(part: pd.DataFrame, df: pd.DataFrame, label_order: list[str]) -> pd.DataFrame:
    """Comparison rows by model, budget (most tokens first), benchmark (the Avg. last), the grid's strategy order."""
    rank = {label: i for i, label in enumerate(label_order)}
    budgets = {m: budget_order(df[df["model"] == m]) for m in part["model"].unique()}

    def key(r):
        order = budgets[r["model"]]
        return (r["model"], order.index(r["budget_label"]) if r["budget_label"] in order else len(order),
                r["benchmark"] == AVG, r["benchmark"], rank.get(r["label"], len(rank)), r["label"])

    keys = {i: key(r) for i, r in part.iterrows()}
    return part.loc[sorted(part.index, key=keys.get)]


def comparison_sections(unc: Uncertainty, df: pd.DataFrame, label_order: list[str], out: Path) -> list[Section]:
    """One table per model: every strategy against vanilla and against the best at its budget."""
    comp = unc.comparisons
    if comp.empty:
        return []
    comp.to_csv(out / "comparisons.csv", index=False)
    sections = []
    for model in sorted(comp["model"].unique()):
        part = comp[(comp["model"] == model) & (comp["label"] != "vanilla")]
        if part.loc[part["benchmark"] != AVG, "benchmark"].nunique() == 1:  # the Avg. would repeat it (in %)
            part = part[part["benchmark"] != AVG]
        part = _ordered(part, df, label_order)
        rows = []
        for r in part.to_dict("records"):
            rows.append([r["budget_label"], r["label"], r["benchmark"], _with_interval(r, "score", "lo", "hi"),
                         _with_interval(r, "vs_vanilla_diff", "vs_vanilla_lo", "vs_vanilla_hi"),
                         _p(r.get("vs_vanilla_mcnemar_p")),
                         _with_interval(r, "vs_best_diff", "vs_best_lo", "vs_best_hi"),
                         _p(r.get("vs_best_mcnemar_p")), _verdict(r)])
        text = Text("Score with its 95 % interval; differences (this strategy − vanilla, this − the best at its "
                    "budget) with their paired 95 % bootstrap intervals, on the same resamples of the same "
                    "samples, and McNemar's exact p where every unit is right or wrong (single seeds; — otherwise). "
                    "≈ best: the interval of the difference to the best contains 0 or p ≥ 0.05. Avg. rows (several "
                    "benchmarks): % of vanilla, averaged over them. All in comparisons.csv.")
        table = Table(["budget", "strategy", "benchmark", "score [95 % CI]", "− vanilla [95 % CI]", "p vs vanilla",
                       "− best [95 % CI]", "p vs best", "vs best"], rows, text_columns=3)
        sections.append(Section(f"Paired comparisons: {model}", [text, table]))
    return sections


def seed_section(unc: Uncertainty, df: pd.DataFrame, label_order: list[str]) -> Section | None:
    """Mean ± sd over seeds where a grid ran several; otherwise a note when a strategy draws at random."""
    comp = unc.comparisons
    multi = comp[comp["n_seeds"].fillna(1) > 1] if "n_seeds" in comp else comp.iloc[0:0]
    if not multi.empty:
        multi = _ordered(multi, df, label_order)
        rows = [[r["model"], r["budget_label"], r["label"], r["benchmark"], str(int(r["n_seeds"])),
                 _num(r.get("seed_mean")), _num(r.get("seed_sd"))] for r in multi.to_dict("records")]
        text = Text("A grid's seeds seed the strategies: they change what a strategy that draws at random keeps, "
                    "on the same samples. The comparison table shows the mean over seeds (± its bootstrap "
                    "interval over samples) and `sd`, the standard deviation of the score across seeds.")
        return Section("Across seeds", [text, Table(["model", "budget", "strategy", "benchmark", "seeds", "mean",
                                                     "sd"], rows, text_columns=4)])
    random_like = sorted(set(df.loc[df["strategy"] == "random", "label"].dropna()))
    if random_like:
        return Section("Across seeds", [Text(
            f"{', '.join(random_like)} draws its tokens at random from the cell's seed, and this run has one seed "
            "per cell: its interval covers the sample noise only, not the luck of one draw. Run the grid with "
            "`seeds: [0, 1, 2]` for the mean ± sd across draws.")])
    return None
