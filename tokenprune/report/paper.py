"""Published numbers beside ours: the grid's `paper:` section (tokenprune.runner.paper_spec), with the difference."""
from __future__ import annotations

import math

import pandas as pd

from ..runner.paper_spec import PaperSpec, load_paper
from .document import Table, Text
from .tables import _missing

AVG = "Avg. % of vanilla"
COLUMNS = ["model", "strategy", "budget", "metric", "paper", "ours", "diff", "source"]


def comparison(df: pd.DataFrame, paper) -> pd.DataFrame:
    """Rows (model, strategy label, budget, metric) with paper, ours, ours - paper and where the paper's number is from.

    ``paper`` is a PaperSpec or the section as stored with a run. Ours is the mean over seeds; an Avg. is
    ours only when every benchmark of the paper's average has a finished cell (otherwise it would average
    over a different set).
    """
    spec = paper if isinstance(paper, PaperSpec) else load_paper(paper, source="paper section of the run's grid")
    done = df[df["status"] == "done"]
    rows = []
    for model in sorted(done["model"].dropna().unique()) or [None]:  # None: nothing finished, the paper alone
        mine = done[done["model"] == model]
        for row in spec.rows:
            cells = mine[(mine["label"] == row.label) & (mine["budget_label"] == row.budget)]
            common = {"model": model or "—", "strategy": row.label, "budget": row.budget, "source": row.source_text()}
            if row.avg_relative is not None:
                per_bench = [_mean(cells[cells["benchmark"] == b]["relative"]) for b in spec.metrics]
                ours = sum(per_bench) / len(per_bench) if per_bench and None not in per_bench else None
                rows.append({**common, "metric": f"{AVG} ({len(spec.metrics)} benchmarks)",
                             "paper": row.avg_relative, "ours": ours})
            for bench, value in row.scores.items():
                ours = _mean(cells[cells["benchmark"] == bench]["score"])
                rows.append({**common, "metric": f"{bench} ({spec.metrics[bench]})", "paper": value, "ours": ours})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["diff"] = [None if o is None or _missing(o) else o - p for o, p in zip(table["ours"], table["paper"])]
    return table


def _mean(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.astype(float).mean()) if not values.empty else None


def blocks(table: pd.DataFrame, source: str) -> list:
    """The source line and the table, for the report."""
    def fmt(v):
        return "—" if _missing(v) else f"{v:.2f}"

    text = Text(f"Published: {source}. Source of each row: Table N = that table of the paper; secondary = quoted "
                "by a summary of the paper, not read in the paper's own table; derived = computed from published "
                "numbers (how is noted). Ours is a dash where the grid has no finished cell to compare.")
    rows = [[r.model, r.strategy, r.budget, r.metric, fmt(r.paper), fmt(r.ours), fmt(r.diff), r.source]
            for r in table.itertuples()]
    return [text, Table(["model", "strategy", "budget", "metric", "paper", "ours", "ours − paper", "source"], rows,
                        text_columns=4)]
