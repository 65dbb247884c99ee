"""Benchmarks, one module per benchmark; registered through ``register_benchmarks``."""
from ..hookspecs import hookimpl
from .base import Benchmark, Sample

__all__ = ["Benchmark", "Sample"]


@hookimpl
def register_benchmarks(register):
    pass
