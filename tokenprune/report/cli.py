"""`tokenprune report RUN_DIR`."""
from pathlib import Path

from ..errors import TokenpruneError


def report_command(args) -> int:
    from . import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "cells").is_dir():
        raise TokenpruneError(f"{run_dir} is not a tokenprune run directory (no cells/ inside)")
    print(write_report(run_dir, out=args.out))
    return 0
