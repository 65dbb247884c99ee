"""The example third-party model adapter (examples/tokenprune-smolvlm, SmolVLM / Idefics3) installs with pip
like any plugin, registers through its entry point, and passes its own tests: tokenprune's adapter
conformance suite (every built-in strategy, identity at budget = N, cached generation equal to the
no-cache reference, left-padded batches equal to single calls) and its geometry checks."""
import json
import os
import re
import subprocess
import sys

import pytest

from example_install import build_leftovers, install_example


@pytest.fixture(scope="module")
def smolvlm(tmp_path_factory):
    return install_example("tokenprune-smolvlm", tmp_path_factory.mktemp("smolvlm"))


def _env(site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    env.pop("TOKENPRUNE_LOAD_PLUGINS", None)
    return env


def test_the_adapter_is_registered_through_its_entry_point(smolvlm):
    site, _ = smolvlm
    out = subprocess.run([sys.executable, "-m", "tokenprune.cli", "plugins"], capture_output=True, text=True,
                         env=_env(site), timeout=120)
    plugins = json.loads(out.stdout)
    plugin = next(p for p in plugins if p["name"] == "smolvlm")
    assert plugin["distribution"] == "tokenprune-smolvlm" and plugin["hooks"] == ["register_models"]
    assert plugin["registered"] == {"models": ["smolvlm"]}
    assert [p for p in build_leftovers() if "tokenprune-smolvlm" in p.parts] == []  # built from a copy


def test_the_example_passes_its_tests_and_the_adapter_conformance_suite(smolvlm):
    site, source = smolvlm
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
                          capture_output=True, text=True, env=_env(site), timeout=600, cwd=site)
    assert done.returncode == 0, done.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 30 and "skipped" not in done.stdout  # the conformance suite ran, every strategy included
