"""Built-in strategy plugin `vlm_pruner` (being implemented)."""
from tokenprune import hookimpl


@hookimpl
def register_strategies(register):
    pass
