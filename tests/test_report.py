"""Reports from run directories, including partial runs with failed and missing cells."""
import json
import re

import pandas as pd
import pytest
import yaml

from tokenprune.cli import main
from tokenprune.report.plots import pareto_front
from tokenprune.report.tables import paper_table, to_markdown
from tokenprune.runner.collect import collect
from tokenprune.runner.grid import parse_grid
from tokenprune.runner.store import RunStore
from runner_fakes import fake_plugin  # noqa: F401

GRID = {
    "name": "fake",
    "models": [{"adapter": "fake_vlm", "checkpoint": "x", "label": "m"}],
    "strategies": ["vanilla", "random", "uniform"],
    "budgets": [4, 9],
    "benchmarks": [{"name": "image_bench", "n": 20}, {"name": "counting_bench", "n": 20}],
}
SCORES = {"vanilla": 100.0, "random": 50.0, "uniform": 75.0}
N = 20  # samples per cell


def fabricate(run_dir, skip=(), fail=()):
    """A run directory written through the real store, with made-up but consistent records."""
    grid = parse_grid(GRID, source="fake.yaml")
    store = RunStore(run_dir)
    store.init(None, GRID)
    for cell in grid.cells:
        key = (cell.strategy, cell.budget, cell.benchmark)
        if key in skip:
            continue
        cs = store.cell(cell)
        cs.prepare()
        if key in fail:
            cs.fail(RuntimeError("plugin exploded"))
            continue
        kept = list(range(0, 36, 4))[: cell.budget or 36] if cell.strategy != "vanilla" else list(range(36))
        score = SCORES[cell.strategy] - (0 if cell.budget != 4 else 10) * (cell.strategy != "vanilla")
        right = round(score / 100 * N)  # the records agree with the score: the first `right` samples are right
        for i in range(N):
            cs.append({"id": f"q{i}", "prediction": "yes", "score": {"correct": float(i < right)}, "meta": {},
                       "n_visual": 36, "count": len(kept), "kept": kept, "order": kept[::-1], "grid": [1, 6, 6],
                       "prompt_tokens": 50, "timings": {"prefill_s": 0.01 * len(kept), "select_s": 0.001}})
        cs.finish({"benchmark_metrics": {"accuracy": score, "type/parity": score}, "main_metric": "accuracy",
                   "tokens": {"kept_mean": len(kept), "n_visual_mean": 36},
                   "flops": {"prefill_flops": 1e9 * (14 + len(kept))},
                   "latency": {"prefill_s_median": 0.01 * len(kept), "select_s_median": 0.001}})
    return grid


def test_collect_and_relative_to_vanilla(tmp_path, fake_plugin):
    fabricate(tmp_path)
    df = collect(tmp_path)
    assert len(df) == 10 and set(df["status"]) == {"done"}
    row = df[(df["strategy"] == "random") & (df["budget"] == 4) & (df["benchmark"] == "counting_bench")].iloc[0]
    assert row["score"] == 40.0 and row["relative"] == pytest.approx(40.0)


def test_loyalty_and_hard_subset(tmp_path, fake_plugin):
    from tokenprune.runner.collect import hard_accuracy, loyalty

    ref = [{"id": "a", "prediction": "Yes.", "score": {"correct": 1.0}},
           {"id": "b", "prediction": "no", "score": {"correct": 0.0}},
           {"id": "c", "prediction": "x", "score": {"pred": "B", "correct": 1.0}}]
    mine = [{"id": "a", "prediction": "yes", "score": {"correct": 1.0}},
            {"id": "b", "prediction": "yes", "score": {"correct": 1.0}},
            {"id": "c", "prediction": "the answer is B", "score": {"pred": "B", "correct": 1.0}}]
    assert loyalty(mine, ref) == pytest.approx(200 / 3)  # b changed its answer (and became right)
    pool = [{"id": "a", "score": {"correct": 0.0}}, {"id": "b", "score": {"correct": 0.0}},
            {"id": "c", "score": {"correct": 1.0}}]
    assert hard_accuracy(mine, pool) == (100.0, 2)
    assert hard_accuracy(ref, pool) == (50.0, 2)


def test_paper_table_groups_budgets_and_marks_best(tmp_path, fake_plugin):
    fabricate(tmp_path)
    table = paper_table(collect(tmp_path), "m")
    assert list(table["budget"].unique()) == ["all", "9", "4"]  # most retained tokens first, as in the paper
    md = to_markdown(table)
    assert "| *Retain 4 tokens (↓88.9%)* |" in md
    assert "| uniform | **65.0** | **65.0** | **65.0%** |" in md
    assert "| random | 40.0 | 40.0 | 40.0% |" in md


def test_report_is_self_contained_and_lists_failures(tmp_path, fake_plugin):
    run = tmp_path / "run"
    fabricate(run, skip={("uniform", 9, "counting_bench")}, fail={("random", 9, "image_bench")})
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # opens from disk, no network
    assert page.count("data:image/png;base64,") >= 5  # curves, Pareto x2, overhead, per type, token pictures
    md = (out / "report.md").read_text()
    assert "FAILED m | random | 9 | image_bench: plugin exploded" in md
    assert "MISSING m | uniform | 9 | counting_bench" in md
    assert re.search(r"\| random \| 50\.0 ±[\d.]+ \| failed \| 50\.0% ±[\d.]+ \|", md)  # image_bench failed
    assert (out / "cells.csv").exists() and (out / "cells.parquet").exists()
    assert list((out).glob("tokens_*.png"))


def test_report_shows_intervals_and_marks_every_strategy_tied_with_the_best(tmp_path, fake_plugin):
    run = tmp_path / "run"
    fabricate(run)
    main(["report", str(run), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "report.md").read_text()
    # at 4 tokens uniform is right on 13 of 20 samples and random on 8 of the same: 5 discordant samples
    # (McNemar p = 1/16), so random is not distinguishable from the best and is bold as well
    row = re.search(r"\| random \| \*\*40\.0 ±([\d.]+)\*\* \| \*\*40\.0 ±[\d.]+\*\* \|", md)
    assert row and 15 < float(row.group(1)) < 25
    assert "| 4 | random | counting_bench | 40.0 [" in md and "| 0.062 | ≈ best |" in md
    comp = pd.read_csv(tmp_path / "rep" / "comparisons.csv")
    best = comp[(comp["budget_label"] == "4") & (comp["benchmark"] == "counting_bench")].set_index("label")
    assert best.loc["uniform", "is_best"] and best.loc["random", "vs_best_diff"] == -25.0
    assert best.loc["random", "vs_best_mcnemar_p"] == pytest.approx(1 / 16)
    cells = pd.read_csv(tmp_path / "rep" / "cells.csv")
    done = cells[cells["status"] == "done"]
    assert (done["score_lo"] <= done["score"]).all() and (done["score"] <= done["score_hi"]).all()
    assert "seeds: [0, 1, 2]" in md  # one seed: random's own luck is not in its interval


def test_report_of_an_empty_run_does_not_crash(tmp_path, fake_plugin):
    RunStore(tmp_path / "run").init(None, GRID)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "rep")]) == 0
    assert "missing: 10" in (tmp_path / "rep" / "report.md").read_text()


def test_report_on_a_non_run_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a tokenprune run directory" in capsys.readouterr().err


def test_paper_numbers_beside_ours(tmp_path, fake_plugin):
    run = tmp_path / "run"
    fabricate(run)
    raw = dict(GRID, paper={"source": "Made-up et al.", "avg_relative": {"uniform": {4: 70.0}},
                            "scores": {"random": {9: {"counting_bench": 52.5}}}})
    RunStore(run).init(None, raw)
    main(["report", str(run), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| uniform | 4 | Avg. % of vanilla | 70.00 | 65.00 | -5.00 |" in md
    assert "| random | 9 | counting_bench | 52.50 | 50.00 | -2.50 |" in md


def test_pareto_front():
    import pandas as pd

    pts = pd.DataFrame({"cost": [1, 2, 3, 4], "value": [10, 5, 20, 15]})
    assert pareto_front(pts, "cost", "value")["cost"].tolist() == [1, 3]


def test_tables_follow_the_comparison_order_and_show_breakdowns(tmp_path, fake_plugin):
    run = tmp_path / "run"
    fabricate(run)
    main(["report", str(run), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "report.md").read_text()
    loyalty = md[md.index("### Loyalty"):md.index("### Spatial")]
    rows = [ln.split(" | ")[1:3] for ln in loyalty.splitlines() if ln.startswith("| m |")]
    # most retained tokens first, then the grid's strategy order, as in the comparison table
    assert rows == [["random", "9"], ["random", "9"], ["uniform", "9"], ["uniform", "9"],
                    ["random", "4"], ["random", "4"], ["uniform", "4"], ["uniform", "4"]]
    parts = md[md.index("### counting_bench: score per group"):]
    assert "| model | label | budget_label | score | type/parity |" in parts
    assert "| m | random | 4 | 40 | 40 |" in parts
    assert (tmp_path / "rep" / "breakdown_counting_bench.csv").exists()
