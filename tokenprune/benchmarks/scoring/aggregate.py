"""Helpers for ``Benchmark.aggregate``: percentages and per-group breakdowns."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable


def percent(values: Iterable[float]) -> float:
    """100 x the mean of 0/1 (or fractional) scores; 0 for no values."""
    values = list(values)
    return 100.0 * sum(values) / len(values) if values else 0.0


def breakdown(records: list[dict], key: Callable[[dict], object], value: Callable[[dict], float],
              prefix: str) -> dict[str, float]:
    """``{f"{prefix}/{group}": percent}`` over the records grouped by ``key``
    (records whose key is None are left out)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for record in records:
        group = key(record)
        if group is not None:
            groups[str(group)].append(value(record))
    return {f"{prefix}/{group}": percent(vals) for group, vals in sorted(groups.items())}


def accuracy_with_breakdowns(records: list[dict], *meta_keys: str, field: str = "correct") -> dict[str, float]:
    """``accuracy`` (%) of ``score[field]`` plus one breakdown per meta key."""
    out = {"accuracy": percent(float(r["score"][field]) for r in records)}
    for name in meta_keys:
        out.update(breakdown(records, lambda r, n=name: r["meta"].get(n), lambda r: float(r["score"][field]), name))
    return out
