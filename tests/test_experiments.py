"""Every shipped grid validates, and every paper grid runs end to end in smoke mode on a tiny model."""
import sys
from pathlib import Path

import pytest

from tokenprune.cli import main
from tokenprune.runner.collect import collect

ROOT = Path(__file__).resolve().parents[1]
GRIDS = sorted((ROOT / "experiments").rglob("*.yaml"))
PAPER = sorted((ROOT / "experiments" / "paper").glob("*.yaml"))

sys.path.insert(0, str(Path(__file__).parent))
import hub_cache  # noqa: E402
import tiny_models  # noqa: E402


@pytest.mark.parametrize("grid", GRIDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_grid_validates(grid, capsys, monkeypatch, tmp_path):
    # the pre-flight reads the configs of the hub checkpoints from a local cache, offline
    hub_cache.offline_cache(monkeypatch, tmp_path / "hub")
    assert main(["run", str(grid), "--dry-run"]) == 0, capsys.readouterr().err
    assert " cells, executor " in capsys.readouterr().out


def test_paper_grids_are_complete():
    names = {p.stem for p in PAPER}
    assert {"main_llava15_7b", "main_llava15_13b", "main_llava_next_7b", "main_qwen2vl_7b", "main_qwen3vl_4b",
            "main_llava_video_7b", "ablations_llava15_7b"} <= names


@pytest.fixture(scope="module")
def smoke_checkpoint():
    return tiny_models.llava(layers=4).checkpoint


@pytest.mark.parametrize("grid", PAPER, ids=lambda p: p.stem)
def test_paper_grid_smoke_runs(grid, tmp_path, smoke_checkpoint, capsys):
    out = tmp_path / "run"
    code = main(["run", str(grid), "--smoke", "--smoke-checkpoint", smoke_checkpoint, "--limit", "1",
                 "--out", str(out), "--quiet", "--no-report"])
    df = collect(out)
    failed = df[df["status"] != "done"]
    assert code == 0 and failed.empty, failed[["label", "budget_label", "error"]].to_string()
    assert set(df["strategy"]) >= {"vanilla", "vlm_pruner"}
