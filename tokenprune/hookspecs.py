"""The hooks a tokenprune plugin can implement.

Every hook receives a ``register`` callback and calls it once per thing it
provides (the pattern of simonw/llm): return values are ignored, so the order
in which plugins run never matters and things are always chosen by name.
"""
import pluggy

hookspec = pluggy.HookspecMarker("tokenprune")
hookimpl = pluggy.HookimplMarker("tokenprune")


@hookspec
def register_strategies(register):
    """Register token-selection strategies: call ``register(StrategySubclass)`` for each."""


@hookspec
def register_models(register):
    """Register VLM adapters: call ``register(AdapterClass)`` for each model family."""


@hookspec
def register_benchmarks(register):
    """Register benchmarks: call ``register(BenchmarkClass)`` for each."""


@hookspec
def register_executors(register):
    """Register sweep executors: call ``register(ExecutorClass)`` for each."""
