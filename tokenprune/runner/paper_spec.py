"""The `paper:` section of a grid: published numbers to print beside ours, typed and checked at load time.

    paper:
      source: VLM-Pruner (arXiv 2512.02700)          # the work the numbers come from
      metrics: {mme: total, pope: f1}                 # the paper's columns: benchmark -> metric it reports
      rows:
        - {label: vanilla, budget: all, source: Table 8, scores: {mme: 1862, pope: 85.9}}
        - {label: default, budget: 64, source: Table 8, avg_relative: 95.30, scores: {mme: 1752, pope: 82.2}}

A row is one strategy label of the grid at one of its budgets (``all`` for vanilla; counts and keep
ratios are named as the cells name them: 64, 11.1%). Its ``source`` says where the numbers are:
``Table N`` of the paper, ``secondary`` (quoted by a summary of the paper, not read in the paper's own
table) or ``derived`` (computed from published numbers; ``note`` says how). ``avg_relative`` is the
paper's Avg. column: the mean over the ``metrics`` benchmarks of score / unpruned score, in percent.

Each named metric must be the benchmark's main metric: that is the number a cell reports as its score
and the one the Avg. column is computed from, so a named metric the report would not compare is an
error, not a silently different number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import registry
from ..errors import ConfigError
from .spec import budget_label

SECTION_KEYS = ("source", "metrics", "rows")
ROW_KEYS = ("label", "budget", "source", "avg_relative", "scores", "note")
SOURCE_RULE = ('"Table N" (a table of the paper), "secondary" (quoted by a summary of the paper) '
               'or "derived" (computed from published numbers; say how in note)')
_TABLE = re.compile(r"Table \d+")


@dataclass(frozen=True)
class PaperRow:
    label: str  # a strategy label of the grid
    budget: str  # a budget label as the cells write it: "all", "64", "11.1%"
    source: str  # "Table N", "secondary" or "derived"
    avg_relative: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def source_text(self) -> str:
        return f"{self.source}: {self.note}" if self.note else self.source


@dataclass(frozen=True)
class PaperSpec:
    source: str
    metrics: dict[str, str]  # benchmark -> the metric the paper reports (the benchmark's main metric)
    rows: tuple[PaperRow, ...]


@dataclass(frozen=True)
class GridAxes:
    """What a paper row may name: the grid's strategy labels (vanilla ones run at 'all'), budgets, benchmarks."""

    vanilla_labels: frozenset[str]
    pruned_labels: frozenset[str]
    budgets: tuple[str, ...]
    benchmarks: frozenset[str]


def load_paper(value, source: str = "<grid>") -> PaperSpec:
    """The section on its own (a stored run's grid.json): checked for form, not against a grid."""
    problems: list[str] = []
    spec = parse_paper(value, lambda where, msg: problems.append(f"{where}: {msg}"))
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the paper section:\n  " + "\n  ".join(problems))
    return spec


def parse_paper(value, add, axes: GridAxes | None = None) -> PaperSpec | None:
    """Parse and check the section; every problem goes to ``add(where, message)``. With ``axes`` the rows
    must name labels, budgets and benchmarks of the grid."""
    if not isinstance(value, dict):
        add("paper", f"must be a mapping with keys {', '.join(SECTION_KEYS)}")
        return None
    for key in value:
        if key not in SECTION_KEYS:
            add(f"paper.{key}", f"unknown key; allowed: {', '.join(SECTION_KEYS)}")
    source = value.get("source")
    if not isinstance(source, str) or not source.strip():
        add("paper.source", "the work the numbers come from is required (e.g. the paper's title or arXiv id)")
    metrics = _metrics(value.get("metrics"), add, axes)
    rows_value = value.get("rows")
    if not isinstance(rows_value, list) or not rows_value:
        add("paper.rows", "must be a non-empty list of {label, budget, source, avg_relative, scores, note}")
        rows_value = []
    rows, seen = [], set()
    for i, entry in enumerate(rows_value):
        row = _row(entry, f"paper.rows[{i}]", metrics, add, axes)
        if row is None:
            continue
        if (row.label, row.budget) in seen:
            add(f"paper.rows[{i}]", f"a second row for {row.label!r} at budget {row.budget}")
        seen.add((row.label, row.budget))
        rows.append(row)
    return PaperSpec(source=str(source), metrics=metrics, rows=tuple(rows))


def _metrics(value, add, axes) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        add("paper.metrics", "must map each benchmark of the paper's table to the metric it reports (e.g. mme: total)")
        return {}
    known = registry.names("benchmarks")
    out = {}
    for bench, metric in value.items():
        where = f"paper.metrics.{bench}"
        if bench not in known:
            add(where, f"unknown benchmark; registered benchmarks: {', '.join(known)}")
            continue
        if axes is not None and bench not in axes.benchmarks:
            add(where, f"not a benchmark of the grid; its benchmarks: {', '.join(sorted(axes.benchmarks))}")
        main = registry.lookup("benchmarks", bench).main_metric
        if metric != main:
            add(where, f"{metric!r} is not what a cell of {bench!r} reports: its score (the number compared, "
                       f"and the one the Avg. column uses) is its main metric {main!r}")
        out[str(bench)] = main
    return out


def _row(entry, where, metrics, add, axes) -> PaperRow | None:
    if not isinstance(entry, dict):
        add(where, f"must be a mapping with keys {', '.join(ROW_KEYS)}")
        return None
    for key in entry:
        if key not in ROW_KEYS:
            add(f"{where}.{key}", f"unknown key; allowed: {', '.join(ROW_KEYS)}")
    label = entry.get("label")
    if not isinstance(label, str) or not label:
        add(f"{where}.label", "the strategy label of the grid this row compares with is required")
        return None
    budget = _budget(entry.get("budget"), f"{where}.budget", add)
    source = entry.get("source")
    note = entry.get("note", "")
    if not isinstance(note, str):
        add(f"{where}.note", "must be text")
        note = ""
    if not isinstance(source, str) or not (source in ("secondary", "derived") or _TABLE.fullmatch(source)):
        add(f"{where}.source", f"{source!r}: must be {SOURCE_RULE}")
    elif source == "derived" and not note.strip():
        add(f"{where}.note", "a derived number must say how it was derived")
    avg = entry.get("avg_relative")
    if avg is not None and not _is_number(avg):
        add(f"{where}.avg_relative", f"{avg!r} must be a number (percent of the unpruned model)")
        avg = None
    if avg is not None and not metrics:
        add(f"{where}.avg_relative", "paper.metrics must name the benchmarks the average is taken over")
    scores = _scores(entry.get("scores"), f"{where}.scores", metrics, add)
    if avg is None and not scores:
        add(where, "gives no number: add avg_relative or scores")
    if axes is not None and budget is not None:
        _check_cell(label, budget, where, add, axes)
    if budget is None:
        return None
    return PaperRow(label=label, budget=budget, source=str(source), avg_relative=None if avg is None else float(avg),
                    scores=scores, note=note.strip())


def _scores(value, where, metrics, add) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        add(where, "must map benchmark -> published score")
        return {}
    out = {}
    for bench, score in value.items():
        if bench not in metrics:
            add(f"{where}.{bench}", "not in paper.metrics; name the metric the paper reports for it there")
        elif not _is_number(score):
            add(f"{where}.{bench}", f"{score!r} must be a number")
        else:
            out[str(bench)] = float(score)
    return out


def _budget(value, where, add) -> str | None:
    """The cells' label of a budget written as 64, 0.111, 'all' or a label already ('11.1%', '64')."""
    if value == "all":
        return "all"
    number = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else (int(text) if text.isdigit() else float(text))
        except ValueError:
            number = None
    if isinstance(number, int) and not isinstance(number, bool) and number >= 1:
        return budget_label(number, None)
    if isinstance(number, float) and 0 < number <= 1:
        return budget_label(None, number)
    add(where, f"{value!r}: use 'all' (vanilla), a token count (64) or a keep ratio in (0, 1] (0.111)")
    return None


def _check_cell(label, budget, where, add, axes: GridAxes):
    if label in axes.vanilla_labels:
        if budget != "all":
            add(f"{where}.budget", f"{label!r} keeps every token: its budget is 'all', not {budget}")
    elif label in axes.pruned_labels:
        if budget not in axes.budgets:
            add(f"{where}.budget", f"{budget} is not a budget of the grid; its budgets: {', '.join(axes.budgets)}")
    else:
        labels = sorted(axes.vanilla_labels | axes.pruned_labels)
        add(f"{where}.label", f"{label!r} is not a strategy label of the grid; its labels: {', '.join(labels)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
