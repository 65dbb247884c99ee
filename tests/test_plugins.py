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
from example_install import build_leftovers, install_example
from runner_fakes import fake_plugin  # noqa: F401

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


def test_a_clashing_name_is_usable_by_neither_plugin_and_the_rest_still_works():
    class Other(tp.Strategy):
        name = "uniform"
        stage = "pre_llm"

    plugin = _register_temporarily("register_strategies", [Other], "clashing-plugin")
    try:
        names = tp.list_strategies()
        assert "uniform" not in names and "random" in names  # the other names still register
        with pytest.raises(tp.PluginError, match=r"strategy 'uniform' is registered by more than one plugin: "
                                                 r"plugin 'baselines' \(distribution tokenprune .*\) and "
                                                 r"plugin 'clashing-plugin' \(registered in code"):
            tp.get_strategy("uniform")
        # the built-in is not at fault: only the plugin that re-registers its name is reported
        failed = {f.plugin: f.message() for f in registry.failures()}
        assert list(failed) == ["clashing-plugin"]
        assert "registers the strategy 'uniform', as does plugin 'baselines'" in failed["clashing-plugin"]
    finally:
        pm.unregister(plugin)
        registry.clear_caches()
    assert "uniform" in tp.list_strategies() and registry.failures() == []


def test_a_clashing_name_in_a_grid_says_which_plugins_claim_it(fake_plugin):
    from tokenprune.runner.grid import parse_grid

    raw = {"models": [{"adapter": "fake_vlm", "checkpoint": "p"}], "strategies": ["uniform", "random"],
           "budgets": [4], "benchmarks": ["counting_bench"]}
    plugin = _register_temporarily("register_strategies", [type("U", (tp.Strategy,), {"name": "uniform"})], "clash")
    try:
        with pytest.raises(tp.ConfigError, match=r"strategies\[0\]\.name: strategy 'uniform' is registered by "
                                                 r"more than one plugin"):
            parse_grid(raw, source="g.yaml")
    finally:
        pm.unregister(plugin)
        registry.clear_caches()


def test_registration_without_a_name_fails_only_that_plugin():
    plugin = _register_temporarily("register_benchmarks", [object], "nameless-plugin")
    try:
        assert "pope" in registry.names("benchmarks")
        [failure] = registry.failures(["benchmarks"])
        assert failure.plugin == "nameless-plugin" and "without a 'name'" in failure.error
    finally:
        pm.unregister(plugin)
        registry.clear_caches()


def test_a_hook_that_raises_loses_only_its_own_registrations():
    class Plugin:
        @staticmethod
        @tp.hookimpl
        def register_executors(register):
            register(type("Half", (), {"name": "half_registered"}))
            raise RuntimeError("cluster config missing")

    pm.register(Plugin(), name="raising-plugin")
    registry.clear_caches()
    try:
        assert registry.names("executors") == ["local", "pool", "ray", "slurm"]
        with pytest.raises(tp.UnknownNameError, match=r"unknown executor 'half_registered'.*plugins that failed "
                                                      r"and may provide it: plugin 'raising-plugin'"):
            registry.lookup("executors", "half_registered")
        [failure] = registry.failures(["executors"])
        assert failure.error == "register_executors raised RuntimeError: cluster config missing"
    finally:
        pm.unregister(name="raising-plugin")
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


def _write_distribution(site: Path, name: str, version: str, module: str, source: str, entry_point: str):
    """A minimal installed distribution: a module and its dist-info with one `tokenprune` entry point,
    which importlib.metadata finds on sys.path exactly as it finds a pip-installed one."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[tokenprune]\n{entry_point} = {module}\n")


CLASHING = """
import tokenprune as tp

class Uniform(tp.Strategy):
    name = "uniform"
    stage = "pre_llm"

class Mine(tp.Strategy):
    name = "mine"
    stage = "pre_llm"

@tp.hookimpl
def register_strategies(register):
    register(Uniform)
    register(Mine)
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """Four installed third-party plugins: one re-registers a built-in name, one raises at import,
    one raises in its hook, one takes a built-in's entry-point name (and comes first on sys.path)."""
    site = tmp_path_factory.mktemp("broken-site")
    _write_distribution(site, "tokenprune-clash", "0.3", "tokenprune_clash", CLASHING, "clash")
    _write_distribution(site, "tokenprune-broken", "1.2", "tokenprune_broken",
                        "raise ImportError('No module named torch_magic')\n", "broken")
    _write_distribution(site, "tokenprune-hookfail", "2.0", "tokenprune_hookfail",
                        "import tokenprune as tp\n\n@tp.hookimpl\ndef register_benchmarks(register):\n"
                        "    raise RuntimeError('data folder missing')\n", "hookfail")
    _write_distribution(site, "tokenprune-shadow", "0.1", "tokenprune_shadow", "", "baselines")
    return site


def test_broken_plugins_do_not_take_list_down_and_say_how_to_skip_them(broken_site):
    out = _cli("list", pythonpath=broken_site)
    assert out.returncode == 0, out.stderr
    assert "random" in out.stdout.split() and "mine" in out.stdout.split() and "pope" in out.stdout.split()
    assert "uniform" not in out.stdout.split()  # claimed twice: usable by neither
    warnings = out.stderr.strip().splitlines()
    assert len(warnings) == 4 and all(w.startswith("tokenprune: warning: plugin '") for w in warnings)
    by_plugin = {w.split("'")[1]: w for w in warnings}
    assert "(distribution tokenprune-clash 0.3) failed: it registers the strategy 'uniform', as does plugin " \
           "'baselines' (distribution tokenprune " in by_plugin["clash"]
    assert "(distribution tokenprune-broken 1.2) failed: loading tokenprune_broken raised ImportError: " \
           "No module named torch_magic" in by_plugin["broken"]
    assert "(distribution tokenprune-hookfail 2.0) failed: register_benchmarks raised RuntimeError: " \
           "data folder missing" in by_plugin["hookfail"]
    assert "(distribution tokenprune-shadow 0.1) failed: its entry-point name 'baselines' is already taken by " \
           "distribution tokenprune" in by_plugin["baselines@tokenprune-shadow"]
    skip = re.search(r"to skip tokenprune-clash, set TOKENPRUNE_LOAD_PLUGINS=(\S+) \(the distributions to load\) or run "
                     r"`pip uninstall tokenprune-clash`", by_plugin["clash"])
    assert skip, by_plugin["clash"]
    assert skip.group(1) == "tokenprune,tokenprune-broken,tokenprune-hookfail,tokenprune-shadow"
    # the printed value does skip it: uniform is the built-in again, the other two are still reported
    skipped = _cli("list", pythonpath=broken_site, env={"TOKENPRUNE_LOAD_PLUGINS": skip.group(1)})
    assert skipped.returncode == 0 and "uniform" in skipped.stdout.split() and "mine" not in skipped.stdout.split()
    assert "tokenprune-clash" not in skipped.stderr and len(skipped.stderr.strip().splitlines()) == 3


def test_broken_plugins_are_shown_as_failed_by_plugins(broken_site):
    out = _cli("plugins", pythonpath=broken_site)
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["baselines"]["status"] == "ok" and plugins["baselines"]["errors"] == []
    for name, dist, version in [("clash", "tokenprune-clash", "0.3"), ("broken", "tokenprune-broken", "1.2"),
                                ("hookfail", "tokenprune-hookfail", "2.0")]:
        entry = plugins[name]
        assert (entry["distribution"], entry["version"], entry["status"]) == (dist, version, "failed")
        [error] = entry["errors"]
        assert f"(distribution {dist} {version}) failed: " in error and "TOKENPRUNE_LOAD_PLUGINS=" in error
    assert plugins["clash"]["registered"] == {"strategies": ["mine"]}


def test_a_command_that_needs_the_clashing_name_says_so_in_one_line(broken_site):
    out = _cli("show", "uniform", pythonpath=broken_site)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    error = out.stderr.splitlines()[0]
    assert error.startswith("tokenprune: error: strategy 'uniform' is registered by more than one plugin: plugin "
                            "'baselines' (distribution tokenprune ")
    assert "plugin 'clash' (distribution tokenprune-clash 0.3)" in error and "TOKENPRUNE_LOAD_PLUGINS=" in error


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """The example third-party plugin, pip-installed (real entry points) into its own directory."""
    return install_example("tokenprune-example", tmp_path_factory.mktemp("example"))


def test_third_party_plugin_is_listed(example_site):
    site, _ = example_site
    out = _cli("list", "strategies", pythonpath=site)
    assert "key_norm" in out.stdout.split()
    plugins = json.loads(_cli("plugins", pythonpath=site).stdout)
    example = next(p for p in plugins if p["name"] == "example")
    assert example["distribution"] == "tokenprune-example"
    assert example["version"] == "0.1.0"
    assert example["status"] == "ok"
    assert example["hooks"] == ["register_strategies"]
    assert example["registered"] == {"strategies": ["key_norm"]}


def test_third_party_plugin_is_skipped_when_excluded(example_site):
    site, _ = example_site
    out = _cli("list", "strategies", pythonpath=site, env={"TOKENPRUNE_LOAD_PLUGINS": "tokenprune"})
    assert "key_norm" not in out.stdout.split() and "uniform" in out.stdout.split()
    out = _cli("list", "strategies", pythonpath=site, env={"TOKENPRUNE_LOAD_PLUGINS": "tokenprune-example"})
    assert out.stdout.split() == ["key_norm"]


def test_third_party_plugin_passes_conformance(example_site):
    site, source = example_site
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    env.pop("TOKENPRUNE_LOAD_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
        capture_output=True, text=True, env=env, timeout=300, cwd=site,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"\d+ passed", done.stdout)


def test_installing_the_examples_leaves_no_build_folders_in_the_repository(example_site):
    assert build_leftovers() == []
