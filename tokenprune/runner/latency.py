"""The latency subset: after the accuracy pass, a fixed subset of samples timed with repeats, cells interleaved.

Timing cells one after another measures each under whatever the host did at that moment;
interleaving them (for each repeat, for each sample, every cell in a rotating order) spreads
any drift evenly over the cells, so their latencies can be compared within one run. Each
timing is one cell's whole prefill + decode of one sample at batch size 1, with the decode
length fixed (min_new_tokens = max_new_tokens) so it does not depend on the strategy's answer.
Raw times go to cells/<id>/latency.jsonl (appended, so a killed phase resumes); when a cell's
times are complete its metrics.json gets them as ``latency`` (source "latency-subset").
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .. import timing


@dataclass(frozen=True)
class LatencyPlan:
    """The grid's ``latency:`` section."""

    KEYS = ("warmup", "subset", "repeats", "interleave", "max_load")

    warmup: int = 2  # accuracy pass: samples per cell left out of latency; subset: untimed runs per cell
    subset: int | None = None  # samples timed after the accuracy pass (None: latency from the accuracy pass)
    repeats: int = 3  # passes over the subset
    interleave: bool = True  # rotate over cells inside each (repeat, sample) rather than cell after cell
    max_load: float = 0.25  # share of the usable CPUs other processes may keep busy while we time

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> dict:
        """What the measured numbers depend on (the load threshold only flags them)."""
        return {k: v for k, v in self.as_dict().items() if k != "max_load"}


def fixed_subset(samples: list, n: int) -> list:
    """n samples spread evenly over the benchmark's (deterministic) order, so every part of it is timed."""
    if n >= len(samples):
        return list(samples)
    return [samples[i * len(samples) // n] for i in range(n)]


def schedule(cells: list, n_samples: int, repeats: int, interleave: bool) -> list[tuple]:
    """(repeat, sample index, slot, cell) in timing order; slot = the cell's place in its round (0 = first)."""
    if not interleave:
        return [(r, j, 0, cell) for cell in cells for r in range(repeats) for j in range(n_samples)]
    out = []
    for step in range(repeats * n_samples):
        r, j = divmod(step, n_samples)
        shift = step % len(cells)  # each round starts one cell later: nobody always goes first
        for slot, cell in enumerate(cells[shift:] + cells[:shift]):
            out.append((r, j, slot, cell))
    return out


def is_timed(cs) -> bool:
    metrics = cs.metrics()
    return bool(metrics) and (metrics.get("latency") or {}).get("source") == "latency-subset"


def warn_if_busy(max_load: float, what: str):
    """Look at the host before timing; say so on the console when other work would skew the numbers."""
    import sys

    other, measure = timing.host_busy()
    threshold = max_load * timing.usable_cpus()
    if other is not None and other > threshold:
        print(f"tokenprune: warning: the host is busy before {what}: other processes use {other:.2f} of "
              f"{timing.usable_cpus()} CPUs ({measure}; latency.max_load {max_load} allows {threshold:.2f}). "
              f"Cells timed under load are marked environment.timed_under_load.", file=sys.stderr, flush=True)


def time_subset(vlm, cells: list, store, plan: LatencyPlan, progress) -> dict[str, str]:
    """Time every cell (of one loaded model) whose subset is not timed yet; {cell id: 'done' | 'failed'}."""
    todo = [cell for cell in cells if not is_timed(store.cell(cell))]
    if not todo:
        return {}
    warn_if_busy(plan.max_load, f"timing the latency subset of {todo[0].model.label}")
    status = {}
    for bench_cells in _by_benchmark(todo).values():
        status.update(_time_benchmark(vlm, bench_cells, store, plan, progress))
    return status


def _by_benchmark(cells: list) -> dict:
    """Cells that share a benchmark (name and options) share a subset and are interleaved together."""
    groups: dict[str, list] = {}
    for cell in cells:
        groups.setdefault(cell.benchmark_key(), []).append(cell)
    return groups


def _time_benchmark(vlm, cells: list, store, plan: LatencyPlan, progress) -> dict[str, str]:
    from .. import registry
    from .execute import time_sample

    first = cells[0]
    bench = registry.lookup("benchmarks", first.benchmark)(**first.benchmark_options)
    subset = fixed_subset(list(bench.samples()), plan.subset)
    stores = {cell.id: store.cell(cell) for cell in cells}
    have = {cid: {(r["repeat"], r["sample"]) for r in cs.latency_records()} for cid, cs in stores.items()}
    failed: dict[str, str] = {}

    def attempt(cell, sample, meter):
        try:
            return time_sample(vlm, cell, bench, sample, meter)
        except Exception as exc:  # isolation: this cell's timing failed, the others go on
            stores[cell.id].fail(exc)
            failed[cell.id] = "failed"
            return None

    for w in range(plan.warmup):  # untimed: first calls pay for allocations and lazy set-up
        for cell in cells:
            if cell.id not in failed:
                attempt(cell, subset[w % len(subset)], timing.LoadMeter())
    order = schedule(cells, len(subset), plan.repeats, plan.interleave)
    bar = progress.latency(first, total=len(order))
    started = time.perf_counter()
    for r, j, slot, cell in order:
        sample = subset[j]
        if cell.id not in failed and (r, sample.id) not in have[cell.id]:
            meter = timing.LoadMeter()
            timings = attempt(cell, sample, meter)
            if timings is not None:
                stores[cell.id].append_latency({"repeat": r, "sample": sample.id, "slot": slot, "timings": timings,
                                                "span_s": meter.span_s, "other_cpu_s": meter.other_cpu_s})
        bar.update(1)
    bar.close()
    max_new = cells[0].generation.get("max_new_tokens", bench.max_new_tokens)
    for cell in cells:
        if cell.id not in failed:
            _finish(stores[cell.id], plan, len(subset), max_new)
    progress.note(f"latency subset of {first.model.label} on {first.benchmark}: {len(cells)} cells x "
                  f"{len(subset)} samples x {plan.repeats} repeats in {time.perf_counter() - started:.1f} s")
    return {cell.id: failed.get(cell.id, "done") for cell in cells}


def _finish(cs, plan: LatencyPlan, n_subset: int, new_tokens: int):
    """The cell's metrics take the subset's latency; the accuracy pass's stays beside it."""
    from . import metrics as cell_metrics

    records = cs.latency_records()
    metrics = cs.metrics()
    meter = timing.LoadMeter()
    for r in records:
        meter.add(r["span_s"], r["other_cpu_s"])
    env = metrics.get("environment") or {}
    previous = metrics.get("latency") or {}
    if previous.get("source", "samples") != "latency-subset":  # "samples", or "samples-shared" (sample-major)
        metrics["latency_accuracy_pass"] = {**previous, "other_cpu_load": env.get("other_cpu_load"),
                                            "timed_under_load": env.get("timed_under_load")}
    latency = cell_metrics.latency_stats(records, source="latency-subset", repeats=plan.repeats)
    latency.update(subset=n_subset, batch_size=1, new_tokens=new_tokens, interleave=plan.interleave)
    metrics["latency"] = latency
    model = cs.cell.model
    kept = {k: env[k] for k in ("input_builder", "execution") if k in env}  # how the accuracy pass ran
    metrics["environment"] = {**cell_metrics.environment(model.device, model.dtype, model.attn_implementation,
                                                         cell_metrics.host_load(meter, plan.max_load)), **kept}
    cs.write_metrics(metrics)
