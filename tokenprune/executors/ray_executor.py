"""Ray: one task per model group on any Ray cluster; results come back to the driver (extra `tokenprune[ray]`)."""
from __future__ import annotations

from functools import partial

from ..errors import ConfigError
from ..params import Param
from .base import Executor
from .detached import run_detached, run_groups


class RayExecutor(Executor):
    """A Ray task per model group (num_gpus per task), results merged into the run directory by the driver."""

    name = "ray"
    params = {
        "address": Param(None, "Ray cluster address (default: start or join a local one)", str),
        "num_gpus": Param(0.0, "GPUs per task", float, min=0.0),
        "num_cpus": Param(1.0, "CPUs per task", float, min=0.0),
    }

    def run(self, groups, store, *, warmup, progress):
        try:
            import ray
        except ImportError:
            raise ConfigError("executor 'ray' needs Ray: pip install 'tokenprune[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.options["address"], include_dashboard=False)
        try:
            return self._run(ray, groups, store, warmup, progress)
        finally:
            if started_here:  # a local instance started for this sweep goes with it (and its worker processes)
                ray.shutdown()

    def _run(self, ray, groups, store, warmup, progress):
        task = ray.remote(num_gpus=self.options["num_gpus"], num_cpus=self.options["num_cpus"])(run_detached)
        return run_groups(groups, store, progress, lambda payload: partial(ray.get, task.remote(payload, warmup)))
