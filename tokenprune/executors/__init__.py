"""Sweep executors; registered through ``register_executors``."""
from ..hookspecs import hookimpl
from .base import Executor
from .local import LocalExecutor
from .pool import PoolExecutor
from .ray_executor import RayExecutor
from .slurm import SlurmExecutor

__all__ = ["Executor"]


@hookimpl
def register_executors(register):
    for cls in (LocalExecutor, PoolExecutor, RayExecutor, SlurmExecutor):
        register(cls)
