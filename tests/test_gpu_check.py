"""scripts/gpu_check.sh: refuses clearly without CUDA, and its steps run end to end (--dry-run: CPU, toy sizes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def gpu_check(*args):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script would run the whole check")
def test_without_cuda_it_stops_at_once_and_says_why(tmp_path):
    done = gpu_check("--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert f"torch {torch.__version__} sees no CUDA device" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_argument_is_refused():
    done = gpu_check("--fast")
    assert done.returncode == 2 and "unknown argument '--fast'" in done.stderr


def test_dry_run_runs_every_step_and_writes_labelled_results(tmp_path):
    out = tmp_path / "gpu"
    done = gpu_check("--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    assert f"torch {torch.__version__}" in summary and "dry run: CPU" in summary
    for step in ("cuda_tests", "bench_select", "bench_e2e_zoo_shapes-llava-144"):
        assert f"| {step} | ok |" in summary
    # the CUDA step found the CUDA-marked tests (it collects them on CPU)
    assert "test_pruned_generate_on_cuda_equals_cpu[vlm_pruner]" in (out / "cuda_tests.log").read_text()
    select = json.loads((out / "select.json").read_text())
    assert select["environment"]["device"] == "cpu"
    assert {(r["shape"], r["dtype"]) for r in select["rows"]} == {("llava-1.5-7b", "bfloat16")}
    e2e = json.loads((out / "e2e_zoo_shapes-llava-144.json").read_text())
    assert [r["strategy"] for r in e2e["rows"]] == ["vanilla", "limit", "random"]
    assert all(r["dtype"] == "bfloat16" and r["attn"] == "sdpa" for r in e2e["rows"])
