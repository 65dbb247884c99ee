"""Grid YAML: expansion into cells and validation errors that say where and what is allowed."""
import pytest
import yaml

from tokenprune import ConfigError
from tokenprune.cli import main
from tokenprune.runner.grid import load_grid, parse_grid
from runner_fakes import fake_plugin  # noqa: F401

BASE = {
    "models": [{"adapter": "fake_vlm", "checkpoint": "some/path", "label": "m"}],
    "strategies": ["vanilla", "random", {"name": "uniform"}],
    "budgets": [4, {"keep_ratio": 0.25}],
    "benchmarks": [{"name": "counting_bench", "limit": 3}],
}


def grid(**changes):
    raw = {**BASE, **changes}
    return parse_grid(raw, source="g.yaml")


def test_expansion(fake_plugin):
    g = grid(seeds=[0, 1])
    # vanilla once per model x benchmark x seed; the others per budget
    assert len(g.cells) == 2 * (1 + 2 * 2)
    vanilla = [c for c in g.cells if c.strategy == "vanilla"]
    assert all(c.budget is None and c.keep_ratio is None for c in vanilla)
    assert {(c.budget, c.keep_ratio) for c in g.cells if c.strategy == "random"} == {(4, None), (None, 0.25)}
    assert len({c.id for c in g.cells}) == len(g.cells)
    assert g.cells[0].benchmark_options["limit"] == 3


def test_param_lists_expand_and_label_cells(fake_plugin):
    class_params = {"name": "uniform", "params": {}}
    g = grid(strategies=[class_params, {"name": "random", "label": "rnd"}])
    assert [c.label for c in g.cells] == ["uniform", "uniform", "rnd", "rnd"]


def test_ids_are_stable_and_order_independent(fake_plugin):
    a = grid()
    b = parse_grid({k: BASE[k] for k in reversed(list(BASE))}, source="g.yaml")
    assert [c.id for c in a.cells] == [c.id for c in b.cells]
    assert grid(seeds=[1]).cells[0].id != a.cells[0].id


@pytest.mark.parametrize("changes, message", [
    ({"strategies": ["vanila"]}, r"strategies\[0\]\.name: unknown strategy 'vanila'; registered strategies: .*vanilla"),
    ({"strategies": [{"name": "uniform", "params": {"stride": 2}}]},
     r"strategies\[0\]\.params: strategy 'uniform': unknown param stride; valid params: \(none\)"),
    ({"models": [{"adapter": "nope", "checkpoint": "x"}]}, r"models\[0\]\.adapter: unknown model adapter 'nope'; registered models: .*fake_vlm"),
    ({"models": [{"adapter": "fake_vlm", "checkpoint": "x", "dtype": "fp8"}]}, r"models\[0\]\.dtype: 'fp8' is not one of float32"),
    ({"budgets": [0]}, r"budgets\[0\]: token count 0 must be an integer >= 1"),
    ({"budgets": {"keep_ratio": [1.5]}}, r"budgets\.keep_ratio: keep_ratio 1\.5 must be a number in \(0, 1\]"),
    ({"benchmarks": ["nope"]}, r"benchmarks\[0\]\.name: unknown benchmark 'nope'; registered benchmarks: .*counting_bench"),
    ({"benchmarks": [{"name": "counting_bench", "limit": -2}]}, r"benchmarks\[0\]: benchmark 'counting_bench': param limit=-2 is invalid"),
    ({"benchmarks": [{"name": "counting_bench", "n_questions": 2}]}, r"unknown param n_questions; valid params: limit, n, protocol, seed"),
    ({"seeds": "zero"}, r"seeds: must be a non-empty list of integers"),
    ({"executor": "mpi"}, r"executor\.name: unknown executor 'mpi'; registered executors: local, pool, ray, slurm"),
    ({"executor": {"name": "pool", "workers": 0}}, r"executor: executor 'pool': param workers=0 is invalid"),
    ({"generation": {"temperature": 0.7}}, r"generation\.temperature: unknown key; allowed: max_new_tokens, min_new_tokens"),
    ({"colour": 1}, r"colour: unknown key; allowed keys: name, models"),
])
def test_errors_say_where_and_what_is_allowed(fake_plugin, changes, message):
    with pytest.raises(ConfigError, match=message):
        grid(**changes)


def test_all_problems_reported_at_once(fake_plugin):
    with pytest.raises(ConfigError) as err:
        grid(strategies=["nope"], budgets=[0], seeds=[])
    assert "3 problem(s)" in str(err.value)


def test_missing_sections(fake_plugin):
    with pytest.raises(ConfigError, match=r"models: missing"):
        parse_grid({"strategies": ["vanilla"], "benchmarks": ["counting_bench"]})


def test_bad_yaml_file_is_a_clear_cli_error(tmp_path, capsys, fake_plugin):
    path = tmp_path / "bad.yaml"
    path.write_text("models: [\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err


def test_dry_run_prints_cells(tmp_path, capsys, fake_plugin):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(BASE))
    # the fake adapter has no checkpoint to read: skip the pre-flight
    assert main(["run", str(path), "--dry-run", "--no-preflight"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("g: 5 cells, executor local")
    assert "m | random | budget 4 | counting_bench | seed 0" in out
    assert "m | uniform | budget 25.0% | counting_bench" in out


def test_load_grid_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid("/nonexistent/grid.yaml")
