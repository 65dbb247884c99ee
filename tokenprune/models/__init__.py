"""VLM adapters, one module per family; registered through ``register_models``."""
from ..hookspecs import hookimpl


@hookimpl
def register_models(register):
    pass
