"""The grid spec a run directory belongs to, so that one directory never mixes two specs.

RUN_DIR/run.json::

    {"format": 1,
     "latency": {the latency settings in force: warmup, subset, repeats, interleave, max_load},
     "execution": {the execution in force: mode, max_shared_mb},
     "specs": [{"grid_file": "experiments/sweep.yaml",
                "grid": {the grid as run: YAML plus --limit / --smoke / --executor overrides},
                "cli": {"limit": null, "smoke": false, "smoke_checkpoint": null, "executor": null},
                "latency": {...},
                "cells": [{"id": "...", <cell spec as run>}, ...]}, ...]}

The first spec made the run; ``--extend`` appends others. A rerun is accepted when its spec
(its cells and latency settings) equals a recorded one: it resumes. Anything else is refused
with the differences and the ways out. ``--extend`` adds cells at new places only (a new
strategy, budget, seed, model or benchmark): a cell at the place of one the run has (same
model, strategy, budget, benchmark and seed) with other settings (a limit, params, generation)
is refused, since a report could not tell the two apart.
"""
from __future__ import annotations

import json
from dataclasses import asdict

from ..errors import ConfigError
from .latency import LatencyPlan
from .spec import canonical_json, cell_from_dict

FORMAT = 1
SHOWN = 6  # differences listed per refusal before "... and N more"

# what a cell varies in, as (name, details) for the messages
AXES = (
    ("models", lambda c: (c.model.label, {k: v for k, v in asdict(c.model).items() if k != "label"})),
    ("strategies", lambda c: (c.label or c.strategy, {"strategy": c.strategy, **c.params})),
    ("budgets", lambda c: (c.budget_label(), {})),
    ("benchmarks", lambda c: (c.benchmark, dict(c.benchmark_options))),
    ("seeds", lambda c: (str(c.seed), {})),
    ("generation", lambda c: ("", dict(c.generation))),
    ("batch_size", lambda c: (str(c.batch_size), {})),
)


def spec_record(grid, cli: dict) -> dict:
    """What run.json keeps of one invocation: the grid as run, the CLI overrides, every cell."""
    return {"grid_file": str(grid.path) if grid.path else None, "grid": grid.raw, "cli": cli,
            "latency": grid.latency.as_dict(), "execution": grid.execution.as_dict(),
            "cells": [{"id": c.id, **c.as_dict()} for c in grid.cells]}


def bind(store, spec: dict, *, extend: bool = False) -> None:
    """Claim the run directory for ``spec``: accept a resume, record an extension, refuse anything else.

    Raises ConfigError before anything in the directory is written.
    """
    record = store.read_run()
    new = _cells(spec)
    if record is None:  # a new directory, or one written before run.json existed
        old = [cs.cell for cs in store.cells()] if (store.root / "cells").is_dir() else []
        if {c.id for c in old} <= {c.id for c in new}:
            store.write_run({"format": FORMAT, "latency": spec["latency"], **_execution(spec), "specs": [spec]})
            return
        specs = [{"grid_file": None, "grid": None, "cli": None, "latency": None,
                  "cells": [{"id": c.id, **c.as_dict()} for c in old]}]
    else:
        specs = record["specs"]
        if any(_same(spec, s) for s in specs):
            # a resume: max_load and the execution (which never changes results) may have changed
            store.write_run({**record, "latency": spec["latency"], **_execution(spec)})
            return
        old = store.planned_cells()
    where = str(store.root)
    collisions = _collisions(old, new)
    latency = _latency_lines(specs[-1]["latency"], spec["latency"], where)
    if not extend:
        lines = differences(old, new, where) + latency + _cli_lines(specs[-1]["cli"], spec["cli"], where)
        if collisions:
            out = f"Write this run to another directory with --out DIR (--extend cannot add it: {_why(collisions)})."
        elif latency:
            out = "Write this run to another directory with --out DIR (--extend needs the same latency settings)."
        else:
            out = "Write this run to another directory with --out DIR, or add its cells to that run with --extend."
        raise ConfigError(f"{where} holds a run of another grid spec, and a run directory holds one spec so that "
                          f"its report never mixes cells of two:\n" + _listing(lines) + "\n" + out)
    if collisions:
        lines = [f"{b.describe()}: " + "; ".join(differences([a], [b], where)) for a, b in collisions]
        raise ConfigError(f"--extend cannot add this run to {where}: {_why(collisions)}:\n" + _listing(lines)
                          + "\nWrite this run to another directory with --out DIR.")
    if latency:
        raise ConfigError(f"--extend cannot add this run to {where}: its latency settings differ, and cells timed "
                          f"differently would be compared in one report:\n" + _listing(latency)
                          + "\nWrite this run to another directory with --out DIR.")
    store.write_run({"format": FORMAT, "latency": spec["latency"], **_execution(spec), "specs": specs + [spec]})


def _execution(spec: dict) -> dict:
    """run.json's ``execution``: how this invocation runs the cells (it does not change their results)."""
    return {"execution": spec["execution"]} if spec.get("execution") else {}


def differences(old: list, new: list, where: str) -> list[str]:
    """One line per axis (models, strategies, budgets, ...) on which two sets of cells differ."""
    lines = []
    for axis, describe in AXES:
        old_items, new_items = _items(old, describe), _items(new, describe)
        removed = [v for k, v in old_items.items() if k not in new_items]
        added = [v for k, v in new_items.items() if k not in old_items]
        if not removed and not added:
            continue
        shown_old, shown_new = _render(removed, added)
        if removed and added:
            lines.append(f"{axis}: {shown_old} in {where}; {shown_new} in this run")
        elif added:
            lines.append(f"{axis}: this run adds {shown_new}")
        else:
            lines.append(f"{axis}: this run leaves out {shown_old}")
    old_ids, new_ids = {c.id for c in old}, {c.id for c in new}
    if not lines and old_ids != new_ids:
        lines.append(f"cells: {len(new_ids - old_ids)} of this run's cells are not in {where}, "
                     f"{len(old_ids - new_ids)} of its cells are not in this run")
    return lines


def _cells(spec: dict) -> list:
    return [cell_from_dict(d) for d in spec["cells"]]


def _same(a: dict, b: dict) -> bool:
    if a.get("latency") is None or b.get("latency") is None:
        return False
    return ({d["id"] for d in a["cells"]} == {d["id"] for d in b["cells"]}
            and LatencyPlan(**a["latency"]).key() == LatencyPlan(**b["latency"]).key())


def _place(cell) -> tuple:
    """Where a cell sits in a report."""
    return cell.model.label, cell.label or cell.strategy, cell.budget_label(), cell.benchmark, cell.seed


def _collisions(old: list, new: list) -> list[tuple]:
    at = {_place(c): c for c in old}
    return [(at[_place(c)], c) for c in new if _place(c) in at and at[_place(c)].id != c.id]


def _why(collisions: list) -> str:
    return (f"{len(collisions)} of its cells sit where the run has a cell with other settings (same model, "
            f"strategy, budget, benchmark and seed), and a report would mix the two")


def _items(cells: list, describe) -> dict:
    out = {}
    for cell in cells:
        name, details = describe(cell)
        out.setdefault(canonical_json([name, details]), (name, details))
    return out


def _render(removed: list, added: list) -> tuple[str, str]:
    """Each item by name, plus the details that differ from an item of the same name on the other side."""
    varying: dict[str, set] = {}
    for name in {n for n, _ in removed} & {n for n, _ in added}:
        group = [d for n, d in removed + added if n == name]
        keys = set().union(*group)
        varying[name] = {k for k in keys if len({canonical_json(d.get(k)) for d in group}) > 1}

    def show(items):
        parts = []
        for name, details in items:
            keys = sorted(varying.get(name) or ([] if name else details))
            inner = ", ".join(f"{k}={_value(details.get(k))}" for k in keys)
            parts.append(f"{name}({inner})" if name and inner else name or inner)
        more = f" and {len(parts) - SHOWN} more" if len(parts) > SHOWN else ""
        return ", ".join(parts[:SHOWN]) + more

    return show(removed), show(added)


def _value(v) -> str:
    return "none" if v is None else v if isinstance(v, str) else json.dumps(v, default=str)


def _latency_lines(old: dict | None, new: dict, where: str) -> list[str]:
    if old is None:
        return []
    old_key, new_key = LatencyPlan(**old).key(), LatencyPlan(**new).key()
    return [f"latency.{k}: {_value(old_key[k])} in {where}; {_value(new_key[k])} in this run"
            for k in new_key if old_key[k] != new_key[k]]


def _cli_lines(old: dict | None, new: dict, where: str) -> list[str]:
    """The command-line options behind the difference (context for the lines above)."""
    if old is None:
        return []

    def shown(v):
        return "not given" if v in (None, False) else "given" if v is True else str(v)

    return [f"--{k.replace('_', '-')}: {shown(old.get(k))} in {where}; {shown(new.get(k))} in this run"
            for k in ("limit", "smoke", "smoke_checkpoint") if old.get(k) != new.get(k)]


def _listing(lines: list[str]) -> str:
    more = [f"... and {len(lines) - SHOWN} more"] if len(lines) > SHOWN else []
    return "\n".join("  " + line for line in lines[:SHOWN] + more)
