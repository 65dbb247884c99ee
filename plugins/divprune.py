"""Built-in strategy plugin `divprune` (being implemented)."""
from tokenprune import hookimpl


@hookimpl
def register_strategies(register):
    pass
