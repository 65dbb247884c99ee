"""Built-in strategy plugin `fastv` (being implemented)."""
from tokenprune import hookimpl


@hookimpl
def register_strategies(register):
    pass
