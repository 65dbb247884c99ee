"""Which processor builds a model's inputs (TOKENPRUNE_INPUT_BUILDER), and the record of it in each cell."""
import json

import pytest
import transformers.utils
import yaml

import tiny_models as tm
from tokenprune.cli import main
from tokenprune.errors import ConfigError
from tokenprune.models import official_inputs
from tokenprune.runner.store import RunStore


@pytest.mark.parametrize("choice,torchvision,official", [
    ("auto", True, True), ("auto", False, False), ("", False, False),
    ("official", True, True), ("tokenprune", True, False), ("tokenprune", False, False),
])
def test_the_builder_follows_the_variable_and_torchvision(choice, torchvision, official, monkeypatch):
    monkeypatch.setenv(official_inputs.ENV, choice)
    monkeypatch.setattr(transformers.utils, "is_torchvision_available", lambda: torchvision)
    assert official_inputs.use_official("qwen2_vl") is official


def test_a_bad_choice_or_an_impossible_one_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(transformers.utils, "is_torchvision_available", lambda: False)
    monkeypatch.setenv(official_inputs.ENV, "fast")
    with pytest.raises(ConfigError, match="TOKENPRUNE_INPUT_BUILDER='fast': use one of auto, official, tokenprune"):
        official_inputs.use_official("qwen2_vl")
    monkeypatch.setenv(official_inputs.ENV, "official")
    with pytest.raises(ConfigError, match="qwen3_vl processor needs torchvision.*TOKENPRUNE_INPUT_BUILDER=tokenprune"):
        official_inputs.use_official("qwen3_vl")


def test_each_cell_records_the_builder_of_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv(official_inputs.ENV, "tokenprune")
    model = {"label": "q", "adapter": "qwen2_vl", "checkpoint": tm.qwen2_vl().checkpoint}
    grid = {"name": "builder", "models": [model],
            "strategies": ["vanilla"], "benchmarks": [{"name": "shapes", "limit": 2}],
            "generation": {"max_new_tokens": 2}, "latency": {"warmup": 0}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    (cell,) = RunStore(tmp_path / "run").cells()
    metrics = json.loads((cell.dir / "metrics.json").read_text())
    assert metrics["environment"]["input_builder"] == "tokenprune"
