"""`tokenprune bench sweep GRID`: parse, run (or only count FLOPs), print, write under reports/bench/."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def sweep_command(args) -> int:
    import torch

    from ..runner.cli import check_limit

    if not Path(args.grid).exists():
        raise ConfigError(f"grid file {args.grid!r} does not exist")
    check_limit(args.limit)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flops_only:
        from .sharing_flops import grid_saving, saving_lines

        for line in saving_lines(grid_saving(args.grid, text_tokens=args.text_tokens, arch=args.arch)):
            print(line)
        return 0
    from . import report, sweep

    result = sweep.run(args.grid, limit=args.limit, repeats=args.repeats, phases=args.phases,
                       keep=Path(args.keep) if args.keep else None)
    result["flops"] = _flops_lines(args.grid, args.text_tokens, args.arch)
    for line in sweep.summary_lines(result):
        print(line)
    device = sorted({c.model.device for c in sweep.sweep_grid(args.grid, "cell", args.limit).cells})[-1]
    json_path, md_path = sweep.write(result, args.out, report.environment(device))
    print(f"written: {json_path}, {md_path}")
    return 0 if result["identical"] else 1


def _flops_lines(grid, text_tokens: int, arch: str | None) -> list[str] | None:
    """The analytic saving beside the measured one, where the model's shape can be read."""
    from ..errors import TokenpruneError
    from .sharing_flops import grid_saving, saving_lines

    try:
        return saving_lines(grid_saving(grid, text_tokens=text_tokens, arch=arch))
    except TokenpruneError:  # e.g. a hub checkpoint whose config is not cached offline
        return None
