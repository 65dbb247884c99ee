"""Looking strategies up by name."""
from __future__ import annotations

from . import registry
from .errors import PluginError
from .strategy import Strategy


def strategy_class(name: str) -> type[Strategy]:
    cls = registry.lookup("strategies", name)
    if not registry.is_class_of(cls, Strategy):
        raise PluginError(f"strategy {name!r} is registered but is not a tokenprune.Strategy subclass")
    cls.check_declaration()
    return cls


def get_strategy(name: str, **params) -> Strategy:
    """An instance of the strategy called ``name`` with ``params`` over its defaults."""
    return strategy_class(name)(**params)


def list_strategies(pattern: str | None = None) -> list[str]:
    """Registered strategy names, optionally filtered by an fnmatch pattern."""
    return registry.names("strategies", pattern)
