import json

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
