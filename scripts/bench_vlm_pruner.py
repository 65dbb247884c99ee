"""Time vlm_pruner's selection on LLaVA-sized inputs and print medians (not a test).

python scripts/bench_vlm_pruner.py [--dk 4096 --d 4096] [--batches 1 8] [--threads 2] [--dtype float32] [--layout rows]

For each batch size it times, on the same smooth synthetic inputs:
  checked    Strategy.select (the contract's input/output checks included)
  core       the algorithm alone (select without the contract wrapper)
in the default mode and with faithful=true, and checks that both modes keep the
same tokens (they must whenever the official code fills the budget). ``--layout rows``
(default) hands over row-contiguous [B, N, D] tensors, as a model's hidden states are;
``--layout as-built`` keeps make_inputs' channel-major hidden tensor (what
scripts/bench_select.py times), which costs vlm_pruner one transposing copy. The official
code, timed side by side with ours, is in reports/bench/official_side_by_side.md.
On a shared machine the CPU time (summed over threads) is steadier than the wall time,
and with several threads OpenMP's default spin-waiting makes every parallel region wait
for a descheduled worker: there, compare --threads 1, or set OMP_WAIT_POLICY=PASSIVE.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import tokenprune as tp
from tokenprune.testing.inputs import make_inputs


def timings(fn, repeats: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each timed call."""
    wall, cpu = [], []
    for i in range(warmup + repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        if i >= warmup:
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    return wall, cpu


def summary(wall: list[float], cpu: list[float]) -> str:
    ts = sorted(wall)
    pick = lambda q: ts[int(q * (len(ts) - 1))] * 1e3  # noqa: E731
    return (f"median {statistics.median(ts) * 1e3:8.2f} ms  (p10 {pick(0.1):.2f}, p90 {pick(0.9):.2f}),"
            f"  CPU time {statistics.median(cpu) * 1e3:.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--h", type=int, default=24)
    ap.add_argument("--w", type=int, default=24)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--dk", type=int, default=4096)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--layout", choices=("rows", "as-built"), default="rows")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    default, faithful = tp.get_strategy("vlm_pruner"), tp.get_strategy("vlm_pruner", faithful=True)
    print(f"vlm_pruner N={a.h * a.w} -> {a.budget}, dk={a.dk}, d={a.d}, {a.dtype}, threads={a.threads}, "
          f"layout={a.layout}, torch {torch.__version__}, {a.repeats} timed calls after 3 warm-up")
    medians = {}
    for batch in a.batches:
        keys, _, coords, ctx = make_inputs(default, batch=batch, h=a.h, w=a.w, dk=a.dk, d=a.d)
        keys, ctx.hidden = keys.to(dtype), ctx.hidden.to(dtype)
        if a.layout == "rows":
            keys, ctx.hidden = keys.contiguous(), ctx.hidden.contiguous()
        same = torch.equal(default.select(keys, None, coords, a.budget, ctx).keep,
                           faithful.select(keys, None, coords, a.budget, ctx).keep)
        for label, strat in (("default", default), ("faithful", faithful)):
            for kind, fn in (("checked", strat.select), ("core", type(strat).select.unchecked)):
                call = (lambda: fn(keys, None, coords, a.budget, ctx)) if kind == "checked" else \
                       (lambda: fn(strat, keys, None, coords, a.budget, ctx))
                wall, cpu = timings(call, a.repeats)
                medians[(batch, label, kind)] = statistics.median(wall)
                print(f"  B={batch:<2} {label:8} {kind:7} {summary(wall, cpu)}")
        print(f"  B={batch:<2} default and faithful keep the same tokens: {same}")
    if 1 in a.batches:
        for batch in a.batches:
            if batch != 1:
                ratio = medians[(batch, "default", "checked")] / medians[(1, "default", "checked")]
                print(f"  B={batch} / B=1 (default, checked): {ratio:.2f}x")


if __name__ == "__main__":
    main()
