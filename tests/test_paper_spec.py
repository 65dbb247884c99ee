"""The grid's `paper:` section: typed and checked against the grid at load time, stored with a run, and printed
row by row beside our numbers with each row's source."""
import json

import pandas as pd
import pytest
import yaml

from tokenprune import ConfigError
from tokenprune.benchmarks.mme import MME
from tokenprune.cli import main
from tokenprune.report.paper import comparison
from tokenprune.runner.collect import collect
from tokenprune.runner.grid import parse_grid
from tokenprune.runner.paper_spec import load_paper
from runner_fakes import fake_plugin  # noqa: F401

BASE = {
    "models": [{"adapter": "fake_vlm", "checkpoint": "some/path", "label": "m"}],
    "strategies": ["vanilla", "random", {"name": "uniform", "label": "grid"}],
    "budgets": {"count": [64], "keep_ratio": [0.111, 0.333]},
    "benchmarks": [{"name": "counting_bench", "limit": 3}, "image_bench"],
}
METRICS = {"counting_bench": "accuracy", "image_bench": "accuracy"}


def paper(*rows, **section):
    return {"source": "A paper (arXiv 0000.00000)", "metrics": METRICS, "rows": list(rows), **section}


def grid(section, **changes):
    return parse_grid({**BASE, **changes, "paper": section}, source="g.yaml")


def test_budgets_are_named_as_the_cells_name_them(fake_plugin):
    g = grid(paper({"label": "vanilla", "budget": "all", "source": "Table 7", "scores": {"image_bench": 90}},
                   {"label": "random", "budget": 0.111, "source": "Table 7", "avg_relative": 91.2},
                   {"label": "grid", "budget": "0.333", "source": "secondary", "avg_relative": 95},  # JSON-style text
                   {"label": "grid", "budget": "11.1%", "source": "Table 13", "avg_relative": 93},
                   {"label": "random", "budget": 64, "source": "derived", "avg_relative": 90, "note": "mean of two"}))
    labels = {c.budget_label() for c in g.cells}
    assert [r.budget for r in g.paper.rows] == ["all", "11.1%", "33.3%", "11.1%", "64"]
    assert {r.budget for r in g.paper.rows} <= labels
    assert g.paper.rows[1].avg_relative == 91.2 and g.paper.rows[0].scores == {"image_bench": 90.0}
    assert g.paper.metrics == METRICS and g.paper.rows[4].source_text() == "derived: mean of two"


@pytest.mark.parametrize("section, message", [
    (paper({"label": "fastv", "budget": 64, "source": "Table 7", "avg_relative": 90}),
     r"paper\.rows\[0\]\.label: 'fastv' is not a strategy label of the grid; its labels: grid, random, vanilla"),
    (paper({"label": "random", "budget": 0.222, "source": "Table 7", "avg_relative": 90}),
     r"paper\.rows\[0\]\.budget: 22\.2% is not a budget of the grid; its budgets: 64, 11\.1%, 33\.3%"),
    (paper({"label": "random", "budget": "many", "source": "Table 7", "avg_relative": 90}),
     r"paper\.rows\[0\]\.budget: 'many': use 'all' \(vanilla\), a token count \(64\) or a keep ratio"),
    (paper({"label": "vanilla", "budget": 64, "source": "Table 7", "scores": {"image_bench": 1}}),
     r"paper\.rows\[0\]\.budget: 'vanilla' keeps every token: its budget is 'all', not 64"),
    (paper({"label": "random", "budget": 64, "source": "supplement Tables 8-14", "avg_relative": 90}),
     r"paper\.rows\[0\]\.source: 'supplement Tables 8-14': must be \"Table N\""),
    (paper({"label": "random", "budget": 64, "avg_relative": 90}), r"paper\.rows\[0\]\.source: None: must be"),
    (paper({"label": "random", "budget": 64, "source": "derived", "avg_relative": 90}),
     r"paper\.rows\[0\]\.note: a derived number must say how it was derived"),
    (paper({"label": "random", "budget": 64, "source": "Table 8"}),
     r"paper\.rows\[0\]: gives no number: add avg_relative or scores"),
    (paper({"label": "random", "budget": 64, "source": "Table 8", "scores": {"shapes": 50}}),
     r"paper\.rows\[0\]\.scores\.shapes: not in paper\.metrics; name the metric the paper reports for it there"),
    (paper({"label": "random", "budget": 64, "source": "Table 8", "scores": {"image_bench": "high"}}),
     r"paper\.rows\[0\]\.scores\.image_bench: 'high' must be a number"),
    (paper({"label": "random", "budget": 64, "source": "Table 8", "avg_relative": 90},
           {"label": "random", "budget": "64", "source": "secondary", "avg_relative": 91}),
     r"paper\.rows\[1\]: a second row for 'random' at budget 64"),
    (paper({"label": "random", "budget": 64, "source": "Table 8", "avg_relative": 90, "stderr": 1}),
     r"paper\.rows\[0\]\.stderr: unknown key; allowed: label, budget, source, avg_relative, scores, note"),
    (paper({"label": "random", "budget": 64, "source": "Table 8", "avg_relative": 90}, metrics={"shapes": "accuracy"}),
     r"paper\.metrics\.shapes: not a benchmark of the grid; its benchmarks: counting_bench, image_bench"),
    (paper({"label": "random", "budget": 64, "source": "Table 8", "avg_relative": 90}, metrics={"mmee": "total"}),
     r"paper\.metrics\.mmee: unknown benchmark; registered benchmarks: .*mme"),
    (paper({"label": "random", "budget": 64, "source": "Table 8", "avg_relative": 90},
           metrics={"counting_bench": "f1"}),
     r"paper\.metrics\.counting_bench: 'f1' is not what a cell of 'counting_bench' reports: .* main metric 'accuracy'"),
    ({"source": "x", "rows": [], "avg_relative": {"random": {64: 90}}},
     r"paper\.avg_relative: unknown key; allowed: source, metrics, rows"),
    ({"metrics": METRICS, "rows": "none"}, r"paper\.source: the work the numbers come from is required"),
    ([1, 2], r"paper: must be a mapping with keys source, metrics, rows"),
])
def test_paper_section_errors_say_where(fake_plugin, section, message):
    with pytest.raises(ConfigError, match=message) as info:
        grid(section)
    assert str(info.value).startswith("g.yaml: ")


def test_every_problem_is_reported_at_once(fake_plugin):
    section = paper({"label": "fastv", "budget": 64, "source": "Table 7", "avg_relative": 90},
                    {"label": "random", "budget": 0.5, "source": "paper", "avg_relative": 90})
    with pytest.raises(ConfigError, match=r"3 problem\(s\)") as info:
        grid(section)
    text = str(info.value)
    assert "rows[0].label" in text and "rows[1].budget" in text and "rows[1].source" in text


def test_mme_is_compared_on_perception_plus_cognition(fake_plugin):
    # the paper's MME column is the total (Qwen2-VL-7B's 2321 is above the 2000 perception maximum)
    assert MME.main_metric == "total"
    records = [{"meta": {"category": c, "question_id": f"{c}.png"}, "score": {"correct": ok}}
               for c, ok in [("OCR", 1.0), ("OCR", 1.0), ("code_reasoning", 1.0), ("code_reasoning", 0.0)]]
    metrics = MME.__new__(MME).aggregate(records)
    assert metrics["total"] == metrics["perception"] + metrics["cognition"] == 200.0 + 50.0
    g = parse_grid({**BASE, "benchmarks": ["mme"], "paper": {"source": "x", "metrics": {"mme": "total"}, "rows": [
        {"label": "random", "budget": 64, "source": "Table 8", "scores": {"mme": 1752}}]}}, source="g.yaml")
    assert g.paper.metrics == {"mme": "total"}
    with pytest.raises(ConfigError, match=r"paper\.metrics\.mme: 'perception' is not what a cell of 'mme' reports"):
        parse_grid({**BASE, "benchmarks": ["mme"], "paper": {"source": "x", "metrics": {"mme": "perception"}, "rows": [
            {"label": "random", "budget": 64, "source": "Table 8", "scores": {"mme": 1752}}]}}, source="g.yaml")


def test_smoke_substitution_keeps_the_paper_section_checked_against_the_grid_as_written(fake_plugin):
    section = paper({"label": "random", "budget": 64, "source": "Table 8", "scores": {"image_bench": 80}})
    overrides = {"budgets": {"keep_ratio": [0.1111]}, "benchmarks": [{"name": "counting_bench", "limit": 1}]}
    g = parse_grid({**BASE, "paper": section}, source="g.yaml", overrides=overrides)
    assert {c.budget_label() for c in g.cells} == {"all", "11.1%"}
    assert {c.benchmark for c in g.cells} == {"counting_bench"}
    assert g.raw["overridden"] == {"budgets": BASE["budgets"], "benchmarks": BASE["benchmarks"]}
    stored = json.loads(json.dumps(g.raw))  # what a run directory keeps (grid.json) parses again, as it ran
    again = parse_grid(stored, source="grid.json")
    assert [c.id for c in again.cells] == [c.id for c in g.cells] and again.paper == g.paper
    assert parse_grid({**BASE, "paper": section}, source="g.yaml").raw.get("overridden") is None


def test_comparison_averages_only_over_the_papers_whole_benchmark_set(fake_plugin):
    spec = load_paper(paper({"label": "random", "budget": 0.111, "source": "Table 7", "avg_relative": 90.0,
                             "scores": {"counting_bench": 40.0}}))
    cells = pd.DataFrame([
        {"status": "done", "model": "m", "label": "random", "budget_label": "11.1%", "benchmark": "counting_bench",
         "score": s, "relative": r} for s, r in [(50.0, 80.0), (60.0, 90.0)]  # two seeds
    ] + [{"status": "failed", "model": "m", "label": "random", "budget_label": "11.1%", "benchmark": "image_bench",
          "score": None, "relative": None}])
    table = comparison(cells, spec).set_index("metric")
    assert table.loc["counting_bench (accuracy)", "ours"] == 55.0
    assert table.loc["counting_bench (accuracy)", "diff"] == 15.0
    assert pd.isna(table.loc["Avg. % of vanilla (2 benchmarks)", "ours"])  # image_bench did not finish
    cells.loc[2, ["status", "relative"]] = ["done", 100.0]
    table = comparison(cells, spec).set_index("metric")
    assert table.loc["Avg. % of vanilla (2 benchmarks)", "ours"] == pytest.approx((85.0 + 100.0) / 2)
    assert set(table["source"]) == {"Table 7"}


def test_keep_ratio_grid_runs_and_reports_beside_the_paper(tmp_path, monkeypatch, capsys):
    # the path that crashed: a keep-ratio budget read back from the run's stored grid
    monkeypatch.chdir(tmp_path)
    raw = {"name": "ratio", "models": [{"adapter": "llava", "checkpoint": "zoo:shapes-llava-144", "label": "tiny"}],
           "strategies": ["vanilla", "uniform"], "budgets": {"keep_ratio": [0.111]},
           "benchmarks": [{"name": "shapes", "limit": 6}], "generation": {"max_new_tokens": 2},
           "paper": {"source": "A paper", "metrics": {"shapes": "accuracy"}, "rows": [
               {"label": "vanilla", "budget": "all", "source": "Table 7", "scores": {"shapes": 97.0}},
               {"label": "uniform", "budget": 0.111, "source": "secondary", "avg_relative": 70.0}]}}
    path = tmp_path / "ratio.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "report: reports/run/report.html" in capsys.readouterr().out
    df = collect(tmp_path / "run").set_index("label")
    table = pd.read_csv(tmp_path / "reports" / "run" / "paper_vs_ours.csv", dtype={"budget": str})
    vanilla, uniform = table.iloc[0], table.iloc[1]
    assert (vanilla["budget"], vanilla["ours"]) == ("all", pytest.approx(df.loc["vanilla", "score"]))
    assert (uniform["budget"], uniform["source"]) == ("11.1%", "secondary")
    assert uniform["ours"] == pytest.approx(df.loc["uniform", "relative"])
    assert uniform["diff"] == pytest.approx(uniform["ours"] - 70.0)
    assert "| tiny | uniform | 11.1% | Avg. % of vanilla (1 benchmarks) | 70.00 |" in (
        tmp_path / "reports" / "run" / "report.md").read_text()
