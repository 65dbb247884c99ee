"""The `tokenprune` command line.

User mistakes (TokenpruneError, bad YAML, missing files) print one clear line
on stderr and exit with status 2; they never show a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

from .errors import TokenpruneError

KIND_CHOICES = ("strategies", "models", "benchmarks", "executors")


def _cmd_list(args) -> int:
    from . import registry

    kinds = [args.kind] if args.kind else list(KIND_CHOICES)
    for kind in kinds:
        found = registry.names(kind, args.pattern)
        if len(kinds) > 1:
            print(f"{kind}:")
            for name in found:
                print(f"  {name}")
        else:
            for name in found:
                print(name)
    return 0


def _cmd_plugins(args) -> int:
    from . import registry

    print(json.dumps(registry.describe_plugins(), indent=2))
    return 0


def format_strategy(info: dict) -> str:
    """`tokenprune show` text for one strategy (from Strategy.describe())."""
    lines = [f"{info['name']}", ""]
    lines.append(f"  stage:    {info['stage']}" + (f" (default layer K={info['layer']})" if info["layer"] is not None else ""))
    if info.get("stages"):
        lines.append(f"  stages:   {' -> '.join(info['stages'])} (two prune points in one prefill)")
    lines.append(f"  requires: {', '.join(info['requires']) or '(nothing)'}")
    if info["paper"]:
        lines.append(f"  paper:    {info['paper']}")
    lines.append("")
    if info["doc"]:
        lines += ["  " + ln if ln else "" for ln in info["doc"].splitlines()] + [""]
    lines.append("  params:")
    if not info["params"]:
        lines.append("    (none)")
    for name, p in info["params"].items():
        lines.append(f"    {name} = {p['default']!r}    [{p['allowed']}]")
        if p["help"]:
            lines += textwrap.wrap(p["help"], 88, initial_indent="        ", subsequent_indent="        ")
    return "\n".join(lines)


def _cmd_show(args) -> int:
    from .api import strategy_class

    print(format_strategy(strategy_class(args.strategy).describe()))
    return 0


def _cmd_run(args) -> int:
    from .runner.cli import run_command

    return run_command(args)


def _cmd_report(args) -> int:
    from .report.cli import report_command

    return report_command(args)


def _cmd_bench(args) -> int:
    from .bench.cli import bench_command

    return bench_command(args)


def _cmd_bench_sweep(args) -> int:
    from .bench.sweep_cli import sweep_command

    return sweep_command(args)


ENVIRONMENT = """environment:
  TOKENPRUNE_LOAD_PLUGINS=DIST,DIST  load only these distributions' plugins (empty: none; unset: all);
                                     a failing plugin's warning prints the value that skips it
  TOKENPRUNE_TRACE_PLUGINS=1         print every plugin hook call on stderr"""


def _add_bench_parsers(sub):
    """`bench select`, `bench e2e` and `bench hooks`, each with its own flags and help."""
    common = argparse.ArgumentParser(add_help=False)  # flags of every bench kind, sweep included
    common.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    common.add_argument("--out", default="reports/bench", help="directory for the JSON and markdown results "
                                                               "(default reports/bench)")
    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--strategies", help="comma list of strategy names (default: every registered strategy "
                                             "but vanilla)")
    timing.add_argument("--repeats", type=int, default=10,
                        help="timed runs per measurement; the table shows their median and p90 (default 10)")
    timing.add_argument("--warmup", type=int, default=3,
                        help="untimed runs before the timed ones, so caches and kernels are warm (default 3)")

    p = sub.add_parser("bench", help="speed benchmarks: strategy selection, end-to-end pruned inference, the "
                                     "engine's own cost, sample-major sweeps",
                       description="Speed benchmarks. `tokenprune bench select --help`, `tokenprune bench e2e "
                                   "--help`, `tokenprune bench hooks --help` and `tokenprune bench sweep --help` "
                                   "list each one's flags.")
    kinds = p.add_subparsers(dest="what", required=True, metavar="{select,e2e,hooks,sweep}",
                             help="select: time select() alone; e2e: time pruned inference end to end; "
                                  "hooks: the engine's own cost; sweep: a grid cell by cell against sample-major")
    s = kinds.add_parser("select", parents=[timing, common], help="time each strategy's select() on LLaVA-1.5-7B "
                                                                  "and Qwen2-VL-7B shaped inputs",
                         description="Time each strategy's select() on random inputs shaped like "
                                     "LLaVA-1.5-7B and Qwen2-VL-7B prune points.")
    s.add_argument("--devices", help="comma list, e.g. cpu,cuda; each is timed (default: cpu, and cuda when present)")
    s.add_argument("--batches", default="1,8", help="comma list of batch sizes (default 1,8)")
    s.add_argument("--shapes", help="comma list of llava-1.5-7b, qwen2-vl-7b (default both)")
    s.add_argument("--dtype", default=None, help="float32 | float16 | bfloat16 (default float32)")
    s.set_defaults(func=_cmd_bench)
    model = argparse.ArgumentParser(add_help=False)  # the model that e2e and hooks run
    model.add_argument("--arch", help="llava-1.5-7b, llava-mid, qwen2-vl-7b (random weights from the config), "
                                      "zoo:NAME or a checkpoint path (default zoo:shapes-llava-144)")
    model.add_argument("--budgets", help="comma list of kept visual tokens (default: 1/3, 2/9 and 1/9 of the image's)")
    model.add_argument("--devices", help="comma list; the last one is used (default: cuda when present, else cpu)")
    model.add_argument("--dtype", default=None, help="float32 | float16 | bfloat16 (default bfloat16 on cuda, "
                                                     "float32 on cpu)")
    e = kinds.add_parser("e2e", parents=[timing, common, model], help="prefill, decode and memory of pruned "
                                                                      "inference against the unpruned model",
                         description="Prefill and decode time, peak memory and speed-up of pruned inference "
                                     "against the unpruned model (each pruned run paired with a vanilla run, "
                                     "rounds interleaved), beside the FLOPs prediction of the whole prefill and "
                                     "the same model measured without the engine; --repeats: rounds.")
    e.set_defaults(func=_cmd_bench)
    h = kinds.add_parser("hooks", parents=[timing, common, model], help="what the pruning engine's own hooks cost "
                                                                        "per prefill, per decode step and per layer",
                         description="CPU time and torch operators of the engine's hooks in real generate() "
                                     "calls (the strategy's select() apart), and hot-loop costs of one layer hook. "
                                     "--strategies default: limit (a zero-cost selection at layer 2); "
                                     "--budgets: the first is used (default 1/9 of the image's); "
                                     "--repeats: generate() calls measured.")
    h.set_defaults(func=_cmd_bench)
    w = kinds.add_parser("sweep", parents=[common], help="run a grid cell by cell and sample-major, check the "
                                                         "results are identical, time both",
                         description="Run a grid's accuracy pass both ways (cell by cell, then sample-major, into "
                                     "temporary run directories, with the same loaded model), check every cell's "
                                     "answers, kept indices, scores and metrics are identical, and print the wall "
                                     "time, the time per answer and the speed-up. Writes sweep_<grid name>.json/.md.")
    w.add_argument("grid", help="path to the grid YAML, e.g. experiments/sweep.yaml")
    w.add_argument("--limit", type=int, help="samples per benchmark (N >= 1; default: the grid's)")
    w.add_argument("--repeats", type=int, default=1,
                   help="runs per mode, alternating cell/sample/sample/cell...; the median is reported (default 1)")
    w.add_argument("--phases", action="store_true",
                   help="also time input building, the vision tower, decoder layers at prefill and decoding")
    w.add_argument("--flops-only", action="store_true",
                   help="print the analytic FLOPs that sample-major sharing saves on this grid, run nothing")
    w.add_argument("--text-tokens", type=int, default=64,
                   help="analytic FLOPs (--flops-only, and beside the timings): prompt tokens besides the visual "
                        "ones, per sample (default 64)")
    w.add_argument("--arch", help="analytic FLOPs: take the model shape from this bench architecture "
                                  "(llava-1.5-7b, llava-mid) instead of the checkpoint's config")
    w.add_argument("--keep", help="keep the run directories here (default: a temporary directory, removed)")
    w.set_defaults(func=_cmd_bench_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenprune", description="Visual-token pruning benchmark framework",
                                     epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, help="`tokenprune COMMAND --help` lists its flags")

    p = sub.add_parser("list", help="list registered strategies, models, benchmarks or executors",
                       description="List registered names; plugins that failed are reported on stderr.")
    p.add_argument("kind", nargs="?", choices=KIND_CHOICES, help="what to list (default: all four kinds)")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'd*'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("plugins", help="plugins as JSON (distribution, version, status, errors, hooks, names)",
                       description="Every plugin as JSON: distribution, version, status (ok or failed), errors "
                                   "with how to skip the plugin, hooks and the names it registered.",
                       epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("show", help="explain one strategy: stage, layer, signals, params, paper")
    p.add_argument("strategy", help="a registered strategy name (see `tokenprune list strategies`)")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("run", help="run an experiment grid (YAML)")
    p.add_argument("grid", help="path to the grid YAML, e.g. experiments/sweep.yaml")
    p.add_argument("--dry-run", action="store_true", help="validate the grid and print its cells; run nothing")
    p.add_argument("--no-preflight", action="store_true",
                   help="skip reading the models' configs before the run (checkpoint, layer and budget checks)")
    p.add_argument("--out", help="run directory (default: runs/<grid name>, runs/<grid name>-smoke with --smoke)")
    p.add_argument("--executor", help="override the grid's executor")
    p.add_argument("--execution", choices=("auto", "cell", "sample"),
                   help="override the grid's execution: cell (one cell after another), sample (batch by batch, "
                        "sharing inputs, vision and the layers before each prune layer; same results) or auto "
                        "(sample when a model has more than one cell; the default)")
    p.add_argument("--smoke", action="store_true", help="substitute the bundled model and a small limit (exercise any grid on CPU)")
    p.add_argument("--smoke-checkpoint", help="with --smoke: this checkpoint instead of the grid's smoke model")
    p.add_argument("--limit", type=int, help="override every benchmark's sample limit (N >= 1)")
    p.add_argument("--extend", action="store_true",
                   help="add this grid's cells to a run directory made by another grid (new cells only)")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--report-out", help="report directory (default: RUN_DIR/report)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="write the comparison report of a run directory")
    p.add_argument("run_dir", help="a run directory made by `tokenprune run` (it holds cells/)")
    p.add_argument("--out", help="report directory (default: RUN_DIR/report)")
    p.set_defaults(func=_cmd_report)

    _add_bench_parsers(sub)
    return parser


def _warn_failed_plugins():
    """One line per plugin that failed in this command, with its distribution and how to skip it."""
    from . import registry

    for failure in registry.failures_so_far():
        print(f"tokenprune: warning: {failure.message()}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    finally:
        _warn_failed_plugins()


def _run(args) -> int:
    try:
        return args.func(args)
    except TokenpruneError as exc:
        print(f"tokenprune: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"tokenprune: error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        print("tokenprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
