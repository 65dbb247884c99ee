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


def fabricate(run_dir, skip=(), fail=(), raw=GRID, rewrite=lambda cells: cells, extra=lambda cell: {}):
    """A run directory written through the real store, with made-up but consistent records; ``rewrite``
    changes the cells after the grid is read, as ``--smoke`` does; ``extra(cell)`` adds latency and
    environment fields to a cell's metrics."""
    grid = parse_grid(raw, source="fake.yaml")
    store = RunStore(run_dir)
    store.init(None, raw)
    for cell in rewrite(grid.cells):
        key = (cell.strategy, cell.budget, cell.benchmark)
        if key in skip:
            continue
        cs = store.cell(cell)
        cs.prepare()
        if key in fail:
            cs.fail(RuntimeError("plugin exploded"))
            continue
        kept = list(range(0, 36, 4))[: cell.budget or 36] if cell.strategy != "vanilla" else list(range(36))
        score = SCORES.get(cell.strategy, 70.0) - (0 if cell.budget != 4 else 10) * (cell.strategy != "vanilla")
        score += 5.0 * cell.seed * (cell.strategy == "random")  # another draw, another score
        right = round(score / 100 * N)  # the records agree with the score: the first `right` samples are right
        for i in range(N):
            cs.append({"id": f"q{i}", "prediction": "yes", "score": {"correct": float(i < right)}, "meta": {},
                       "n_visual": 36, "count": len(kept), "kept": kept, "order": kept[::-1], "grid": [1, 6, 6],
                       "prompt_tokens": 50, "timings": {"prefill_s": 0.01 * len(kept), "select_s": 0.001}})
        cs.finish({"benchmark_metrics": {"accuracy": score, "type/parity": score}, "main_metric": "accuracy",
                   "tokens": {"kept_mean": len(kept), "n_visual_mean": 36},
                   "flops": {"prefill_flops": 1e9 * (14 + len(kept))},
                   "latency": {"prefill_s_median": 0.01 * len(kept), "select_s_median": 0.001,
                               **extra(cell).get("latency", {})},
                   "environment": {"device": "cpu", "cpu_threads": 2, "torch": "2.13.0", "load_average_1min": 0.5,
                                   **extra(cell).get("environment", {})}})
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
    for cs in RunStore(run).cells():  # a score its records do not reproduce gets no interval
        if (cs.cell.strategy, cs.cell.budget, cs.cell.benchmark) == ("uniform", 4, "image_bench"):
            cs.finish({**cs.metrics(), "benchmark_metrics": {"accuracy": 66.0}})
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # opens from disk, no network
    assert page.count("data:image/png;base64,") >= 5  # curves, Pareto x2, overhead, token pictures
    md = (out / "report.md").read_text()
    assert "FAILED m | random | 9 | image_bench: plugin exploded" in md
    assert "MISSING m | uniform | 9 | counting_bench" in md
    assert re.search(r"\| random \| 50\.0 ±[\d.]+ \| failed \| 50\.0% ±[\d.]+ \|", md)  # image_bench failed
    assert "- m | uniform | 4 | image_bench: no interval (ValueError: its 20 records score 65, metrics.json says 66)" in md
    assert re.search(r"\| uniform \| \*\*65\.0 ±[\d.]+\*\* \| \*\*66\.0\*\* \|", md)  # the score, no ±
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
    assert "What this model's ranking" not in md  # only said of the bundled model


def test_a_smoke_run_whose_layers_were_clamped_lists_no_missing_cells(tmp_path, fake_plugin):
    from tokenprune.runner.cli import clamp_layers

    raw = dict(GRID, strategies=["vanilla", {"name": "fastv", "params": {"layer": 3}}],
               benchmarks=[{"name": "counting_bench", "n": 20}],
               models=[{"adapter": "fake_vlm", "checkpoint": "zoo:shapes-llava-144", "label": "m"}])
    run = tmp_path / "run"
    fabricate(run, raw=raw, rewrite=lambda cells: clamp_layers(cells, 2), skip={("fastv", 4, "counting_bench")})
    main(["report", str(run), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "MISSING m | fastv(layer=3) | 4 | counting_bench" in md  # really never run
    assert "MISSING m | fastv(layer=3) | 9 |" not in md  # run with layer 1: smoke mode clamped it
    assert "Cells: done: 2, missing: 1" in md
    assert "**What this model's ranking can and cannot show.**" in md  # the bundled checkpoint's caveat


def test_latency_spread_environment_and_load_warning(tmp_path, fake_plugin):
    def extra(cell):  # the uniform cells record quartiles and were timed on a busy host
        if cell.strategy != "uniform":
            return {}
        return {"latency": {"prefill_s_p25": 0.001, "prefill_s_p75": 0.5, "select_s_p25": 0.0005,
                            "select_s_p75": 0.002, "source": "latency-subset", "repeats": 3},
                "environment": {"load_threshold": 0.5, "timed_under_load": True, "load_average_1min": 3.2,
                                "other_cpu_load": 1.25, "cpu_count": 2}}

    run = tmp_path / "run"
    fabricate(run, extra=extra)
    RunStore(run).record_invocation({"wall_s": 95.2, "done": 10, "skipped": 0, "failed": 0})
    RunStore(run).record_invocation({"wall_s": 4.04, "done": 0, "skipped": 9, "failed": 1})  # a resumed run
    main(["report", str(run), "--out", str(tmp_path / "rep")])
    cells = pd.read_csv(tmp_path / "rep" / "cells.csv").set_index(["strategy", "budget", "benchmark"])
    assert cells.loc[("uniform", 4, "image_bench"), "latency.prefill_s_p75"] == 0.5  # as recorded
    # an older cell without quartiles: from its per-sample times (all equal here)
    assert cells.loc[("random", 4, "image_bench"), "latency.prefill_s_p25"] == pytest.approx(0.04)
    md = (tmp_path / "rep" / "report.md").read_text()
    warning = md[md.index("## Warning: timed under load"):md.index("## m")]
    assert "**4 of 10 cells were timed while the host was busy**" in warning
    assert "- m | uniform | 4 | image_bench: other processes used 1.25 CPUs, threshold 0.50" in warning
    env = md[md.index("### Environment"):]
    assert "| torch threads | 2 |" in env and "| load threshold (CPUs) | not recorded (6 cells), 0.5 (4 cells) |" in env
    assert "| CPUs | not recorded (6 cells), 2 (4 cells) |" in env
    assert "| CPUs other processes used while timing | 1.25 – 1.25 (median 1.25) |" in env
    assert "| 1-min load average when each cell's timings were recorded (ours included) | 0.50 – 3.20 (median 0.50) |" in env
    assert "| cells timed under load | 4 of 10 |" in env
    assert "| latency measured on | not recorded (6 cells), latency-subset (4 cells) |" in env
    assert ("| wall time of each `tokenprune run` (accuracy pass and latency, report excluded) | "
            "1 min 35 s (10 cells run, 0 already done); 4.0 s (0 cells run, 9 already done, 1 failed) |") in env


def test_seeds_are_pooled_with_their_spread(tmp_path, fake_plugin):
    run = tmp_path / "run"
    fabricate(run, raw=dict(GRID, seeds=[0, 1], benchmarks=[{"name": "counting_bench", "n": 20}]))
    main(["report", str(run), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "report.md").read_text()
    # random scores 40 and 45 at 4 tokens with seeds 0 and 1: mean 42.5, sd 3.5
    assert re.search(r"\| random \| (\*\*)?42\.5 ±[\d.]+ sd 3\.5(\*\*)? \|", md)
    seeds = md[md.index("### Across seeds"):]
    assert "| m | 4 | random | counting_bench | 2 | 42.5 | 3.5 |" in seeds
    assert "| m | 4 | uniform | counting_bench | 2 | 65.0 | 0.0 |" in seeds


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
    metrics = {"counting_bench": "accuracy", "image_bench": "accuracy"}
    raw = dict(GRID, paper={"source": "Made-up et al.", "metrics": metrics,
                            "rows": [{"label": "uniform", "budget": 4, "source": "Table 2", "avg_relative": 70.0},
                                     {"label": "random", "budget": 9, "source": "secondary",
                                      "scores": {"counting_bench": 52.5}}]})
    RunStore(run).init(None, raw)
    main(["report", str(run), "--out", str(tmp_path / "rep")])
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| m | uniform | 4 | Avg. % of vanilla (2 benchmarks) | 70.00 | 65.00 | -5.00 | Table 2 |" in md
    assert "| m | random | 9 | counting_bench (accuracy) | 52.50 | 50.00 | -2.50 | secondary |" in md


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
    assert "| strategy | score | type/parity |" in parts
    assert "| *budget 4* | | |\n| random | 40.0 | 40.0 |" in parts
    page = (tmp_path / "rep" / "report.html").read_text()
    heat = page[page.index("counting_bench: score per group"):]
    assert re.search(r'<td style="background:#[0-9a-f]{6}">40\.0</td>', heat)  # a heatmap: value and colour
    assert (tmp_path / "rep" / "breakdown_counting_bench.csv").exists()


def test_each_strategy_keeps_one_look_and_the_references_keep_theirs():
    from tokenprune.report.style import RESERVED, Styles

    a = Styles(["vanilla", "fastv", "random", "dart", "uniform"], {})
    b = Styles(["dart", "uniform", "random", "vanilla", "fastv", "saint(layer=2)"], {"saint(layer=2)": "saint"})
    for ref in ("vanilla", "random", "uniform"):
        assert (a[ref].colour, a[ref].marker) == (b[ref].colour, b[ref].marker) == RESERVED[ref]
    looks = [(b[x].colour, b[x].marker) for x in b.order]
    assert len(set(looks)) == len(looks)  # no two strategies alike
    assert a["fastv"] != a["dart"] and a["fastv"] == Styles(["fastv", "dart"], {})["fastv"]  # grid order decides


def test_a_strategy_that_saw_a_smaller_image_is_drawn_on_it():
    from PIL import Image

    from tokenprune.report.pictures import _panel

    image = Image.new("RGB", (96, 96), "white")
    record = {"kept": [0, 5], "count": 2, "n_visual": 144, "n_resized": 16, "grid": [1, 4, 4], "prediction": "red"}
    label, picture, note, _ = _panel("downsample", record, image, native=(12, 12))
    assert picture is not None and note == "2 kept of 4x4 (input 32x32 px)"
    video = {"kept": [0, 5], "n_visual": 32, "grid": [2, 4, 4]}
    _, missing, why, _ = _panel("video", video, image, native=(12, 12))
    assert missing is None and why == "not drawn: 32 tokens in 2 frame(s) of 4x4"


def test_markdown_and_html_come_from_the_same_sections():
    from tokenprune.report.document import Cell, Figure, Section, Table, Text, to_html, to_markdown

    sections = [Section("Title", [Text("See `pool` and **this**.")], level=1),
                Section("Scores", [Table(["Method", "a"], [[Cell("budget 4", italic=True), ""],
                                                          ["x", Cell("1.0 ±0.2", bold=True, colour="#aabbcc")]]),
                                   Figure("f.png", b"\x89PNG", "a figure", min_width=900)])]
    md, page = to_markdown(sections), to_html(sections)
    assert md == ("# Title\n\nSee `pool` and **this**.\n\n### Scores\n\n| Method | a |\n|---|---|\n"
                  "| *budget 4* | |\n| x | **1.0 ±0.2** |\n\n![a figure](f.png)\n")
    assert "<p>See <code>pool</code> and <b>this</b>.</p>" in page and "<h3>Scores</h3>" in page
    assert '<td><i>budget 4</i></td><td></td>' in page
    assert '<td style="background:#aabbcc"><b>1.0 ±0.2</b></td>' in page
    assert 'style="min-width:900px"' in page
