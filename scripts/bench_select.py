"""Time one registered strategy's select() on LLaVA-sized inputs (a quick script; `tokenprune bench select` supersedes it).

python scripts/bench_select.py vlm_pruner --n 576 --budget 64 --dk 4096 --d 4096 --batch 1 --threads 2 [--param faithful=true]
"""
import argparse
import statistics
import time

import torch
import yaml

import tokenprune as tp
from tokenprune.testing.inputs import make_inputs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("strategy")
    ap.add_argument("--h", type=int, default=24)
    ap.add_argument("--w", type=int, default=24)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--dk", type=int, default=4096)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--param", action="append", default=[], help="name=value (YAML value)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in a.param)}
    s = tp.get_strategy(a.strategy, **params)
    keys, attn, coords, ctx = make_inputs(s, batch=a.batch, h=a.h, w=a.w, dk=a.dk, d=a.d, only_required=True)
    dt = getattr(torch, a.dtype)
    keys = None if keys is None else keys.to(dt)
    if ctx.hidden is not None:
        ctx.hidden = ctx.hidden.to(dt)
    times = []
    for i in range(a.repeats + 3):
        t0 = time.perf_counter()
        s.select(keys, attn, coords, a.budget, ctx)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"{a.strategy} N={a.h*a.w} budget={a.budget} B={a.batch} dk={a.dk} d={a.d} {a.dtype} threads={a.threads}: "
          f"median {statistics.median(times)*1e3:.2f} ms, p90 {p90*1e3:.2f} ms")


if __name__ == "__main__":
    main()
