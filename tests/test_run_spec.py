"""One grid spec per run directory: resume the same spec, refuse another, --extend adds new cells only."""
import json
import sys
from pathlib import Path

import pytest
import yaml

from tokenprune.cli import main
from tokenprune.errors import ConfigError
from tokenprune.runner import run_spec
from tokenprune.runner.grid import parse_grid
from tokenprune.runner.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

BASE = {
    "name": "spec",
    "models": [{"label": "tiny", "adapter": "llava", "checkpoint": "zoo:shapes-llava-144"}],
    "strategies": ["vanilla", "random"],
    "budgets": [9],
    "benchmarks": [{"name": "shapes", "limit": 2}],
}


def spec(cli=None, **changes):
    grid = parse_grid({**BASE, **changes})
    return run_spec.spec_record(grid, cli or {"limit": None, "smoke": False, "smoke_checkpoint": None,
                                              "executor": None})


def test_a_run_directory_is_bound_to_one_spec(tmp_path):
    store = RunStore(tmp_path / "run")
    run_spec.bind(store, spec())
    first = store.run_path.read_text()
    run_spec.bind(store, spec())  # the same spec again: a resume
    assert store.run_path.read_text() == first
    run_spec.bind(store, spec(latency={"max_load": 0.9}))  # the threshold only flags: still a resume
    assert store.latency_plan().max_load == 0.9 and len(store.read_run()["specs"]) == 1

    with pytest.raises(ConfigError) as err:
        run_spec.bind(store, spec(seeds=[0, 1], strategies=["vanilla", "fastv"]))
    text = str(err.value)
    assert f"{store.root} holds a run of another grid spec" in text
    assert "strategies: random in" in text and "fastv in this run" in text and "seeds: this run adds 1" in text
    assert "--out DIR, or add its cells to that run with --extend" in text

    with pytest.raises(ConfigError, match=r"latency\.subset: none in .*; 4 in this run"):
        run_spec.bind(store, spec(latency={"subset": 4}))
    with pytest.raises(ConfigError, match="--extend cannot add this run .* latency settings differ"):
        run_spec.bind(store, spec(latency={"subset": 4}, budgets=[5]), extend=True)

    run_spec.bind(store, spec(budgets=[5]), extend=True)
    assert len(store.read_run()["specs"]) == 2
    assert {c.budget_label() for c in store.planned_cells()} == {"all", "9", "5"}
    run_spec.bind(store, spec())  # either recorded spec resumes
    run_spec.bind(store, spec(budgets=[5]))


def test_cells_of_an_older_run_without_run_json_are_adopted_only_by_their_spec(tmp_path):
    store = RunStore(tmp_path / "run")
    for cell in parse_grid(BASE).cells[:1]:
        store.cell(cell).prepare()  # what a run made before run.json existed leaves
    with pytest.raises(ConfigError, match=r"benchmarks: shapes\(limit=2\) in .*; shapes\(limit=1\) in this run"):
        run_spec.bind(store, spec(benchmarks=[{"name": "shapes", "limit": 1}]))
    assert store.read_run() is None
    run_spec.bind(store, spec())
    assert len(store.planned_cells()) == 2


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    path = tmp / "grid.yaml"
    path.write_text(yaml.safe_dump({**BASE, "models": [{"label": "tiny", "adapter": "llava",
                                                        "checkpoint": tiny_models.llava(layers=2).checkpoint}],
                                    "generation": {"max_new_tokens": 2}, "latency": {"warmup": 0}}))
    return path


def test_rerun_with_another_limit_is_refused_and_extend_adds_cells(tmp_path, grid_file, capsys):
    out = tmp_path / "run"
    args = ["run", str(grid_file), "--out", str(out), "--no-report"]
    assert main(args) == 0
    printed = capsys.readouterr()
    # not a terminal: a plain line per finished cell
    assert "[1/2] tiny | vanilla | budget all | shapes | seed 0: done, 2 samples, accuracy " in printed.err
    assert "[2/2] tiny | random | budget 9 | shapes | seed 0: done" in printed.err and "ETA 0:00" in printed.err
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    assert main(args + ["--limit", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokenprune: error: {out} holds a run of another grid spec")
    assert f"benchmarks: shapes(limit=2) in {out}; shapes(limit=1) in this run" in err
    assert f"--limit: not given in {out}; 1 in this run" in err
    assert "Write this run to another directory with --out DIR (--extend cannot add it: 2 of its cells" in err
    assert main(args + ["--limit", "1", "--quiet", "--extend"]) == 2
    assert "--extend cannot add this run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # refused before writing anything

    assert main(args + ["--quiet"]) == 0  # the same spec resumes
    assert "skipped (already finished) 2" in capsys.readouterr().out

    wider = tmp_path / "wider.yaml"
    wider.write_text(yaml.safe_dump({**yaml.safe_load(grid_file.read_text()), "budgets": [9, 4]}))
    assert main(["run", str(wider), "--out", str(out), "--no-report", "--quiet"]) == 2
    assert "budgets: this run adds 4" in capsys.readouterr().err
    assert main(["run", str(wider), "--out", str(out), "--no-report", "--quiet", "--extend"]) == 0
    assert "done 1, skipped (already finished) 2" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert [len(s["cells"]) for s in record["specs"]] == [2, 3]
    assert record["specs"][0]["cli"] == {"limit": None, "smoke": False, "smoke_checkpoint": None, "executor": None}


def test_a_smoke_run_records_the_cells_it_ran(tmp_path, capsys):
    """--smoke moves prune layers past the smoke model's depth: the run's planned cells (what the report
    expects) are the moved ones, so the report does not list the originals as missing."""
    grid = tmp_path / "deep.yaml"
    grid.write_text(yaml.safe_dump({**BASE, "strategies": ["vanilla", {"name": "fastv", "params": {"layer": 9}}],
                                    "generation": {"max_new_tokens": 2}}))
    out = tmp_path / "smoke"
    checkpoint = tiny_models.llava(layers=2).checkpoint
    assert main(["run", str(grid), "--smoke", "--smoke-checkpoint", checkpoint, "--limit", "1", "--out", str(out),
                 "--quiet", "--no-report"]) == 0
    capsys.readouterr()
    expected = RunStore(out).planned_cells()
    assert [c.params.get("layer") for c in expected if c.strategy == "fastv"] == [1]
    assert {c.id for c in expected} == {cs.cell.id for cs in RunStore(out).cells()}
