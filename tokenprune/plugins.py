"""The plugin manager and its loading policy.

Built-in strategies, adapters, benchmarks and executors are ordinary entry
points of the ``tokenprune`` distribution in the ``tokenprune`` group, so they
load exactly like a third-party plugin and the core has no special path.

A plugin that fails (raises at import, clashes with another plugin's entry-point
name) is recorded as a ``PluginFailure`` naming its pip distribution and version,
and the others load as usual: one broken install never takes the tool down.

Environment:
  TOKENPRUNE_LOAD_PLUGINS   comma list of distributions whose entry points load
                            (unset: all; empty string: none)
  TOKENPRUNE_TRACE_PLUGINS  "1" prints every hook call and its result to stderr
"""
from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass

import pluggy

from . import hookspecs

GROUP = "tokenprune"
CORE = "tokenprune"  # the distribution whose entry points are the built-ins

pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)

_loaded = False
_distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_selected: list[str] = []  # distributions whose entry points this process loads (for the skip hint)
_load_failures: list[PluginFailure] = []


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    plugin: str  # entry-point name (the name `tokenprune plugins` shows)
    error: str

    def message(self) -> str:
        hint = skip_hint(distribution_of(self.plugin)[0])
        return f"{origin(self.plugin)} failed: {self.error}" + (f"; {hint}" if hint else "")


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
    # the built-ins first, so a third-party plugin can never take a built-in's entry-point name
    for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda ep: _dist_name(ep) != CORE):
        dist = _dist_name(ep)
        if wanted is not None and dist not in wanted and dist.replace("-", "_") not in wanted:
            continue
        if dist not in _selected:
            _selected.append(dist)
        if pm.is_blocked(ep.name):
            continue
        version = ep.dist.version if ep.dist is not None else "?"
        owner = _distributions.get(ep.name)
        if owner is not None:
            if owner[0] != dist:  # two distributions chose the same entry-point name: the later one is not loaded
                name = f"{ep.name}@{dist}"
                _distributions[name] = (dist, version)
                _load_failures.append(PluginFailure(name, f"its entry-point name {ep.name!r} is already taken by "
                                                          f"distribution {owner[0]}; rename the entry point"))
            continue
        _distributions[ep.name] = (dist, version)
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin is reported, the others still load
            _load_failures.append(PluginFailure(ep.name, f"loading {ep.value} raised {type(exc).__name__}: {exc}"))
    if os.environ.get("TOKENPRUNE_TRACE_PLUGINS") == "1":
        _enable_tracing()
    return pm


def _dist_name(ep) -> str:
    return ep.dist.name if ep.dist is not None else "?"


def _enable_tracing():
    def before(hook_name, hook_impls, kwargs):
        names = ", ".join(impl.plugin_name for impl in hook_impls)
        print(f"[tokenprune] hook {hook_name} -> {names}", file=sys.stderr)

    def after(outcome, hook_name, hook_impls, kwargs):
        print(f"[tokenprune] hook {hook_name} done", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def load_failures() -> list[PluginFailure]:
    """Plugins whose entry point could not be loaded (import error, clashing entry-point name) so far."""
    return list(_load_failures)


def distribution_of(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of a plugin; ('?', '?') for one registered by hand."""
    return _distributions.get(plugin_name, ("?", "?"))


def origin(plugin_name: str) -> str:
    """'plugin NAME (distribution DIST VERSION)': who to blame, in the words pip uses."""
    dist, version = distribution_of(plugin_name)
    where = "registered in code, not by a distribution" if dist == "?" else f"distribution {dist} {version}"
    return f"plugin {plugin_name!r} ({where})"


def skip_hint(distribution: str) -> str:
    """How to run without ``distribution``'s plugins: the TOKENPRUNE_LOAD_PLUGINS value, and pip."""
    if distribution == "?":
        return ""
    others = ",".join(sorted((d for d in _selected if d not in (distribution, "?")), key=lambda d: (d != CORE, d)))
    others = others or '""'
    hint = f"to skip {distribution}, set TOKENPRUNE_LOAD_PLUGINS={others} (the distributions to load)"
    if distribution != CORE:
        hint += f" or run `pip uninstall {distribution}`"
    return hint
