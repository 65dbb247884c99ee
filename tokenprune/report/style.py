"""One colour and one marker per strategy label, the same in every figure of a report.

vanilla, random and uniform (the references) keep theirs in every report; the other labels take
colours and markers in the grid's strategy order, so a grid draws the same way each time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from matplotlib import colormaps

RESERVED = {"vanilla": ("#000000", "*"), "random": ("#8a8a8a", "X"), "uniform": ("#8c564b", "s")}
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#637939", "#7b4173", "#843c39", "#3182bd", "#e6550d")
MARKERS = ("o", "D", "^", "v", "P", "<", ">", "h", "p", "d", "8", "H")


@dataclass(frozen=True)
class Look:
    colour: str
    marker: str


class Styles:
    def __init__(self, labels: list[str], strategy_of: dict[str, str]):
        """``labels`` in the grid's order; ``strategy_of`` maps a label to its strategy name."""
        self._looks: dict[str, Look] = {}
        taken = set()
        for label in labels:  # a reference's first label keeps the reserved look
            strategy = strategy_of.get(label, label)
            if strategy in RESERVED and strategy not in taken:
                self._looks[label] = Look(*RESERVED[strategy])
                taken.add(strategy)
        others = [label for label in labels if label not in self._looks]
        for i, label in enumerate(others):
            self._looks[label] = Look(COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)])
        self.order = list(labels)

    def __getitem__(self, label: str) -> Look:
        if label not in self._looks:  # a label the grid does not list (e.g. an older cell): next free look
            i = len(self._looks)
            self._looks[label] = Look(COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)])
            self.order.append(label)
        return self._looks[label]

    def ordered(self, labels) -> list[str]:
        present = set(labels)
        for label in sorted(present - set(self.order)):
            self[label]
        return [label for label in self.order if label in present]


def score_colour(value, low: float, high: float) -> str | None:
    """A light red-yellow-green shade for ``value`` between ``low`` and ``high`` (None when unknown)."""
    if value is None or math.isnan(value) or not high > low:
        return None
    t = min(max((value - low) / (high - low), 0.0), 1.0)
    r, g, b, _ = colormaps["RdYlGn"](0.1 + 0.8 * t)
    # mixed with white so the number on it stays readable
    return "#{:02x}{:02x}{:02x}".format(*(int(255 * (0.45 + 0.55 * c)) for c in (r, g, b)))
