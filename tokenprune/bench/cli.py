"""`tokenprune bench select|e2e`: run, print a table, write JSON + markdown under reports/bench/."""
from __future__ import annotations

import sys

import torch

from ..errors import TokenpruneError
from . import report


def _list(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def bench_command(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = _list(args.devices)
    if devices and any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        raise TokenpruneError("--devices asks for cuda, but no CUDA device is available")
    if args.what == "select":
        from .select import SHAPES, run

        shapes = _list(args.shapes)
        unknown = [s for s in shapes or [] if s not in SHAPES]
        if unknown:
            raise TokenpruneError(f"unknown shape(s) {unknown}; choose from {', '.join(SHAPES)}")
        rows = run(strategies=_list(args.strategies), devices=devices,
                   batches=[int(b) for b in _list(args.batches)], shapes=shapes, repeats=args.repeats,
                   warmup=args.warmup, dtype=args.dtype or "float32")
        cols = ["strategy", "shape", "N", "budget", "batch", "device", "dtype", "median_ms", "p90_ms"]
        stem = "select"
    else:
        from .e2e import LEGEND, busy, run as run_e2e

        rows, conditions = run_e2e(arch=args.arch or "zoo:shapes-llava-144", strategies=_list(args.strategies),
                                   budgets=[int(b) for b in _list(args.budgets)] if args.budgets else None,
                                   devices=devices, repeats=args.repeats, warmup=args.warmup, dtype=args.dtype)
        cols = ["arch", "strategy", "budget", "layer", "kept", "prefill_ms", "prefill_p90_ms", "vision_ms",
                "decode_ms_per_token", "peak_mem_mb", "select_ms", "speedup", "flops_speedup", "vs_flops",
                "expected_speedup", "vs_expected", "no_engine_speedup", "vs_no_engine", "llm_flops_speedup"]
        stem = f"e2e_{(args.arch or 'zoo').replace(':', '_').replace('/', '_')}"
    table = report.markdown_table(rows, cols)
    print(table)
    if args.what == "e2e":
        table = f"{LEGEND}\n{table}"
    device = (devices or ["cpu"])[-1]
    env = report.environment(device)
    if args.what == "e2e":
        first = rows[0]
        env.update(arch=first["arch"], dtype=first["dtype"], attn=first["attn"], flops_scope=first["flops_scope"],
                   **conditions)
        own = torch.get_num_threads() if device == "cpu" else 1
        env["busy"] = busy(conditions, own)
        if env["busy"]:
            print(f"warning: other work loaded the machine while timing (1-minute load average "
                  f"{conditions['load_average_1min']}); these timings are not evidence", file=sys.stderr)
    json_path, md_path = report.write(args.out, stem, {"environment": env, "rows": rows}, table)
    print(f"written: {json_path}, {md_path}")
    return 0
