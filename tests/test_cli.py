import io
import json
from pathlib import Path

import pytest

from tokenprune.cli import main


def test_list_strategies(capsys):
    assert main(["list", "strategies"]) == 0
    assert {"vanilla", "random", "uniform"} <= set(capsys.readouterr().out.split())


def test_list_pattern(capsys):
    assert main(["list", "strategies", "u*"]) == 0
    assert capsys.readouterr().out.split() == ["uniform"]


def test_show_explains_a_strategy(capsys):
    assert main(["show", "random"]) == 0
    out = capsys.readouterr().out
    assert "stage:    pre_llm" in out and "uniformly without replacement" in out


def test_plugins_is_json(capsys):
    assert main(["plugins"]) == 0
    plugins = json.loads(capsys.readouterr().out)
    baselines = next(p for p in plugins if p["name"] == "baselines")
    assert baselines["distribution"] == "tokenprune"
    assert baselines["registered"]["strategies"] == ["random", "uniform", "vanilla"]


def test_user_error_is_one_line_without_traceback(capsys):
    assert main(["show", "no_such_strategy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokenprune: error: unknown strategy 'no_such_strategy'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_below_one_is_an_error_not_no_limit(limit, tmp_path, capsys):
    sweep = Path(__file__).parents[1] / "experiments" / "sweep.yaml"
    assert main(["run", str(sweep), "--limit", limit, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokenprune: error: --limit {limit}: must be a number of samples >= 1 per benchmark")
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_progress_without_a_terminal_prints_a_line_per_cell():
    from tokenprune.runner.progress import Progress
    from tokenprune.runner.spec import CellSpec, ModelSpec

    stream, ticks = io.StringIO(), iter([0.0, 2.0, 2.5, 6.0])
    progress = Progress(total_cells=4, stream=stream, clock=lambda: next(ticks))
    cell = CellSpec(model=ModelSpec("m", "llava", "c"), strategy="random", params={}, budget=8, keep_ratio=None,
                    benchmark="pope", benchmark_options={}, seed=0)
    progress.cell_done(cell, "done")  # ran 2 s
    progress.cell_done(cell, "skipped")
    progress.cell_done(cell, "failed")  # ran 3.5 s
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/4] m | random | budget 8 | pope | seed 0: done, 2.0 s | elapsed 0:02, ETA 0:06"
    assert lines[1] == "[2/4] m | random | budget 8 | pope | seed 0: skipped | elapsed 0:02, ETA 0:04"
    assert lines[2] == "[3/4] m | random | budget 8 | pope | seed 0: failed, 3.5 s | elapsed 0:06, ETA 0:03"
    assert Progress(total_cells=1, enabled=False, stream=stream).mode == "off"
