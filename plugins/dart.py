"""Built-in strategy plugin `dart` (being implemented)."""
from tokenprune import hookimpl


@hookimpl
def register_strategies(register):
    pass
