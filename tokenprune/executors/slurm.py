"""Slurm through submitit: one job per model group (extra `tokenprune[slurm]`).

`cluster: local` runs the same jobs as local subprocesses (submitit's LocalExecutor),
`cluster: debug` in this process; both are how the tests exercise this path.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..params import Param
from .base import Executor
from .detached import run_detached, run_groups


class SlurmExecutor(Executor):
    """submitit jobs (Slurm, or local/debug for testing); results merged by the driver."""

    name = "slurm"
    params = {
        "cluster": Param("slurm", "submitit backend", str, choices=("slurm", "local", "debug")),
        "partition": Param(None, "Slurm partition", str),
        "gpus_per_node": Param(1, "GPUs per job", int, min=0),
        "cpus_per_task": Param(8, "CPUs per job", int, min=1),
        "timeout_min": Param(240, "job time limit in minutes", int, min=1),
        "mem_gb": Param(64, "memory per job in GB", int, min=1),
    }

    def run(self, groups, store, *, warmup, progress):
        try:
            import submitit
        except ImportError:
            raise ConfigError("executor 'slurm' needs submitit: pip install 'tokenprune[slurm]'") from None
        o = self.options
        executor = submitit.AutoExecutor(folder=Path(store.root) / "submitit", cluster=o["cluster"])
        if o["cluster"] == "slurm":
            executor.update_parameters(slurm_partition=o["partition"], gpus_per_node=o["gpus_per_node"],
                                       cpus_per_task=o["cpus_per_task"], timeout_min=o["timeout_min"],
                                       mem_gb=o["mem_gb"])
        else:
            executor.update_parameters(timeout_min=o["timeout_min"])
        return run_groups(groups, store, progress, lambda payload: executor.submit(run_detached, payload, warmup).result)
