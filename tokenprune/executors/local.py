"""In-process, sequential: each model is loaded once for all its cells."""
from ..params import Param
from ..runner.execute import run_group
from .base import Executor


class LocalExecutor(Executor):
    """Runs the groups one after the other in this process (the default)."""

    name = "local"
    params = {
        "threads": Param(None, "torch CPU threads while the run lasts (default: torch's own choice); "
                               "recorded per cell as environment.cpu_threads", int, min=1),
    }

    def run(self, groups, store, *, warmup, progress):
        import torch

        threads, before = self.options["threads"], torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            status = {}
            for model_spec, cells in groups:
                status.update(run_group(model_spec, cells, store, warmup=warmup, progress=progress))
            return status
        finally:
            torch.set_num_threads(before)
