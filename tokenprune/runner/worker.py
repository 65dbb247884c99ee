"""Worker entry point: `python -m tokenprune.runner.worker RUN_DIR --cells ID,ID --warmup N`."""
import argparse
import os

import torch

from .execute import run_group
from .spec import group_by_model
from .store import RunStore


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--cells", required=True)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args(argv)
    if os.environ.get("TOKENPRUNE_WORKER_THREADS"):
        torch.set_num_threads(int(os.environ["TOKENPRUNE_WORKER_THREADS"]))
    store = RunStore(a.run_dir)
    by_id = {cs.cell.id: cs.cell for cs in store.cells()}
    cells = [by_id[i] for i in a.cells.split(",") if i in by_id]  # in the executor's order, as local runs them
    for model, group in group_by_model(cells):
        run_group(model, group, store, warmup=a.warmup)


if __name__ == "__main__":
    main()
