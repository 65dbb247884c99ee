"""The plugin system: every hook is tested and documented, loading honours the env vars,
and a real third-party distribution plugs in through its entry points."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tokenprune as tp
from tokenprune import hookspecs, registry
from tokenprune.plugins import pm

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def test_every_hook_has_a_test():
    missing = [h for h in HOOKS if f"test_hook_{h}" not in globals()]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    caller = getattr(pm.hook, hook)
    signature = f"{hook}({', '.join(caller.spec.argnames)})"
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{signature}`" in docs, f"docs/plugins.md lacks a heading for {signature}"
    first_line = caller.spec.function.__doc__.strip().splitlines()[0].replace("``", "`")
    assert first_line in docs


class _Thing:
    def __init__(self, name):
        self.name = name


def _register_temporarily(hook_name, objects, plugin_name):
    class Plugin:
        pass

    def impl(register):
        for obj in objects:
            register(obj)

    impl.__name__ = hook_name
    setattr(Plugin, hook_name, staticmethod(tp.hookimpl(impl)))
    plugin = Plugin()
    pm.register(plugin, name=plugin_name)
    registry.clear_caches()
    return plugin


def _check_hook_registers(kind, hook_name, obj):
    plugin = _register_temporarily(hook_name, [obj], f"test-{kind}")
    try:
        assert registry.lookup(kind, obj.name) is obj
        assert obj.name in registry.names(kind)
    finally:
        pm.unregister(plugin)
        registry.clear_caches()
    assert obj.name not in registry.names(kind)


def test_hook_register_strategies():
    class Echo(tp.Strategy):
        name = "test_echo"
        stage = "pre_llm"

    _check_hook_registers("strategies", "register_strategies", Echo)
    assert "uniform" in tp.list_strategies()  # built-ins arrive through the same hook


def test_hook_register_models():
    _check_hook_registers("models", "register_models", type("M", (), {"name": "test_model"}))


def test_hook_register_benchmarks():
    _check_hook_registers("benchmarks", "register_benchmarks", type("Bm", (), {"name": "test_bench"}))


def test_hook_register_executors():
    _check_hook_registers("executors", "register_executors", type("Ex", (), {"name": "test_exec"}))


def test_duplicate_names_name_both_plugins():
    class Other(tp.Strategy):
        name = "uniform"
        stage = "pre_llm"

    plugin = _register_temporarily("register_strategies", [Other], "clashing-plugin")
    try:
        with pytest.raises(tp.PluginError, match="'uniform' is registered twice: by plugin .* and by plugin"):
            tp.list_strategies()
    finally:
        pm.unregister(plugin)
        registry.clear_caches()


def test_registration_without_a_name_is_refused():
    plugin = _register_temporarily("register_benchmarks", [object], "nameless-plugin")
    try:
        with pytest.raises(tp.PluginError, match="without a 'name'"):
            registry.names("benchmarks")
    finally:
        pm.unregister(plugin)
        registry.clear_caches()


def _cli(*args, env=None, pythonpath=None):
    full_env = dict(os.environ)
    full_env.pop("TOKENPRUNE_LOAD_PLUGINS", None)
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), full_env.get("PYTHONPATH", "")])
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tokenprune.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_load_plugins_env_var_selects_distributions():
    everything = _cli("list", "strategies")
    assert everything.returncode == 0 and "uniform" in everything.stdout.split()
    none = _cli("list", "strategies", env={"TOKENPRUNE_LOAD_PLUGINS": ""})
    assert none.returncode == 0 and none.stdout.strip() == ""
    only_core = _cli("list", "strategies", env={"TOKENPRUNE_LOAD_PLUGINS": "tokenprune"})
    assert only_core.stdout.split() == everything.stdout.split()


def test_trace_plugins_prints_hook_calls():
    out = _cli("list", "strategies", env={"TOKENPRUNE_TRACE_PLUGINS": "1"})
    assert re.search(r"hook register_strategies -> .*baselines", out.stderr)


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """The example third-party plugin, pip-installed (real entry points) into its own directory."""
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
           "--target", str(target), str(ROOT / "examples" / "tokenprune-example")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


def test_third_party_plugin_is_listed(example_site):
    out = _cli("list", "strategies", pythonpath=example_site)
    assert "key_norm" in out.stdout.split()
    plugins = json.loads(_cli("plugins", pythonpath=example_site).stdout)
    example = next(p for p in plugins if p["name"] == "example")
    assert example["distribution"] == "tokenprune-example"
    assert example["version"] == "0.1.0"
    assert example["hooks"] == ["register_strategies"]
    assert example["registered"] == {"strategies": ["key_norm"]}


def test_third_party_plugin_is_skipped_when_excluded(example_site):
    out = _cli("list", "strategies", pythonpath=example_site, env={"TOKENPRUNE_LOAD_PLUGINS": "tokenprune"})
    assert "key_norm" not in out.stdout.split() and "uniform" in out.stdout.split()
    out = _cli("list", "strategies", pythonpath=example_site, env={"TOKENPRUNE_LOAD_PLUGINS": "tokenprune-example"})
    assert out.stdout.split() == ["key_norm"]


def test_third_party_plugin_passes_conformance(example_site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(example_site), os.environ.get("PYTHONPATH", "")]))
    env.pop("TOKENPRUNE_LOAD_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "examples" / "tokenprune-example" / "tests")],
        capture_output=True, text=True, env=env, timeout=300, cwd=example_site,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed", done.stdout)
