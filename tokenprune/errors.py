"""Errors a user can cause. The CLI prints these as one clear message, never a traceback."""


class TokenpruneError(Exception):
    """Base class: a mistake in the user's input, config or plugin, explained in the message."""


class UnknownNameError(TokenpruneError, KeyError):
    """A strategy, model, benchmark or executor name that nobody registered."""

    def __str__(self):  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ParamError(TokenpruneError, ValueError):
    """A strategy hyper-parameter with an unknown name or a bad value."""


class BudgetError(TokenpruneError, ValueError):
    """A token budget outside 1..N."""


class StrategyInputError(TokenpruneError, ValueError):
    """Inputs handed to a strategy are malformed (shape, NaN/inf, missing signal)."""


class SelectionError(TokenpruneError, RuntimeError):
    """A strategy returned a Selection that breaks the contract; the message names the plugin."""


class PluginError(TokenpruneError, RuntimeError):
    """A plugin failed to load or registered something invalid."""


class ConfigError(TokenpruneError, ValueError):
    """A bad experiment grid; the message says where in the YAML and what is allowed."""
