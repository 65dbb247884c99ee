"""Published numbers beside ours: the grid's `paper:` section, with the difference."""
from __future__ import annotations

import math

import pandas as pd

from .document import Table, Text


def _budget_key(value) -> str:
    """Budgets in the paper section are counts (64), ratios (0.111) or 'all'; match the cells' budget labels."""
    if value == "all":
        return "all"
    if isinstance(value, float) and value < 1:
        return f"{value:.1%}"
    return str(int(value))


def comparison(df: pd.DataFrame, paper: dict) -> pd.DataFrame:
    """Rows (strategy label, budget, metric) with paper, ours and ours - paper."""
    rows = []
    done = df[df["status"] == "done"]
    for label, per_budget in (paper.get("avg_relative") or {}).items():
        for budget, value in per_budget.items():
            mine = done[(done["label"] == label) & (done["budget_label"] == _budget_key(budget))]["relative"].dropna()
            ours = float(mine.mean()) if not mine.empty else None
            rows.append({"strategy": label, "budget": _budget_key(budget), "metric": "Avg. % of vanilla",
                         "paper": value, "ours": ours, "diff": None if ours is None else ours - value})
    for label, per_budget in (paper.get("scores") or {}).items():
        for budget, scores in per_budget.items():
            for bench, value in scores.items():
                mine = done[(done["label"] == label) & (done["benchmark"] == bench)
                            & (done["budget_label"] == _budget_key(budget))]["score"].dropna()
                ours = float(mine.mean()) if not mine.empty else None
                rows.append({"strategy": label, "budget": _budget_key(budget), "metric": bench, "paper": value,
                             "ours": ours, "diff": None if ours is None else ours - value})
    return pd.DataFrame(rows)


def blocks(table: pd.DataFrame, source: str) -> list:
    """The source line and the table, for the report."""
    def fmt(v):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

    rows = [[r.strategy, r.budget, r.metric, fmt(r.paper), fmt(r.ours), fmt(r.diff)] for r in table.itertuples()]
    return [Text(f"Published: {source}"),
            Table(["strategy", "budget", "metric", "paper", "ours", "ours − paper"], rows)]
