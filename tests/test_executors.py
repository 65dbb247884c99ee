"""Every built-in executor, and the example of docs/executors.md, leaves the run directory as `local` does
(tokenprune.testing.executors.check_executor); an executor that does not is caught, with the difference."""
import re
import sys
from functools import partial
from pathlib import Path

import datasets
import pytest

from tokenprune import registry
from tokenprune.executors import Executor
from tokenprune.executors.detached import run_detached, run_groups
from tokenprune.runner.latency import LatencyPlan
from tokenprune.testing.executors import check_executor, compare_stores

sys.path.insert(0, str(Path(__file__).parent))
from docs_examples import plugin_from_docs  # noqa: E402


@pytest.fixture(autouse=True)
def _tmp_datasets_cache(tmp_path, monkeypatch):
    # worker processes inherit the environment: the check's small data set is cached under tmp_path
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def test_local_agrees_with_itself(tmp_path):
    """The check is deterministic: two runs in one process leave the same store (the resume is checked
    against local by every other executor's check)."""
    ours, theirs = check_executor("local", tmp_path, resume=False)
    assert compare_stores(ours, theirs) == []
    assert len(list((ours / "cells").iterdir())) == 8


def test_pool(tmp_path):
    check_executor("pool", tmp_path, options={"workers": 2, "threads": 1})


def test_slurm_through_submitit(tmp_path):
    """submitit's debug cluster runs each job's function in this process: the payload, the scratch store and
    the merge are Slurm's own; the process boundary is the one Ray and the docs example cross."""
    pytest.importorskip("submitit")
    check_executor("slurm", tmp_path, options={"cluster": "debug"})


@pytest.mark.ray
def test_ray_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    check_executor("ray", tmp_path, options={"num_cpus": 1}, resume=False)
    assert not ray.is_initialized()  # the instance started for the run went with it


def test_the_docs_example_executor(tmp_path):
    """The plugin module of docs/executors.md, as written there: registered through register_executors."""
    with plugin_from_docs("executors.md", "## Example") as module:
        assert registry.lookup("executors", "processes") is module.ProcessesExecutor
        check_executor("processes", tmp_path, options={"processes": 1}, resume=False)  # one start-up: quicker


class ForgetsTheLatencySubset(Executor):
    """Test-only: runs each group detached without the run's latency settings (what ray and slurm once did)."""

    name = "forgets_latency"

    def run(self, groups, store, *, warmup, progress):
        def submit(payload):
            return partial(run_detached, {**payload, "latency": LatencyPlan().as_dict()}, warmup)

        return run_groups(groups, store, progress, submit)


def test_an_executor_that_breaks_the_contract_fails_the_check(tmp_path):
    with pytest.raises(AssertionError) as caught:
        check_executor(ForgetsTheLatencySubset, tmp_path, resume=False)
    message = str(caught.value)
    assert "executor 'forgets_latency' left another store than local after a fresh run" in message
    assert re.search(r"\(a \| random \| shapes\): latency.jsonl only under local", message)
    assert re.search(r"metrics.json latency source: \"samples-shared\" under forgets_latency, "
                     r"\"latency-subset\" under local", message)
    assert "error.json" not in message and "samples.jsonl" not in message  # the rest agrees


class LosesItsFirstWorker(Executor):
    """Test-only: the worker of the first model group dies (killed, out of memory) without a result."""

    name = "loses_first"

    def run(self, groups, store, *, warmup, progress):
        started = []

        def submit(payload):
            started.append(payload["model"]["label"])
            if len(started) == 1:
                def dead():
                    raise RuntimeError("worker killed: out of memory")
                return dead
            return partial(run_detached, payload, warmup)

        return run_groups(groups, store, progress, submit)


def test_a_dead_worker_fails_only_its_own_cells(tmp_path):
    from tokenprune.runner.store import RunStore
    from tokenprune.testing.executors import check_grid, registered, run_grid

    with registered(LosesItsFirstWorker) as name:
        code, counts = run_grid(check_grid(tmp_path / "data"), tmp_path / "run", {"name": name})
    assert code == 1 and counts == {"done": 2, "skipped": 0, "failed": 6}
    for cs in RunStore(tmp_path / "run").cells():
        if cs.cell.model.label == "a":
            assert not cs.done and cs.error()["type"] == "RuntimeError"
            assert cs.error()["message"] == ("the worker running this cell's model group returned no result: "
                                             "worker killed: out of memory")
        elif cs.cell.benchmark == "shapes":
            assert cs.done and len(cs.records()) == 3 and len(cs.latency_records()) == 2
        else:  # the broken data fails as it does under local, with its own error
            assert cs.error()["type"] == "BenchmarkDataError" and "field 'answer'" in cs.error()["message"]
