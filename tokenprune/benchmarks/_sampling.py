"""Seeded sub-sampling for quick runs that keeps groups (MME pairs, MMBench
circular variants) whole and the dataset's order."""
from __future__ import annotations

import random
from typing import Hashable, Sequence


def subset_indices(n_rows: int, limit: int | None, seed: int,
                   groups: Sequence[Hashable] | None = None) -> list[int]:
    """Row indices to evaluate, ascending (the dataset's order).

    Without ``limit`` every row. Without ``groups`` a seeded random choice of
    ``limit`` rows. With ``groups`` (one key per row), whole groups are drawn
    in a seeded random order until at least ``limit`` rows are taken, so the
    subset may exceed ``limit`` by less than one group.
    """
    if limit is None or limit >= n_rows:
        return list(range(n_rows))
    rng = random.Random(seed)
    if groups is None:
        return sorted(rng.sample(range(n_rows), limit))
    members: dict[Hashable, list[int]] = {}
    for index, key in enumerate(groups):
        members.setdefault(key, []).append(index)
    keys = list(members)  # first-appearance order, so the draw is deterministic
    rng.shuffle(keys)
    chosen: list[int] = []
    for key in keys:
        if len(chosen) >= limit:
            break
        chosen.extend(members[key])
    return sorted(chosen)
