"""How sure a score is: a seeded bootstrap over a benchmark's own resampling units, paired
differences between cells scored on the same samples, and McNemar's exact test.

A score is whatever the benchmark's ``aggregate`` returns for its main metric (POPE's F1, MME's
totals, MMBench's circular accuracy...), so every resample is scored by that same function. Where
the metric is the mean of per-unit values (accuracy, OCRBench, MMBench's circular groups), which is
checked on the data, each unit's value is computed once and a resample is a gathered mean; a
benchmark whose metric is not a mean may give it as a function of per-unit counts
(``Benchmark.resample_counts``/``metric_from_counts``, checked against the aggregate); other
metrics call ``aggregate`` once per resample.

Cells whose units are the same set draw the same resamples (one index matrix per set, seeded from
the set), so their bootstrap values are paired: a difference of two cells' values is a paired
bootstrap of the difference, and ratios to the vanilla cell are paired too.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from typing import Callable, Hashable, Iterator

import numpy as np

LEVEL = 0.95  # two-sided confidence level of every interval
RESAMPLES = 2000
_CHUNK = 250  # resamples drawn at a time (bounds memory on benchmarks with many samples)


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap values."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (binomial test of b vs c at 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def mean_sd(values) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    vals = [float(v) for v in values]
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


class Resampler:
    """One cell's records grouped into resampling units, and its metric on any resample of the units.

    ``aggregate(records) -> float`` scores records; ``unit(record)`` names the record's unit;
    ``copy(record, k)`` relabels a record drawn a k-th extra time, so the aggregate counts it as
    a unit of its own (MME refuses an image with four answers, for instance); ``outcome(record)``
    is its 0/1 correctness where it has one. ``counts(unit_records)`` and ``from_counts(totals)``,
    where a benchmark gives them, express a metric that is not a mean through per-unit counts
    (POPE's true and false positives, MME's per-category pair scores): a resample sums them.
    """

    def __init__(self, records: list[dict], aggregate: Callable[[list[dict]], float],
                 unit: Callable[[dict], Hashable], copy: Callable[[dict, int], dict],
                 outcome: Callable[[dict], float | None] = lambda record: None,
                 counts: Callable[[list[dict]], dict | None] | None = None,
                 from_counts: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None):
        groups: dict = defaultdict(list)
        for record in records:
            groups[unit(record)].append(record)
        self.keys = sorted(groups, key=repr)
        self.units = [groups[k] for k in self.keys]
        self.aggregate, self.copy = aggregate, copy
        self.point = float(aggregate(records))
        self.contributions = self._contributions()
        self.counts = self._counts(counts, from_counts) if self.contributions is None and counts else None
        # right or wrong per unit (every record 0/1, every unit worth 0 or one same value): McNemar applies
        levels = set() if self.contributions is None else set(np.unique(self.contributions).tolist())
        self.binary = (bool(levels) and all(outcome(r) in (0.0, 1.0) for r in records)
                       and (len(levels) == 1 or (len(levels) == 2 and 0.0 in levels)))

    def _contributions(self) -> np.ndarray | None:
        """Per-unit values when the metric is their mean (on the whole set and on two resamples), else None."""
        try:
            values = np.array([self.aggregate(recs) for recs in self.units], dtype=float)
        except Exception:  # noqa: BLE001 - an aggregate that needs more than one unit is simply not a mean
            return None
        if not np.isfinite(values).all() or not _same(float(values.mean()), self.point):
            return None
        check = np.random.default_rng(12345).integers(0, len(values), size=(2, len(values)))
        for row in check:
            if not _same(float(values[row].mean()), self._call(row)):
                return None
        return values

    def _counts(self, counts, from_counts) -> tuple[list[str], np.ndarray, Callable] | None:
        """Per-unit counts (units x names) when ``from_counts`` of their sums reproduces the aggregate."""
        try:
            rows = [counts(recs) for recs in self.units]
            if any(r is None for r in rows):
                return None
            names = sorted({k for r in rows for k in r})
            table = np.array([[r.get(k, 0.0) for k in names] for r in rows], dtype=float)
            check = np.random.default_rng(12345).integers(0, len(rows), size=(2, len(rows)))
            found = (names, table, from_counts)
            expected = [self.point] + [self._call(row) for row in check]
            got = self._from_counts(found, np.vstack([np.arange(len(rows))[None], check]))
        except Exception:  # noqa: BLE001 - counts that do not fit this data: call the aggregate instead
            return None
        return found if all(_same(float(g), e) for g, e in zip(got, expected)) else None

    @staticmethod
    def _from_counts(found, index: np.ndarray) -> np.ndarray:
        names, table, from_counts = found
        rows, n = index.shape
        # how often each unit is drawn in each resample, then the summed counts: (rows x units) @ (units x names)
        weights = np.bincount((np.arange(rows)[:, None] * n + index).ravel(), minlength=rows * n).reshape(rows, n)
        totals = weights @ table
        return np.asarray(from_counts({k: totals[:, j] for j, k in enumerate(names)}), dtype=float)

    def _call(self, row: np.ndarray) -> float:
        seen: Counter = Counter()
        records = []
        for j in row.tolist():
            k = seen[j]
            seen[j] += 1
            records.extend(self.units[j] if k == 0 else (self.copy(r, k) for r in self.units[j]))
        return float(self.aggregate(records))

    def values(self, index: np.ndarray) -> np.ndarray:
        """The metric on each row of ``index`` (rows of unit positions, drawn with replacement)."""
        if self.contributions is not None:
            return self.contributions[index].mean(axis=1)
        if self.counts is not None:
            return self._from_counts(self.counts, index)
        return np.array([self._call(row) for row in index])

    @property
    def method(self) -> str:
        """How a resample is scored: a mean of per-unit values, sums of per-unit counts, or the aggregate."""
        if self.contributions is not None:
            return "mean of units"
        return "unit counts" if self.counts is not None else "aggregate per resample"


def index_chunks(n_units: int, resamples: int, seed: int, salt: str) -> Iterator[np.ndarray]:
    """Rows of unit positions drawn with replacement, ``_CHUNK`` rows at a time, seeded by ``seed`` and ``salt``
    (the unit set), so a report is reproducible and cells on the same units draw the same resamples."""
    rng = np.random.default_rng([seed, int(hashlib.sha256(salt.encode()).hexdigest()[:15], 16)])
    done = 0
    while done < resamples:
        size = min(_CHUNK, resamples - done)
        yield rng.integers(0, n_units, size=(size, n_units))
        done += size


def bootstrap(resamplers: list[Resampler], resamples: int = RESAMPLES, seed: int = 0) -> list[np.ndarray]:
    """Bootstrap values of every resampler, paired across those with the same units."""
    out: list[np.ndarray | None] = [None] * len(resamplers)
    by_units: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(resamplers):
        by_units[tuple(r.keys)].append(i)
    for keys, members in by_units.items():
        parts = defaultdict(list)
        for block in index_chunks(len(keys), resamples, seed, repr(keys)):
            for i in members:
                parts[i].append(resamplers[i].values(block))
        for i in members:
            out[i] = np.concatenate(parts[i])
    return out


def paired_units(a: Resampler, b: Resampler) -> tuple[int, int] | None:
    """Discordant units (a right and b wrong, a wrong and b right) when both are binary on the same units."""
    if a.keys != b.keys or not (a.binary and b.binary):
        return None
    right_a, right_b = a.contributions > 0, b.contributions > 0
    return int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
