"""What the timings were measured under: the environment block, the spread of each cell's timings,
and a warning when cells were timed on a busy host."""
from __future__ import annotations

import math

import pandas as pd

from .. import timing
from ..runner.execute import SHARED_SOURCE
from .document import Bullets, Section, Table, Text

TIMED = ("prefill_s", "select_s")  # the timings the report plots
ENV_FIELDS = (("device", "device"), ("device_name", "device name"), ("dtype", "dtype"),
              ("attn_implementation", "attention"), ("cpu_threads", "torch threads"), ("torch", "torch"),
              ("transformers", "transformers"), ("tokenprune", "tokenprune"), ("python", "python"), ("cpu_count", "CPUs"))


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def add_latency_spread(df: pd.DataFrame, records: dict[str, list[dict]]) -> pd.DataFrame:
    """``latency.{key}_p25/_median/_p75`` for every timed cell: as the run recorded them, else from the
    per-sample times in samples.jsonl (warm-up samples left out), as runs before the quartiles did."""
    df = df.copy()
    for key in TIMED:
        for q in ("p25", "median", "p75"):
            col = f"latency.{key}_{q}"
            if col not in df:
                df[col] = None
            df[col] = df[col].astype(object)
        for i, row in df.iterrows():
            if _present(row[f"latency.{key}_p25"]) or row.get("status") != "done":
                continue
            times = [(r.get("timings") or {}).get(key) for r in records.get(row["cell"], []) if not r.get("warmup")]
            times = [t for t in times if t is not None]
            if times:
                for q, p in (("p25", 25), ("median", 50), ("p75", 75)):
                    df.at[i, f"latency.{key}_{q}"] = timing.percentile(times, p)
    return df


def shared_timings(df: pd.DataFrame) -> pd.Series:
    """Cells whose latency is the accuracy pass of a sample-major run: each cell's per-sample times leave out
    the inputs, vision and layers another cell computed for it, so they are not comparable across cells."""
    return df.get("latency.source", pd.Series(None, index=df.index, dtype=object)) == SHARED_SOURCE


def comparable_latency(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the prefill / decode / total times of shared_timings() cells blanked (select times stay:
    every cell runs its own selection)."""
    shared = shared_timings(df)
    if not shared.any():
        return df
    df = df.copy()
    for col in [c for c in df.columns if c.startswith("latency.") and not c.startswith("latency.select_s")]:
        if col not in ("latency.source", "latency.repeats", "latency.latency_samples"):
            df.loc[shared, col] = None
    return df


def under_load(df: pd.DataFrame) -> pd.Series:
    """Cells the runner flagged as timed while the host was busier than its threshold (False when not recorded)."""
    col = df.get("environment.timed_under_load", pd.Series(False, index=df.index))
    return col.map(lambda v: bool(v) if _present(v) else False)


def _values(series: pd.Series) -> str:
    """The value every cell shares, or each value with its number of cells."""
    # a column with gaps turns recorded integers (cpu_count) into floats: print them as recorded
    vals = [("not recorded" if not _present(v) else
             str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)) for v in series]
    if not vals or set(vals) == {"not recorded"}:
        return "not recorded"
    counts = pd.Series(vals).value_counts()
    if len(counts) == 1:
        return counts.index[0]
    return ", ".join(f"{v} ({n} cells)" for v, n in counts.items())


def _spread(df: pd.DataFrame, column: str) -> str:
    values = pd.to_numeric(df.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
    if values.empty:
        return "not recorded"
    return f"{values.min():.2f} – {values.max():.2f} (median {values.median():.2f})"


def run_times(invocations: list[dict]) -> str:
    """Each `tokenprune run` into the directory: its wall time and what it ran."""
    if not invocations:
        return "not recorded"

    def one(i):
        failed = f", {i['failed']} failed" if i.get("failed") else ""
        return f"{timing.duration(i['wall_s'])} ({i.get('done', 0)} cells run, {i.get('skipped', 0)} already done{failed})"

    return "; ".join(one(i) for i in invocations)


def environment_section(df: pd.DataFrame, invocations: list[dict] = ()) -> Section | None:
    done = df[df["status"] == "done"]
    if done.empty or not any(c.startswith("environment.") for c in done.columns):
        return None
    rows = [[label, _values(done.get(f"environment.{key}", pd.Series(dtype=object)))] for key, label in ENV_FIELDS]
    rows.append(["CPUs other processes used while timing", _spread(done, "environment.other_cpu_load")])
    rows.append(["load threshold (CPUs)", _values(done.get("environment.load_threshold", pd.Series(dtype=object)))])
    rows.append(["1-min load average when each cell's timings were recorded (ours included)",
                 _spread(done, "environment.load_average_1min")])
    flagged = under_load(done)
    recorded = done.get("environment.timed_under_load", pd.Series(dtype=object)).map(_present)
    rows.append(["cells timed under load", f"{int(flagged.sum())} of {len(done)}" if recorded.any()
                 else "not recorded (run predates the check)"])
    rows.append(["accuracy pass run", _values(done.get("environment.execution", pd.Series(dtype=object)))])
    rows.append(["latency measured on", _values(done.get("latency.source", pd.Series(dtype=object)))])
    rows.append(["timing repeats", _values(done.get("latency.repeats", pd.Series(dtype=object)))])
    rows.append(["wall time of each `tokenprune run` (accuracy pass and latency, report excluded)",
                 run_times(list(invocations))])
    text = ("Latency depends on the host as much as on the strategy: compare timings only between cells "
            "measured under the same conditions, on a quiet host. Accuracy pass run `cell`: cell after cell; "
            "`sample`: sample-major, the cells of a model sharing each batch's inputs, vision tower and layers "
            "below their prune layer (same answers). Latency measured on `latency-subset`: each cell's whole "
            "prefill and decode, cell by cell on a fixed subset; `samples`: the accuracy pass run cell by cell; "
            "`samples-shared`: the accuracy pass run sample-major, whose prefill and total times leave out the "
            "shared work, so the latency figure leaves them out (their selection times stay).")
    text = Text(text)
    return Section("Environment", [text, Table(["", "value"], rows)])


def _busy(other, threshold) -> str:
    used = f"other processes used {other:.2f} CPUs" if _present(other) else "other processes' use not recorded"
    return f"{used}, threshold {threshold:.2f}" if _present(threshold) else used


def load_warning_section(df: pd.DataFrame) -> Section | None:
    done = df[df["status"] == "done"]
    flagged = done[under_load(done)]
    if flagged.empty:
        return None
    lines = [f"{r['model']} | {r['label']} | {r['budget_label']} | {r['benchmark']}: "
             f"{_busy(r.get('environment.other_cpu_load'), r.get('environment.load_threshold'))}"
             for _, r in flagged.iterrows()]
    text = Text(f"**{len(flagged)} of {len(done)} cells were timed while the host was busy** (other processes "
                "kept more CPUs busy than the run's threshold, `latency.max_load`, while the cell was timed). Their latencies measure the host's other work as much as the "
                "strategy: they are drawn hollow in the latency figures. Rerun them on a quiet host to compare speed.")
    return Section("Warning: timed under load", [text, Bullets(lines)], level=2)
