"""The sweep runner end to end on a tiny LLaVA: results, resume after a kill, isolation (executors:
test_executors.py)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import tokenprune as tp
from tokenprune.cli import main
from tokenprune.plugins import pm
from tokenprune import registry
from tokenprune.runner.collect import collect
from tokenprune.runner.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint():
    return tiny_models.llava(layers=4).checkpoint


def write_grid(tmp_path, checkpoint, **changes):
    grid = {
        "name": "tiny",
        "models": [{"label": "tiny", "adapter": "llava", "checkpoint": checkpoint}],
        "strategies": ["vanilla", "random", "vlm_pruner", "fastv"],
        "budgets": [9, {"keep_ratio": 0.5}],
        "benchmarks": [{"name": "shapes", "limit": 4}],
        "generation": {"max_new_tokens": 3},
        "latency": {"warmup": 1},
        **changes,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def results(run_dir) -> dict:
    """What must not depend on how the run happened: per cell, per sample prediction, score, kept tokens."""
    out = {}
    for cs in RunStore(run_dir).cells():
        recs = sorted(cs.records(), key=lambda r: r["id"])
        out[cs.cell.id] = [(r["id"], r["prediction"], json.dumps(r["score"]), r["kept"], r["count"]) for r in recs]
    return out


def test_run_records_everything_and_resumes_finished_cells(tmp_path, checkpoint, capsys):
    grid = write_grid(tmp_path, checkpoint)
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    df = collect(out)
    assert len(df) == 1 + 3 * 2 and set(df["status"]) == {"done"}
    vlm_row = df[(df["strategy"] == "vlm_pruner") & (df["budget"] == 9)].iloc[0]
    assert vlm_row["tokens.kept_mean"] == 9 and vlm_row["tokens.n_visual_mean"] == 36
    assert vlm_row["flops.prefill_flops_ratio"] < 1.0
    ratio_row = df[(df["strategy"] == "fastv") & (df["keep_ratio"] == 0.5)].iloc[0]
    assert ratio_row["tokens.kept_mean"] == 18
    vanilla = df[df["strategy"] == "vanilla"].iloc[0]
    assert vanilla["flops.prefill_flops_ratio"] == 1.0
    assert vanilla["latency.prefill_s_median"] > 0 and vanilla["latency.latency_samples"] == 3
    assert vanilla["latency.prefill_s_p25"] <= vanilla["latency.prefill_s_median"] <= vanilla["latency.prefill_s_p75"]
    # a model with several cells runs sample-major by default: its accuracy-pass times are marked as such
    assert vanilla["environment.execution"] == "sample" and vanilla["latency.source"] == "samples-shared"
    assert vanilla["latency.repeats"] == 1
    assert vanilla["environment.device"] == "cpu" and vanilla["environment.attn_implementation"] == "sdpa"
    # the host state the cell was timed under, against the default threshold (a quarter of the CPUs)
    env = RunStore(out).cells()[0].metrics()["environment"]
    assert env["load_threshold"] == 0.25 * env["cpu_count"] and isinstance(env["timed_under_load"], bool)
    assert env["timed_under_load"] == (env["other_cpu_load"] > env["load_threshold"])
    assert env["cpu_threads"] == 1 and env["load_measure"] == ("proc-stat" if Path("/proc/stat").exists() else "loadavg")
    cell = RunStore(out).cells()[0]
    assert (cell.dir / "DONE").exists() and (cell.dir / "spec.json").exists()
    first = results(out)
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert "skipped (already finished) 7" in printed
    assert re.search(r"^run took (\d+ min )?\d+(\.\d)? s$", printed, re.M)  # the wall time a README figure quotes
    first_run, second_run = RunStore(out).invocations()  # and the report's record of it
    assert (first_run["done"], first_run["skipped"], second_run["done"], second_run["skipped"]) == (7, 0, 0, 7)
    assert first_run["wall_s"] > 0 and first_run["executor"] == "local"
    assert results(out) == first


def _run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tokenprune.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path, checkpoint):
    grid = write_grid(tmp_path, checkpoint, strategies=["vanilla", "vlm_pruner"], budgets=[9],
                      benchmarks=[{"name": "shapes", "limit": 6}])
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert main(["run", str(grid), "--out", str(clean), "--quiet", "--no-report"]) == 0
    proc = _run_cli(["run", str(grid), "--out", str(killed), "--quiet", "--no-report"])
    deadline = time.time() + 240
    while time.time() < deadline:  # kill in the middle of the first cell
        lines = sum(p.read_text().count("\n") for p in killed.glob("cells/*/samples.jsonl")) if killed.exists() else 0
        if lines >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = results(killed)
    assert 0 < sum(len(v) for v in partial.values()) < 12, "the kill must land mid-run"
    with open(next(killed.glob("cells/*/samples.jsonl")), "a") as f:
        f.write('{"id": "torn')  # what a kill during a write leaves behind
    assert main(["run", str(grid), "--out", str(killed), "--quiet", "--no-report"]) == 0
    assert results(killed) == results(clean)
    assert all(len(v) == 6 for v in results(killed).values())


class Exploding(tp.Strategy):
    """Test-only: fails on every call."""

    name = "exploding"
    stage = "pre_llm"

    def select(self, keys, attn, coords, budget, ctx):
        raise RuntimeError("kaboom from a buggy plugin")


class _Plugin:
    @staticmethod
    @tp.hookimpl
    def register_strategies(register):
        register(Exploding)


def test_failing_cell_is_isolated_and_reported(tmp_path, checkpoint, capsys):
    pm.register(_Plugin(), name="exploding-plugin")
    registry.clear_caches()
    try:
        grid = write_grid(tmp_path, checkpoint, strategies=["vanilla", "exploding", "random"], budgets=[9])
        out = tmp_path / "run"
        assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 1
        printed = capsys.readouterr().out
        assert "failed 1" in printed and "FAILED tiny | exploding | budget 9" in printed
        df = collect(out)
        assert df.set_index("strategy")["status"].to_dict() == {"vanilla": "done", "exploding": "failed",
                                                                 "random": "done"}
        failed = next(cs for cs in RunStore(out).cells() if cs.cell.strategy == "exploding")
        err = failed.error()
        assert "kaboom from a buggy plugin" in err["message"] and "exploding" in err["message"]
        assert "Traceback" in err["traceback"]
    finally:
        pm.unregister(name="exploding-plugin")
        registry.clear_caches()


def test_downsample_cells_count_tokens_against_the_native_image(tmp_path, checkpoint):
    grid = write_grid(tmp_path, checkpoint, strategies=["downsample"], budgets=[8])
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    row = collect(out).iloc[0]
    assert row["status"] == "done"
    assert row["tokens.n_visual_mean"] == 36 and row["tokens.kept_mean"] == 8
    assert 0 < row["flops.prefill_flops_ratio"] < 0.5
    records = RunStore(out).cells()[0].records()
    assert {r["n_resized"] for r in records} == {9}  # a 3x3 image grid, trimmed to 8
    assert all(r["native_prompt_tokens"] == r["prompt_tokens"] - 9 + 36 for r in records)


def test_two_stage_cells_count_stage_one_tokens_below_layer_k(tmp_path, checkpoint):
    grid = write_grid(tmp_path, checkpoint, strategies=[{"name": "saint_hybrid", "params": {"layer": 2}}],
                      budgets=[8], benchmarks=[{"name": "shapes", "limit": 2}])
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    row = collect(out).iloc[0]
    assert row["status"] == "done"
    assert row["tokens.kept_mean"] == 8 and row["tokens.stage1_kept_mean"] == 23  # round(0.651 * 36)
    assert row["flops.layer_avg_visual_tokens"] == (23 + 23 + 8 + 8) / 4  # 4 layers, K = 2
    assert {r["stage1_count"] for r in RunStore(out).cells()[0].records()} == {23}


def test_latency_subset_interleaves_cells_and_resumes(tmp_path, checkpoint):
    grid = write_grid(tmp_path, checkpoint, strategies=["vanilla", "random"], budgets=[9],
                      benchmarks=[{"name": "shapes", "limit": 3}], generation={"max_new_tokens": 2},
                      latency={"warmup": 1, "subset": 2, "repeats": 2, "max_load": 0.5},
                      executor={"name": "local", "threads": 2})
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert torch.get_num_threads() == 1  # the executor's threads last as long as the run
    cells = RunStore(out).cells()
    samples = {r["sample"] for cs in cells for r in cs.latency_records()}
    assert len(samples) == 2 and samples <= {r["id"] for r in cells[0].records()}
    for cs in cells:
        timed = cs.latency_records()
        assert sorted((r["repeat"], r["sample"]) for r in timed) == sorted((r, s) for r in (0, 1) for s in samples)
        assert len({r["slot"] for r in timed}) > 1  # interleaved: the cell does not always go first
        assert all(r["timings"]["total_s"] > 0 and r["span_s"] > 0 for r in timed)
        metrics = cs.metrics()
        lat, env = metrics["latency"], metrics["environment"]
        assert lat["source"] == "latency-subset" and lat["repeats"] == 2 and lat["latency_samples"] == 4
        assert lat["new_tokens"] == 2 and lat["batch_size"] == 1
        assert lat["total_s_p25"] <= lat["total_s_median"] <= lat["total_s_p75"] <= lat["total_s_p90"]
        assert metrics["latency_accuracy_pass"]["source"] == "samples-shared" and env["execution"] == "sample"
        assert env["cpu_threads"] == 2 and env["load_threshold"] == 0.5 * env["cpu_count"]
    # a kill in the middle of the timing: one cell lost its last times and its metrics still hold the accuracy pass
    cut = next(cs for cs in cells if cs.cell.strategy == "random")
    kept = cut.latency_path.read_text().splitlines(keepends=True)[:2]
    cut.latency_path.write_text("".join(kept) + '{"repeat": 1, "sa')
    metrics = cut.metrics()
    metrics["latency"] = metrics.pop("latency_accuracy_pass")
    cut.write_metrics(metrics)
    others = {cs.cell.id: cs.latency_path.read_text() for cs in cells if cs is not cut}
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert cut.latency_path.read_text().startswith("".join(kept)) and len(cut.latency_records()) == 4
    assert cut.metrics()["latency"]["source"] == "latency-subset"
    assert {cs.cell.id: cs.latency_path.read_text() for cs in cells if cs is not cut} == others  # not re-timed


def test_latency_schedule_rotates_cells_over_a_fixed_spread_subset():
    from tokenprune.runner.latency import fixed_subset, schedule

    assert fixed_subset(list(range(10)), 4) == [0, 2, 5, 7] and fixed_subset([1, 2], 5) == [1, 2]
    order = schedule(["a", "b", "c"], n_samples=2, repeats=2, interleave=True)
    rounds = [[cell for _, _, _, cell in order[i:i + 3]] for i in range(0, 12, 3)]
    assert rounds == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert [(r, j) for r, j, _, _ in order[::3]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(slot == k % 3 for k, (_, _, slot, _) in enumerate(order))
    flat = schedule(["a", "b"], n_samples=2, repeats=2, interleave=False)
    assert [cell for *_, cell in flat] == ["a"] * 4 + ["b"] * 4


def test_latency_section_is_validated():
    from tokenprune.errors import ConfigError
    from tokenprune.runner.grid import parse_grid

    base = {"models": [{"adapter": "llava", "checkpoint": "zoo:shapes-llava-144"}], "strategies": ["vanilla"],
            "benchmarks": ["shapes"]}
    plan = parse_grid({**base, "latency": {"subset": 16, "repeats": 2, "interleave": False}}).latency
    assert (plan.warmup, plan.subset, plan.repeats, plan.interleave, plan.max_load) == (2, 16, 2, False, 0.25)
    with pytest.raises(ConfigError) as err:
        parse_grid({**base, "latency": {"subset": 0, "repeat": 2, "interleave": "yes", "max_load": -1}})
    for line in ("latency.repeat: unknown key", "latency.subset: must be an integer >= 1, got 0",
                 "latency.interleave: must be true or false", "latency.max_load: must be a number >= 0"):
        assert line in str(err.value)
    with pytest.raises(ConfigError, match="latency.repeats: only applies with latency.subset"):
        parse_grid({**base, "latency": {"repeats": 2}})
