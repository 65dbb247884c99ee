"""Name -> class registries filled through the ``register_*`` hooks.

Each kind (strategies, models, benchmarks, executors) is collected once, on
first use, by calling every plugin's hook on its own with a ``register``
callback. Registered classes must carry a unique ``name``. A plugin whose hook
raises, or that registers something without a name, is recorded as failed and
the others still register; a name two plugins register is usable by neither
(looking it up names both distributions and how to skip one).
"""
from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field

from .errors import PluginError, UnknownNameError
from .plugins import CORE, PluginFailure, distribution_of, load_failures, load_plugins, origin, skip_hint

KINDS = {
    "strategies": "register_strategies",
    "models": "register_models",
    "benchmarks": "register_benchmarks",
    "executors": "register_executors",
}
_SINGULAR = {"strategies": "strategy", "models": "model adapter", "benchmarks": "benchmark", "executors": "executor"}


@dataclass(frozen=True)
class Entry:
    name: str
    obj: type
    plugin: str  # the plugin (entry-point name) that registered it


@dataclass
class _Table:
    entries: dict[str, Entry]
    clashes: dict[str, list[str]] = field(default_factory=dict)  # name -> every plugin registering it
    failures: list[PluginFailure] = field(default_factory=list)


_cache: dict[str, _Table] = {}


def clear_caches():
    _cache.clear()


def _check_kind(kind: str):
    if kind not in KINDS:
        raise UnknownNameError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")


def _registered_by(pm, impl, kind: str) -> dict[str, type]:
    """What one plugin's hook registers, called on its own so a plugin that raises spoils only its own."""
    others = [plugin for _, plugin in pm.list_name_plugin() if plugin is not impl.plugin]
    mine: dict[str, type] = {}

    def register(obj):
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"registered {obj!r} as one of the {kind} without a 'name' string")
        if name in mine and mine[name] is not obj:
            raise PluginError(f"registered two different {kind} named {name!r}")
        mine[name] = obj

    pm.subset_hook_caller(KINDS[kind], remove_plugins=others)(register=register)
    return mine


def _collect(kind: str) -> _Table:
    pm = load_plugins()
    table = _Table(entries={})
    impls = getattr(pm.hook, KINDS[kind]).get_hookimpls()
    for impl in sorted(impls, key=lambda impl: distribution_of(impl.plugin_name)[0] != CORE):  # built-ins first
        try:
            mine = _registered_by(pm, impl, kind)
        except Exception as exc:
            table.failures.append(PluginFailure(impl.plugin_name, f"{KINDS[kind]} raised {type(exc).__name__}: {exc}"))
            continue
        for name, obj in mine.items():
            earlier = table.entries.setdefault(name, Entry(name, obj, impl.plugin_name))
            if earlier.obj is not obj:
                table.clashes.setdefault(name, [earlier.plugin]).append(impl.plugin_name)
    for name, owners in table.clashes.items():
        del table.entries[name]
        # a plugin that re-registers a built-in's name is the one at fault; between third parties, each is
        blamed = [p for p in owners if distribution_of(p)[0] != CORE] or owners
        for plugin in blamed:
            others = [origin(p) for p in owners if p != plugin]
            table.failures.append(PluginFailure(
                plugin, f"it registers the {_SINGULAR[kind]} {name!r}, as {'do' if len(others) > 1 else 'does'} "
                        f"{' and '.join(others)}: the name is left unused"))
    table.entries = dict(sorted(table.entries.items()))
    return table


def _table(kind: str) -> _Table:
    _check_kind(kind)
    if kind not in _cache:
        _cache[kind] = _collect(kind)
    return _cache[kind]


def entries(kind: str) -> dict[str, Entry]:
    """All usable registered things of one kind, by name (sorted)."""
    return _table(kind).entries


def failures(kinds=tuple(KINDS)) -> list[PluginFailure]:
    """Every plugin failure: at load, and in the hooks of ``kinds`` (collected if not yet)."""
    load_plugins()
    out = load_failures()
    for kind in kinds:
        out += _table(kind).failures
    return out


def failures_so_far() -> list[PluginFailure]:
    """The failures this process has met, without collecting a kind only to look for more."""
    return load_failures() + [failure for table in _cache.values() for failure in table.failures]


def missing_message(kind: str, name: str) -> str:
    """Why ``name`` is not a usable ``kind``: two plugins claim it, or nobody registered it."""
    table, singular = _table(kind), _SINGULAR[kind]
    owners = table.clashes.get(name)
    if owners:
        hints = [skip_hint(distribution_of(p)[0]) for p in owners if distribution_of(p)[0] != CORE]
        return (f"{singular} {name!r} is registered by more than one plugin: "
                f"{' and '.join(origin(p) for p in owners)}, so the name is left unused"
                + "".join(f"; {h}" for h in hints if h))
    known = ", ".join(table.entries) or "(none registered)"
    message = f"unknown {singular} {name!r}; registered {kind}: {known}"
    failed = sorted({f.plugin for f in failures([kind])})
    if failed:
        message += f" (plugins that failed and may provide it: {', '.join(origin(p) for p in failed)})"
    return message


def names(kind: str, pattern: str | None = None) -> list[str]:
    """Registered names of one kind, optionally filtered by an fnmatch pattern."""
    all_names = list(entries(kind))
    if pattern:
        all_names = [n for n in all_names if fnmatch.fnmatchcase(n, pattern)]
    return all_names


def lookup(kind: str, name: str):
    """The registered class called ``name``; an unknown name lists the registered ones."""
    table = _table(kind)
    if name in table.clashes:
        raise PluginError(missing_message(kind, name))
    if name not in table.entries:
        raise UnknownNameError(missing_message(kind, name))
    return table.entries[name].obj


def describe_plugins() -> list[dict]:
    """One dict per plugin, failed ones included: name, distribution, version, status ("ok" or
    "failed"), errors (each with how to skip the plugin), hooks and the names it registered."""
    pm = load_plugins()
    by_plugin: dict[str, dict[str, list[str]]] = {}
    for kind in KINDS:
        for entry in entries(kind).values():
            by_plugin.setdefault(entry.plugin, {}).setdefault(kind, []).append(entry.name)
    errors: dict[str, list[str]] = {}
    for failure in failures():
        errors.setdefault(failure.plugin, []).append(failure.message())
    hooks = {name: sorted(h.name for h in pm.get_hookcallers(plugin) or []) for name, plugin in pm.list_name_plugin()}
    out = []
    for name in sorted(set(hooks) | set(errors)):
        dist, version = distribution_of(name)
        out.append({
            "name": name,
            "distribution": dist,
            "version": version,
            "status": "failed" if name in errors else "ok",
            "errors": errors.get(name, []),
            "hooks": hooks.get(name, []),
            "registered": by_plugin.get(name, {}),
        })
    return out


def is_class_of(obj, base) -> bool:
    return inspect.isclass(obj) and issubclass(obj, base)
