import io
import re
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


def _subcommands(parser, path=()):
    """(path, parser) of every subcommand, nested ones (bench select) included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def _own_flags(parser):
    import argparse

    return {s for a in parser._actions if not isinstance(a, argparse._SubParsersAction) for s in a.option_strings}


def test_every_subcommand_documents_each_of_its_own_flags(capsys):
    from tokenprune.cli import build_parser

    root = build_parser()
    commands = {(): root, **dict(_subcommands(root))}
    assert {("list",), ("plugins",), ("show",), ("run",), ("report",), ("bench", "select"),
            ("bench", "e2e")} <= set(commands)
    for path, parser in commands.items():
        undocumented = [a.dest for a in parser._actions if not a.help]
        assert not undocumented, f"`tokenprune {' '.join(path)}` arguments without help: {undocumented}"
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith(" ".join(["usage: tokenprune", *path, ""]))
        mine = _own_flags(parser)
        assert all(flag in shown for flag in mine), f"`tokenprune {' '.join(path)} --help` lacks some of {mine}"
        # the help is this subcommand's own: a sibling's flags it does not take are not shown
        siblings = {flags for other, p in commands.items() if other[:-1] == path[:-1] and other != path
                    for flags in _own_flags(p)}
        foreign = [flag for flag in siblings - mine if re.search(rf"{re.escape(flag)}\b", shown)]
        assert not foreign, f"`tokenprune {' '.join(path)} --help` shows flags it does not take: {foreign}"
