"""Built-in strategy plugin `saint` (being implemented)."""
from tokenprune import hookimpl


@hookimpl
def register_strategies(register):
    pass
