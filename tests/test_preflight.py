"""The run's pre-flight: each model's config is read before any cell runs, and a missing checkpoint,
a prune layer deeper than the LLM or a budget above a sample's visual tokens is reported, all at once,
with its place in the YAML."""
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tokenprune.cli import main
from tokenprune.runner.collect import collect
from tokenprune.runner.metrics import token_stats
from tokenprune.runner.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
import hub_cache  # noqa: E402

ZOO = {"label": "zoo", "adapter": "llava", "checkpoint": "zoo:shapes-llava-144"}


def write_grid(tmp_path, **changes):
    grid = {"name": "pre", "models": [ZOO], "strategies": ["vanilla", "random"], "budgets": [16],
            "benchmarks": [{"name": "shapes", "limit": 2}], "generation": {"max_new_tokens": 2}, **changes}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture
def empty_offline_cache(monkeypatch, tmp_path):
    return hub_cache.offline_cache(monkeypatch, tmp_path / "hub", configs={})


def test_budget_above_the_bundled_models_tokens_is_refused_before_anything_runs(tmp_path, capsys):
    grid = write_grid(tmp_path, budgets=[145, 1000, 144, {"keep_ratio": 1.0}])
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "Traceback" not in err
    for place, budget in (("budgets[0]", 145), ("budgets[1]", 1000)):
        assert (f"{place}: budget {budget} is more than a sample of shapes can have on models[0] "
                "(zoo:shapes-llava-144): it shows at most one image and every image becomes exactly 144 "
                "visual tokens") in err
    assert not out.exists()  # nothing ran, nothing was written


def test_every_problem_is_reported_at_once_with_its_place(tmp_path, capsys, empty_offline_cache):
    models = [ZOO, {"label": "local", "adapter": "llava", "checkpoint": "./no-such-model"},
              {"label": "hub", "adapter": "qwen2_vl", "checkpoint": "Qwen/Qwen2-VL-7B-Instruct"}]
    grid = write_grid(tmp_path, models=models, budgets=[145, 16],
                      strategies=["vanilla", {"name": "saint", "params": {"layer": 8}}, "fastv"])
    started = time.perf_counter()
    assert main(["run", str(grid), "--dry-run"]) == 2
    assert time.perf_counter() - started < 20  # offline: the cache is read, the network is not tried
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "4 problem(s)" in lines[0]
    assert (f"  models[1].checkpoint: checkpoint './no-such-model' does not exist (no such directory: "
            f"{Path('no-such-model').resolve()})") in lines
    assert (f"  models[2].checkpoint: hub checkpoint 'Qwen/Qwen2-VL-7B-Instruct' is not in the local Hugging "
            f"Face cache ({empty_offline_cache}) and HF_HUB_OFFLINE is set: download it first "
            "(`hf download Qwen/Qwen2-VL-7B-Instruct`) or unset HF_HUB_OFFLINE") in lines
    assert ("  strategies[1].params.layer: saint(layer=8) prunes at decoder layer K=8, but models[0] "
            "(zoo:shapes-llava-144) has 4 decoder layers: K must be between 1 and 3") in lines
    assert any(line.startswith("  budgets[0]: budget 145 is more than") for line in lines)


def test_a_layer_in_a_param_list_names_its_strategy_entry(tmp_path, capsys):
    grid = write_grid(tmp_path, strategies=["fastv", {"name": "vlm_pruner", "label": "depth",
                                                      "params": {"layer": [2, 3, 4, 6]}},
                                            "vlm_pruner", {"name": "vlm_pruner", "params": {"layer": 5}}])
    assert main(["run", str(grid), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    assert "strategies[1].params.layer: depth(layer=4) prunes at decoder layer K=4" in err
    assert "strategies[1].params.layer: depth(layer=6) prunes at decoder layer K=6" in err
    assert "strategies[3].params.layer: vlm_pruner(layer=5) prunes at decoder layer K=5" in err


def test_a_strategy_listed_twice_names_the_entry_its_cell_came_from(tmp_path, capsys):
    grid = write_grid(tmp_path, strategies=[{"name": "fastv", "params": {"layer": 2}},
                                            {"name": "fastv", "params": {"layer": [3, 5]}}])
    assert main(["run", str(grid), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s)" in err
    assert ("  strategies[1].params.layer: fastv(layer=5) prunes at decoder layer K=5, but models[0] "
            "(zoo:shapes-llava-144) has 4 decoder layers: K must be between 1 and 3") in err.splitlines()
    assert "strategies[0]" not in err


@pytest.mark.parametrize("model, budget, bench, problem", [
    ("llava-hf/llava-1.5-7b-hf", 576, "pope", None),
    ("llava-hf/llava-1.5-7b-hf", 577, "pope", "every image becomes exactly 576 visual tokens"),
    ("llava-hf/llava-1.5-13b-hf", 64, "mme", None),
    # anyres: base 24x24 + the largest crop grid (48x48 for 672x672) + a newline per row = 2928 at most
    ("llava-hf/llava-v1.6-vicuna-7b-hf", 2928, "gqa", None),
    ("llava-hf/llava-v1.6-vicuna-7b-hf", 2929, "gqa", "an image becomes at most 2928 visual tokens"),
    # dynamic resolution: max_pixels 12845056 / (14 * 2)^2 = 16384 merged patches
    ("Qwen/Qwen2-VL-7B-Instruct", 2000, "textvqa", None),
    ("Qwen/Qwen2-VL-7B-Instruct", 16385, "textvqa", "an image becomes at most 16384 visual tokens"),
    # Qwen3-VL's newer format: size.longest_edge 16777216 / (16 * 2)^2 = 16384
    ("Qwen/Qwen3-VL-4B-Instruct", 16385, "ocrbench", "an image becomes at most 16384 visual tokens"),
    # video: samples are frames, whose count the budget is not checked against
    ("llava-hf/LLaVA-Video-7B-Qwen2-hf", 10 ** 6, "egoschema", None),
])
def test_budgets_against_hub_configs_read_offline_from_the_cache(tmp_path, capsys, monkeypatch, model, budget,
                                                                  bench, problem):
    hub_cache.offline_cache(monkeypatch, tmp_path / "hub")
    adapter = {"llava-hf/llava-v1.6-vicuna-7b-hf": "llava_next", "llava-hf/LLaVA-Video-7B-Qwen2-hf": "llava_onevision",
               "Qwen/Qwen2-VL-7B-Instruct": "qwen2_vl", "Qwen/Qwen3-VL-4B-Instruct": "qwen3_vl"}.get(model, "llava")
    grid = write_grid(tmp_path, models=[{"adapter": adapter, "checkpoint": model, "label": "m"}],
                      budgets=[budget, {"keep_ratio": 0.5}], benchmarks=[bench])
    code = main(["run", str(grid), "--dry-run"])
    err = capsys.readouterr().err
    if problem is None:
        assert code == 0, err
    else:
        assert code == 2 and "1 problem(s)" in err
        assert f"budgets[0]: budget {budget} is more than a sample of {bench} can have on models[0] ({model})" in err
        assert problem in err


def test_layer_deeper_than_a_hub_models_llm(tmp_path, capsys, monkeypatch):
    hub_cache.offline_cache(monkeypatch, tmp_path / "hub")
    grid = write_grid(tmp_path, models=[{"adapter": "qwen2_vl", "checkpoint": "Qwen/Qwen2-VL-7B-Instruct"}],
                      strategies=[{"name": "fastv", "params": {"layer": [27, 28]}}], benchmarks=["pope"])
    assert main(["run", str(grid), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s)" in err
    assert ("strategies[0].params.layer: fastv(layer=28) prunes at decoder layer K=28, but models[0] "
            "(Qwen/Qwen2-VL-7B-Instruct) has 28 decoder layers: K must be between 1 and 27") in err


def test_unreachable_hub_and_unknown_repo_are_clear(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    not_found = SimpleNamespace(headers={}, request=None, status_code=404)  # the parts the error reads
    failures = {"org/down": LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub."),
                "org/unknown": RepositoryNotFoundError("404 Client Error: Repository Not Found", response=not_found)}

    def download(repo, filename, **kwargs):  # what hf_hub_download raises without a network / for a bad id
        raise failures[repo]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    grid = write_grid(tmp_path, models=[{"adapter": "llava", "checkpoint": c, "label": c} for c in failures])
    assert main(["run", str(grid), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert ("models[0].checkpoint: cannot read the config of hub checkpoint 'org/down': it is not in the local "
            f"Hugging Face cache ({tmp_path / 'hub'}) and the hub cannot be reached") in err
    assert ("models[1].checkpoint: checkpoint 'org/unknown' is neither a local directory nor a model on the "
            "Hugging Face hub") in err


def test_directory_without_config_and_skipping_the_preflight(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    grid = write_grid(tmp_path, models=[{"adapter": "llava", "checkpoint": str(empty)},
                                        {"adapter": "llava", "checkpoint": "./no-such-model", "label": "gone"}],
                      strategies=["vanilla"])
    assert main(["run", str(grid), "--dry-run"]) == 2
    assert f"models[0].checkpoint: checkpoint '{empty}': {empty} has no config.json" in capsys.readouterr().err
    # --no-preflight: the cells run, and the missing path still fails with a clear message of its own
    out = tmp_path / "run"
    assert main(["run", str(grid), "--no-preflight", "--out", str(out), "--quiet", "--no-report"]) == 1
    errors = {cs.cell.model.label: cs.error()["message"] for cs in RunStore(out).cells()}
    assert errors["gone"].startswith("checkpoint './no-such-model' does not exist (no such directory: ")
    assert set(collect(out)["status"]) == {"failed"}


def test_cells_count_the_samples_that_kept_every_token():
    records = [{"count": 4, "n_visual": 4}, {"count": 8, "n_visual": 20}, {"count": 3, "n_visual": 3},
               {"count": None, "n_visual": 5}]
    assert token_stats(records)["all_kept_samples"] == 2


def test_smoke_runs_do_not_hold_budgets_written_for_the_real_model_against_the_bundled_one(tmp_path, capsys):
    grid = write_grid(tmp_path, models=[{"adapter": "llava", "checkpoint": "llava-hf/llava-1.5-7b-hf"}],
                      budgets=[192, 64], strategies=["vanilla", {"name": "saint", "params": {"layer": 8}}])
    assert main(["run", str(grid), "--smoke", "--dry-run"]) == 0, capsys.readouterr().err
    # the prune layer is moved into the bundled model's depth; the budgets are left to the real run
    assert "saint(layer=8) | budget 192 | shapes" in capsys.readouterr().out
