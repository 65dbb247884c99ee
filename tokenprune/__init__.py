"""tokenprune: a plugin-based benchmark framework for visual-token pruning in VLMs."""
from .api import get_strategy, list_strategies, strategy_class
from .apply import apply
from .errors import (
    BudgetError,
    ConfigError,
    ParamError,
    PluginError,
    SelectionError,
    StrategyInputError,
    TokenpruneError,
    UnknownNameError,
)
from .hookspecs import hookimpl
from .params import Param
from .selection import SIGNALS, Context, Selection
from .strategy import Strategy
from .two_stage import TwoStage

__version__ = "0.1.0"

__all__ = [
    "BudgetError", "ConfigError", "Context", "Param", "ParamError", "PluginError", "SIGNALS",
    "Selection", "SelectionError", "Strategy", "StrategyInputError", "TokenpruneError", "TwoStage",
    "UnknownNameError", "get_strategy", "hookimpl", "list_strategies", "strategy_class",
]
