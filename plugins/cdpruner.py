"""Built-in strategy plugin `cdpruner` (being implemented)."""
from tokenprune import hookimpl


@hookimpl
def register_strategies(register):
    pass
