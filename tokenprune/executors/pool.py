"""A pool of worker processes, one per visible GPU (or `workers` CPU processes).

Each worker is a fresh `python -m tokenprune.runner.worker` process pinned to
one GPU with CUDA_VISIBLE_DEVICES; it takes whole model groups, so every model
is still loaded once per worker. Workers write to the shared run directory,
one writer per cell.
"""
from __future__ import annotations

import os
import subprocess
import sys

from ..params import Param
from ..runner.execute import idle
from .base import Executor
from .collect_status import finished_at, statuses


def visible_gpus() -> list[str]:
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no CUDA at all
        count = 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [d for d in listed.split(",") if d.strip()][:count or None]
    return [str(i) for i in range(count)]


class PoolExecutor(Executor):
    """Worker processes over the visible GPUs (CPU: `workers` processes)."""

    name = "pool"
    params = {
        "workers": Param(None, "number of worker processes (default: one per visible GPU, or 1)", int, min=1),
        "threads": Param(None, "torch threads per worker on CPU (default: cores / workers)", int, min=1),
    }

    def run(self, groups, store, *, warmup, progress):
        gpus = visible_gpus()
        workers = self.options["workers"] or max(1, len(gpus))
        share: list[list[str]] = [[] for _ in range(workers)]
        for _, cells in groups:
            for cell in cells:
                store.cell(cell).prepare()  # specs on disk before any worker reads them (and old errors gone)
        before = finished_at(groups, store)
        busy = [cells for _, cells in groups if not idle(cells, store)]  # no process for finished groups
        for i, cells in enumerate(busy):
            share[i % workers].extend(cell.id for cell in cells)
        threads = self.options["threads"] or max(1, (os.cpu_count() or 1) // workers)
        procs = []
        for w, cell_ids in enumerate(share):
            if not cell_ids:
                continue
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENPRUNE_WORKER_THREADS=str(threads))
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpus[w % len(gpus)]
            cmd = [sys.executable, "-m", "tokenprune.runner.worker", str(store.root), "--warmup", str(warmup),
                   "--cells", ",".join(cell_ids)]
            procs.append(subprocess.Popen(cmd, env=env))
        for proc in procs:
            proc.wait()
        status = statuses(groups, store, before)
        for _, cells in groups:
            for cell in cells:
                progress.cell_done(cell, status[cell.id])
        return status
