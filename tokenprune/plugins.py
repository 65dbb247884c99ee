"""The plugin manager and its loading policy.

Built-in strategies, adapters, benchmarks and executors are ordinary entry
points of the ``tokenprune`` distribution in the ``tokenprune`` group, so they
load exactly like a third-party plugin and the core has no special path.

Environment:
  TOKENPRUNE_LOAD_PLUGINS   comma list of distributions whose entry points load
                            (unset: all; empty string: none)
  TOKENPRUNE_TRACE_PLUGINS  "1" prints every hook call and its result to stderr
"""
from __future__ import annotations

import importlib.metadata
import os
import sys

import pluggy

from . import hookspecs
from .errors import PluginError

GROUP = "tokenprune"

pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)

_loaded = False
_distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)


def _selected_distributions():
    raw = os.environ.get("TOKENPRUNE_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_plugins() -> pluggy.PluginManager:
    """Load entry-point plugins once (lazily, on first use) and return the manager."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    wanted = _selected_distributions()
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        if wanted is not None and dist not in wanted and dist.replace("-", "_") not in wanted:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must say who it is
            raise PluginError(
                f"plugin {ep.name!r} from distribution {dist!r} failed to load "
                f"({ep.value}): {type(exc).__name__}: {exc}"
            ) from exc
        pm.register(module, name=ep.name)
        _distributions[ep.name] = (dist, ep.dist.version if ep.dist is not None else "?")
    if os.environ.get("TOKENPRUNE_TRACE_PLUGINS") == "1":
        _enable_tracing()
    return pm


def _enable_tracing():
    def before(hook_name, hook_impls, kwargs):
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        print(f"[tokenprune] hook {hook_name} -> {names}", file=sys.stderr)

    def after(outcome, hook_name, hook_impls, kwargs):
        print(f"[tokenprune] hook {hook_name} done", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def distribution_of(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of a loaded plugin; ('?', '?') for one registered by hand."""
    return _distributions.get(plugin_name, ("?", "?"))


def reset_for_tests():
    """Forget everything loaded so a test can change TOKENPRUNE_LOAD_PLUGINS and reload."""
    global _loaded
    for name, plugin in list(pm.list_name_plugin()):
        pm.unregister(plugin=plugin, name=name)
    _distributions.clear()
    _loaded = False
    from . import registry

    registry.clear_caches()
