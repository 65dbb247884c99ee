"""Sweep executors; registered through ``register_executors``."""
from ..hookspecs import hookimpl


@hookimpl
def register_executors(register):
    pass
