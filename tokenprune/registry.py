"""Name -> class registries filled through the ``register_*`` hooks.

Each kind (strategies, models, benchmarks, executors) is collected once, on
first use, by calling its hook with a ``register`` callback. Registered classes
must carry a unique ``name``; a clash names both plugins.
"""
from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass

from .errors import PluginError, UnknownNameError
from .plugins import load_plugins

KINDS = {
    "strategies": "register_strategies",
    "models": "register_models",
    "benchmarks": "register_benchmarks",
    "executors": "register_executors",
}
_SINGULAR = {"strategies": "strategy", "models": "model", "benchmarks": "benchmark", "executors": "executor"}


@dataclass(frozen=True)
class Entry:
    name: str
    obj: type
    plugin: str  # the plugin (entry-point name) that registered it


_cache: dict[str, dict[str, Entry]] = {}


def clear_caches():
    _cache.clear()


def _plugin_owning(obj, pm) -> str:
    module = getattr(obj, "__module__", "") or ""
    best = "?"
    for name, plugin in pm.list_name_plugin():
        mod_name = getattr(plugin, "__name__", None)
        if mod_name and (module == mod_name or module.startswith(mod_name + ".")):
            if best == "?" or len(mod_name) > len(best[1]):
                best = (name, mod_name)
    return best[0] if best != "?" else "?"


def entries(kind: str) -> dict[str, Entry]:
    """All registered things of one kind, by name (sorted)."""
    if kind not in KINDS:
        raise UnknownNameError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if kind in _cache:
        return _cache[kind]
    pm = load_plugins()
    found: dict[str, Entry] = {}

    def register(obj):
        name = getattr(obj, "name", None)
        plugin = _plugin_owning(obj, pm)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {plugin!r} registered {obj!r} as one of the {kind} without a 'name' string"
            )
        if name in found and found[name].obj is not obj:
            raise PluginError(
                f"{_SINGULAR[kind]} name {name!r} is registered twice: by plugin "
                f"{found[name].plugin!r} and by plugin {plugin!r}"
            )
        found[name] = Entry(name, obj, plugin)

    getattr(pm.hook, KINDS[kind])(register=register)
    _cache[kind] = dict(sorted(found.items()))
    return _cache[kind]


def names(kind: str, pattern: str | None = None) -> list[str]:
    """Registered names of one kind, optionally filtered by an fnmatch pattern."""
    all_names = list(entries(kind))
    if pattern:
        all_names = [n for n in all_names if fnmatch.fnmatchcase(n, pattern)]
    return all_names


def lookup(kind: str, name: str):
    """The registered class called ``name``; an unknown name lists the registered ones."""
    table = entries(kind)
    if name not in table:
        known = ", ".join(table) or "(none registered)"
        raise UnknownNameError(f"unknown {_SINGULAR[kind]} {name!r}; registered {kind}: {known}")
    return table[name].obj


def describe_plugins() -> list[dict]:
    """One dict per loaded plugin: name, distribution, version, hooks, registered names."""
    from .plugins import distribution_of

    pm = load_plugins()
    by_plugin: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        for entry in entries(kind).values():
            by_plugin.setdefault(entry.plugin, {}).setdefault(kind, []).append(entry.name)
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        dist, version = distribution_of(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append(
            {
                "name": name,
                "distribution": dist,
                "version": version,
                "hooks": hooks,
                "registered": by_plugin.get(name, {}),
            }
        )
    return out


def is_class_of(obj, base) -> bool:
    return inspect.isclass(obj) and issubclass(obj, base)
