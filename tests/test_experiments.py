"""Every shipped grid validates, every paper grid runs end to end in smoke mode on a tiny model and writes its
full report (paper comparison included), and the paper grids carry the paper's published numbers and sweeps."""
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tokenprune.cli import main
from tokenprune.runner.collect import collect
from tokenprune.runner.grid import load_grid

ROOT = Path(__file__).resolve().parents[1]
GRIDS = sorted((ROOT / "experiments").rglob("*.yaml"))
PAPER = sorted((ROOT / "experiments" / "paper").glob("*.yaml"))

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402


@pytest.mark.parametrize("grid", GRIDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_grid_validates(grid, capsys):
    assert main(["run", str(grid), "--dry-run"]) == 0, capsys.readouterr().err
    assert " cells, executor " in capsys.readouterr().out


def test_paper_grids_are_complete():
    names = {p.stem for p in PAPER}
    assert {"main_llava15_7b", "main_llava15_13b", "main_llava_next_7b", "main_qwen2vl_7b", "main_qwen3vl_4b",
            "main_llava_video_7b", "ablations_llava15_7b", "ablations_qwen3vl_4b"} <= names


@pytest.fixture(scope="module")
def smoke_checkpoint():
    return tiny_models.llava(layers=4).checkpoint


@pytest.mark.parametrize("grid", PAPER, ids=lambda p: p.stem)
def test_paper_grid_smoke_runs_and_reports(grid, tmp_path, smoke_checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the report goes to ./reports/<run name>
    out = tmp_path / "run"
    code = main(["run", str(grid), "--smoke", "--smoke-checkpoint", smoke_checkpoint, "--limit", "1",
                 "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    df = collect(out)
    failed = df[df["status"] != "done"]
    assert code == 0 and failed.empty, failed[["label", "budget_label", "error"]].to_string()
    assert set(df["strategy"]) >= {"vanilla", "vlm_pruner"}
    assert "report not written" not in captured.err and "report: reports/run/report.html" in captured.out
    report = tmp_path / "reports" / "run"
    text = (report / "report.md").read_text()
    assert (report / "report.html").is_file() and "## Paper vs ours" in text
    # every published number is printed on its own row, with its source; a smoke run has no cell to compare
    spec = load_grid(grid).paper
    compared = pd.read_csv(report / "paper_vs_ours.csv", dtype={"strategy": str, "budget": str})
    assert len(compared) == sum(len(r.scores) + (r.avg_relative is not None) for r in spec.rows)
    assert compared["ours"].isna().all()
    for row in spec.rows:
        mine = compared[(compared["strategy"] == row.label) & (compared["budget"] == row.budget)]
        assert set(mine["source"]) == {row.source_text()}
        published = [*row.scores.values()] + ([row.avg_relative] if row.avg_relative is not None else [])
        assert sorted(mine["paper"]) == sorted(published)
        assert f"| {row.label} | {row.budget} |" in text


def _raw(stem):
    return yaml.safe_load((ROOT / "experiments" / "paper" / f"{stem}.yaml").read_text())


@pytest.mark.parametrize("grid", PAPER, ids=lambda p: p.stem)
def test_paper_grids_keep_each_protocols_generation_length(grid):
    # a grid-wide max_new_tokens would cut OCR and VQA answers that the protocols let run longer
    assert "generation" not in yaml.safe_load(grid.read_text())


@pytest.mark.parametrize("grid", PAPER, ids=lambda p: p.stem)
def test_published_numbers_name_their_source(grid):
    # The supplement's Tables 7-15 are the only per-benchmark tables read in the paper itself; the main paper's
    # Tables 1-2 and the video results are known from secondary summaries only.
    for row in load_grid(grid).paper.rows:
        assert row.source == "secondary" or row.source in {f"Table {n}" for n in range(7, 16)}, row
        if row.source == "secondary":
            assert not row.scores and row.avg_relative is not None, row


def test_ablations_sweep_the_papers_values():
    swept = {}
    for entry in _raw("ablations_llava15_7b")["strategies"]:
        for param, values in (entry.get("params") or {} if isinstance(entry, dict) else {}).items():
            swept.setdefault(param, set()).update(values if isinstance(values, list) else [values])
    defaults = {"kappa": 4, "top_q": 256, "tau0": 0.8, "token_batch": 16, "beta": 0.3, "layer": 2}
    paper = {"kappa": set(range(1, 9)), "top_q": {128, 256, 512, 1024, 4096}, "tau0": {0.6, 0.7, 0.8, 0.9, 1.0},
             "token_batch": {1, 2, 4, 8, 16}, "beta": {0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}, "layer": {1, 2, 3, 4}}
    for param, values in paper.items():  # Tables 8-12 and 14; the default runs once, as `default`
        assert swept[param] | {defaults[param]} == values and defaults[param] not in swept[param], param
    assert swept["merge"] == {False}  # Table 12, w/o stage 3
    qwen = {}
    for entry in _raw("ablations_qwen3vl_4b")["strategies"]:
        for param, values in (entry.get("params") or {} if isinstance(entry, dict) else {}).items():
            qwen[param] = set(values)
    assert qwen == {"tau0": {0.6, 0.7, 0.9}, "lam": {0.3, 0.7, 0.9}}  # Table 15 (Query / Value not runnable)


@pytest.mark.parametrize("stem, unpublished", [
    ("ablations_llava15_7b", {"no-bss", "topk-l1-pivots", "faithful"}),
    ("ablations_qwen3vl_4b", set()),
    ("main_qwen2vl_7b", {"cdpruner", "saint"}),
    ("main_qwen3vl_4b", set()),
])
def test_supplement_grids_carry_every_published_cell(stem, unpublished):
    grid = load_grid(ROOT / "experiments" / "paper" / f"{stem}.yaml")
    published = {row.label for row in grid.paper.rows}
    assert {c.label for c in grid.cells} - published == unpublished
    for row in grid.paper.rows:  # and the per-benchmark cells of every row (no table here lacks one)
        assert set(row.scores) == set(grid.paper.metrics), row.label


def test_qwen3vl_runs_vlm_pruner_with_the_papers_defaults():
    from tokenprune.api import strategy_class

    grid = load_grid(ROOT / "experiments" / "paper" / "main_qwen3vl_4b.yaml")
    ours = {c.params["layer"] for c in grid.cells if c.strategy == "vlm_pruner"}
    assert ours == {strategy_class("vlm_pruner").params["layer"].default} == {2}
