"""Everything a report reads from a run directory, loaded once: cells, records, the grid, intervals."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..runner.collect import collect
from ..runner.spec import canonical_json
from ..runner.store import RunStore
from . import uncertainty
from .environment import add_latency_spread
from .pictures import cell_diagnostics

DIAGNOSTICS = ("edge_tokens", "nn_distance", "redundancy")


@dataclass
class RunData:
    run_dir: Path
    name: str
    df: pd.DataFrame  # collect()'s rows, the diagnostics, the intervals, and a row per missing cell
    records: dict[str, list[dict]]
    grid: dict  # the grid as the run recorded it (grid.json)
    label_order: list[str] = field(default_factory=list)
    unc: uncertainty.Uncertainty | None = None
    invocations: list[dict] = field(default_factory=list)  # one per `tokenprune run` into the directory


def grid_raw(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "grid.json").read_text())
    except (OSError, ValueError):
        return {}


def expected_cells(run_dir: Path, grid: dict, source: str):
    """Cells the grid asked for (so ones never started show as missing); None if the grid cannot be re-read."""
    from ..runner.grid import parse_grid

    planned = RunStore(run_dir).planned_cells()  # the cells as run (smoke changes included)
    if planned is not None:
        return planned
    try:
        return parse_grid(grid, source=source).cells
    except Exception:  # noqa: BLE001 - an unreadable grid only loses the 'missing' rows
        return None


def _without_params(cell) -> str:
    spec = cell.as_dict()
    spec.pop("params")
    return canonical_json(spec)


def add_missing(df: pd.DataFrame, expected, recorded) -> pd.DataFrame:
    """A row per expected cell that the run directory does not hold.

    ``--smoke`` runs rewrite some strategy parameters after the grid is read (prune layers past the
    smoke model's depth), which changes those cells' ids: an expected cell also counts as present when
    a recorded cell that matched no expected id has the same spec apart from its parameters.
    """
    if not expected:
        return df
    ids = {c.id for c in expected}
    spare = Counter(_without_params(c) for c in recorded if c.id not in ids)
    absent = []
    have = set(df["cell"]) if not df.empty else set()
    for c in expected:
        if c.id in have:
            continue
        key = _without_params(c)
        if spare[key] > 0:
            spare[key] -= 1
            continue
        absent.append(c)
    extra = [{
        "cell": c.id, "model": c.model.label, "strategy": c.strategy, "label": c.label or c.strategy,
        "budget": c.budget, "keep_ratio": c.keep_ratio, "budget_label": c.budget_label(), "benchmark": c.benchmark,
        "seed": c.seed, "status": "missing", "score": None, "relative": None,
    } for c in absent]
    return pd.concat([df, pd.DataFrame(extra)], ignore_index=True) if extra else df


def load(run_dir, with_intervals: bool = True) -> RunData:
    run_dir = Path(run_dir)
    df = collect(run_dir)
    if df.empty:
        df = pd.DataFrame(columns=["cell", "model", "strategy", "label", "budget_label", "benchmark", "status",
                                   "score", "relative"])
    store = RunStore(run_dir)
    stores = {cs.cell.id: cs for cs in store.cells()}
    records = {cid: cs.records() for cid, cs in stores.items()}
    diag = [cell_diagnostics(records[c]) if c in records else {} for c in df["cell"]]
    for key in DIAGNOSTICS:
        df[f"diagnostics.{key}"] = [d.get(key) for d in diag]
    df = add_latency_spread(df, records)
    unc = None
    if with_intervals and not df.empty:
        unc = uncertainty.compute(df, records)
        df = df.merge(unc.cells, on="cell", how="left")
    grid = grid_raw(run_dir)
    expected = expected_cells(run_dir, grid, str(run_dir / "grid.json"))
    df = add_missing(df, expected, [cs.cell for cs in stores.values()])
    label_order = list(dict.fromkeys(c.label or c.strategy for c in expected or []))
    return RunData(run_dir, run_dir.resolve().name, df, records, grid, label_order, unc,
                   store.invocations())
