"""`tokenprune bench select|e2e|hooks`: run, print a table, write JSON + markdown under reports/bench/."""
from __future__ import annotations

import sys

import torch

from ..errors import TokenpruneError
from . import report
from .e2e import DEFAULT_ARCH, pick


def _list(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _arch_stem(args) -> str:
    return (args.arch or DEFAULT_ARCH).replace(":", "_").replace("/", "_")


def _select(args, devices):
    from .select import SHAPES, run

    shapes = _list(args.shapes)
    unknown = [s for s in shapes or [] if s not in SHAPES]
    if unknown:
        raise TokenpruneError(f"unknown shape(s) {unknown}; choose from {', '.join(SHAPES)}")
    rows = run(strategies=_list(args.strategies), devices=devices, batches=[int(b) for b in _list(args.batches)],
               shapes=shapes, repeats=args.repeats, warmup=args.warmup, dtype=args.dtype or "float32")
    cols = ["strategy", "shape", "N", "budget", "batch", "device", "dtype", "median_ms", "p90_ms"]
    return rows, cols, "select", "", {}


def _e2e(args, devices):
    from .e2e import LEGEND, run
    from .machine import busy

    rows, conditions = run(arch=args.arch or DEFAULT_ARCH, strategies=_list(args.strategies),
                           budgets=[int(b) for b in _list(args.budgets)] if args.budgets else None,
                           devices=devices, repeats=args.repeats, warmup=args.warmup, dtype=args.dtype)
    cols = ["arch", "strategy", "budget", "layer", "kept", "prefill_ms", "prefill_p90_ms", "vision_ms",
            "decode_ms_per_token", "peak_mem_mb", "select_ms", "speedup", "flops_speedup", "vs_flops",
            "expected_speedup", "vs_expected", "no_engine_speedup", "vs_no_engine", "llm_flops_speedup"]
    first = rows[0]
    extra = {"device": pick(devices)[0], "arch": first["arch"], "dtype": first["dtype"], "attn": first["attn"],
             "flops_scope": first["flops_scope"], **conditions}
    extra["busy"] = busy(conditions)
    if extra["busy"]:
        print(f"warning: other work loaded the machine while timing (1-minute load average "
              f"{conditions['load_average_1min']}, cores used by other processes {conditions['other_processes_cores']})"
              "; these timings are not evidence", file=sys.stderr)
    return rows, cols, f"e2e_{_arch_stem(args)}", LEGEND, extra


def _hooks(args, devices):
    from .. import get_strategy
    from .e2e import ZeroCostLimit, bench_sample, load
    from .hooks import LEGEND, run

    device, dtype = pick(devices, args.dtype)
    vlm = load(args.arch or DEFAULT_ARCH, device, dtype)
    inputs = vlm.build_inputs([bench_sample(vlm)])
    names = _list(args.strategies) or ["limit"]
    n_visual = vlm.count_visual(inputs["input_ids"][0])
    budget = int(_list(args.budgets)[0]) if args.budgets else max(1, round(n_visual / 9))
    rows = []
    for name in names:
        strategy = ZeroCostLimit() if name == "limit" else get_strategy(name)
        rows += [{"strategy": name, "budget": budget, **r} for r in run(vlm, strategy, budget, inputs, rounds=args.repeats)]
    cols = ["strategy", "budget", "view", "what", "us", "torch_ops"]
    return rows, cols, f"hooks_{_arch_stem(args)}", LEGEND, {"arch": args.arch or DEFAULT_ARCH, "device": device}


COMMANDS = {"select": _select, "e2e": _e2e, "hooks": _hooks}


def bench_command(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = _list(args.devices)
    if devices and any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        raise TokenpruneError("--devices asks for cuda, but no CUDA device is available")
    if args.repeats < 1 or args.warmup < 0:
        raise TokenpruneError(f"--repeats must be at least 1 and --warmup at least 0 (got {args.repeats}, {args.warmup})")
    rows, cols, stem, legend, extra = COMMANDS[args.what](args, devices)
    table = report.markdown_table(rows, cols)
    print(table)
    # e2e and hooks say where they ran (cuda by default where present); select runs on every device asked for
    device = extra.pop("device", None) or (devices or ["cpu"])[-1]
    env = {**report.environment(device), **extra}
    json_path, md_path = report.write(args.out, stem, {"environment": env, "rows": rows},
                                      f"{legend}\n{table}" if legend else table)
    print(f"written: {json_path}, {md_path}")
    return 0
