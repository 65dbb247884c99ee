"""In-process, sequential: each model is loaded once for all its cells."""
from ..runner.execute import run_group
from .base import Executor


class LocalExecutor(Executor):
    """Runs the groups one after the other in this process (the default)."""

    name = "local"

    def run(self, groups, store, *, warmup, progress):
        status = {}
        for model_spec, cells in groups:
            status.update(run_group(model_spec, cells, store, warmup=warmup, progress=progress))
        return status
