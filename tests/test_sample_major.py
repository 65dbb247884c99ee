"""Sample-major execution gives every cell exactly what cell-by-cell execution gives it, while computing
each batch's inputs, vision features and decoder layers below the prune layers once."""
import collections
import json
import sys
from pathlib import Path

import pytest
import yaml

from tokenprune.bench.sweep import comparable, differences, run_mode, sweep_grid
from tokenprune.cli import main
from tokenprune.engine.probe import attached
from tokenprune.engine.shared_prefix import PrefixMismatch, PrefixRecorder, PrefixReplay, prefix_bytes
from tokenprune.engine.shared_vision import VisionReplay, vision_bytes
from tokenprune.errors import ConfigError
from tokenprune.flops import LLMShape
from tokenprune.runner.spec import group_by_model
from tokenprune.runner.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402
from runner_fakes import TinyImages, fake_plugin  # noqa: E402,F401

SIZES = TinyImages.SIZES
pytestmark = pytest.mark.usefixtures("fake_plugin")  # registers the tiny_images benchmark


# K=1 (attention of all queries), K=2 (last-token attention; text keys and states), K=3 (keys and states),
# a two-stage strategy, a pre_llm one, and the unpruned model
STRATEGIES = ["vanilla", "fastv", {"name": "fastv", "params": {"layer": 1, "criterion": "mean_all_queries"}},
              {"name": "vlm_pruner", "params": {"layer": 3}}, "dart", {"name": "saint_hybrid", "params": {"layer": 2}},
              "divprune"]


def write_grid(tmp_path, vlm, strategies, name="grid", **changes) -> Path:
    grid = {"name": name, "models": [{"label": "tiny", "adapter": vlm.name, "checkpoint": vlm.checkpoint}],
            "strategies": strategies, "budgets": [6], "benchmarks": [{"name": "tiny_images", "n": 6}],
            "generation": {"max_new_tokens": 3}, "batch_size": 3, "latency": {"warmup": 1}, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


class Counter:
    """Runs of the vision modules, and prefill calls of each decoder layer's attention (real compute only:
    a replayed layer never reaches its attention)."""

    def __init__(self, vlm):
        self.counts = collections.Counter()
        self.hooks = [m.register_forward_hook(lambda *a: self.counts.update(["vision"])) for m in vlm.vision_modules]
        for i, layer in enumerate(vlm.decoder_layers):
            self.hooks.append(vlm.attention_of(layer).register_forward_pre_hook(self._attention(i), with_kwargs=True))

    def _attention(self, i):
        def hook(module, args, kwargs):
            if kwargs["hidden_states"].shape[1] > 1:
                self.counts.update([i])
        return hook

    def remove(self):
        for h in self.hooks:
            h.remove()


def run_both(tmp_path, vlm, grid_path, modes=("cell", "sample")) -> dict:
    """comparable() results and compute counts of each mode, with the one loaded model."""
    out = {}
    for mode in modes:
        grid = sweep_grid(grid_path, mode)
        models = {spec.key(): vlm for spec, _ in group_by_model(grid.cells)}
        counter = Counter(vlm)
        try:
            run_mode(grid, tmp_path / f"{grid_path.stem}-{mode}", models)
        finally:
            counter.remove()
        out[mode] = (comparable(tmp_path / f"{grid_path.stem}-{mode}"), counter.counts)
    return out


BUILDERS = {"llava": tiny_models.llava, "llava_next": tiny_models.llava_next,
            "llava_onevision": tiny_models.llava_onevision, "qwen2_vl": tiny_models.qwen2_vl,
            "qwen2_5_vl": tiny_models.qwen2_5_vl, "qwen3_vl": tiny_models.qwen3_vl}


@pytest.mark.parametrize("adapter", list(BUILDERS))
def test_sample_major_equals_cell_by_cell_on_every_adapter(tmp_path, adapter):
    vlm = BUILDERS[adapter]()
    strategies = STRATEGIES + (["downsample"] if vlm.supports_resize else [])
    grid = write_grid(tmp_path, vlm, strategies)
    batches = [tiny_models.samples(6, image_sizes=SIZES)[i:i + 3] for i in (0, 3)]
    assert all(bool((vlm.build_inputs(b)["attention_mask"] == 0).any()) for b in batches), "left padding expected"
    runs = run_both(tmp_path, vlm, grid)
    (cell, cell_counts), (sample, sample_counts) = runs["cell"], runs["sample"]
    assert differences(cell, sample) == []
    assert len(cell) == len(strategies) and all(len(c["records"]) == 6 for c in cell.values())
    assert any(r["kept"] for c in cell.values() for r in c["records"])  # pruned cells recorded their kept tokens
    # what sample-major computed: one vision run per batch (plus downsample's own), and layers below K only
    # for the cells that do not start at K (vanilla leads; the llm cells prune at K = 1, 2, 3 and 2)
    cells = len(strategies)
    own_vision = 1 if vlm.supports_resize else 0
    assert cell_counts["vision"] == 2 * cells and sample_counts["vision"] == 2 * (1 + own_vision)
    follower_layers = [1, 2, 3, 2]
    for i in range(len(vlm.decoder_layers)):
        assert cell_counts[i] - sample_counts[i] == 2 * sum(k > i for k in follower_layers), i


def test_bundled_model_default_grid_and_resume_after_a_kill(tmp_path):
    """The default sweep's strategies on the bundled model; then cells killed at different samples (one mid-batch,
    one with a torn line) resume sample-major exactly as they resume cell by cell."""
    from tokenprune.runner.execute import load_model, run_group
    from tokenprune.runner.spec import ModelSpec

    sweep = yaml.safe_load(Path("experiments/sweep.yaml").read_text())
    vlm = load_model(ModelSpec(label="m", adapter="llava", checkpoint="zoo:shapes-llava-144"))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**sweep, "benchmarks": [{"name": "shapes", "limit": 8}], "latency": {"warmup": 1}}))
    runs = run_both(tmp_path, vlm, path)
    assert differences(runs["cell"][0], runs["sample"][0]) == []
    assert len(runs["cell"][0]) == 34
    # kill: cells left at 0, 2 (mid-batch), 4 and 5 samples plus a torn line; metrics and DONE gone
    for mode in ("cell", "sample"):
        cells = sorted(RunStore(tmp_path / f"sweep-{mode}").cells(), key=lambda cs: cs.cell.id)
        for n, cs in enumerate(cells):
            keep = [0, 2, 4, 5, 8][n % 5]
            lines = cs.samples_path.read_text().splitlines(keepends=True)[:keep]
            cs.samples_path.write_text("".join(lines) + ('{"id": "to' if n % 3 == 0 else ""))
            if keep < 8:
                cs.done_path.unlink()
                cs.metrics_path.unlink()
    resumed = {}
    for mode in ("cell", "sample"):  # the rerun: each mode resumes its own directory
        store = RunStore(tmp_path / f"sweep-{mode}")
        for spec, cells in group_by_model(sweep_grid(path, mode).cells):
            assert set(run_group(spec, cells, store, warmup=1, vlm=vlm).values()) <= {"done", "skipped"}
        resumed[mode] = comparable(tmp_path / f"sweep-{mode}")
    assert differences(resumed["cell"], resumed["sample"]) == []
    assert all(len(c["records"]) == 8 for c in resumed["sample"].values())


def test_memory_cap_shares_what_fits_and_says_so(tmp_path, capsys):
    vlm = tiny_models.llava()
    strategies = ["vanilla", "fastv", {"name": "vlm_pruner", "params": {"layer": 3}}]
    samples = tiny_models.samples(6, image_sizes=SIZES)
    shapes = [vlm.build_inputs(samples[i:i + 3])["input_ids"].shape for i in (0, 3)]
    llm = LLMShape.from_config(vlm.model.config)
    vision = vision_bytes(vlm.model.config, 4, 3 * 36)
    cap = max(vision + prefix_bytes(llm, 4, b, n, [2]) for b, n in shapes) + 1  # room below layer 2, not below 3
    assert cap < min(vision + prefix_bytes(llm, 4, b, n, [2, 3]) for b, n in shapes)
    grid = write_grid(tmp_path, vlm, strategies, name="capped", execution={"mode": "auto", "max_shared_mb": cap / 2 ** 20})
    runs = run_both(tmp_path, vlm, grid)
    assert differences(runs["cell"][0], runs["sample"][0]) == []
    cell_counts, sample_counts = runs["cell"][1], runs["sample"][1]
    assert sample_counts["vision"] == 2  # vision shared
    assert [cell_counts[i] - sample_counts[i] for i in range(4)] == [2, 2, 0, 0]  # fastv replayed, vlm_pruner not
    assert "sharing layers below 3 would hold" in capsys.readouterr().err
    tiny = write_grid(tmp_path, vlm, strategies, name="tiny_cap", execution={"max_shared_mb": 0})
    runs = run_both(tmp_path, vlm, tiny, modes=("sample",))
    assert runs["sample"][1]["vision"] == 2 * 3 and runs["sample"][1][0] == 2 * 3  # nothing shared: cell by cell
    assert "exceed execution.max_shared_mb" in capsys.readouterr().err


def test_replay_refuses_another_prefill_and_restores_the_layers():
    vlm = tiny_models.llava()
    inputs = vlm.build_inputs(tiny_models.samples(2, image_sizes=SIZES))
    with VisionReplay(vlm, inputs) as vision, PrefixRecorder(vlm, [2]) as recorder:
        vlm.generate(inputs, max_new_tokens=2)
        # recorded at the prefill: the recorder's hooks and probe are gone before the first decode step
        assert recorder.recording is not None and not recorder._hooks
        assert not any(layer._forward_hooks or layer._forward_pre_hooks for layer in vlm.decoder_layers)
        assert attached(vlm.attention_of(vlm.decoder_layers[1])) is None
        vlm.generate(inputs, max_new_tokens=2)
        held_vision = vision.nbytes()
    assert (vision.runs, vision.replays) == (1, 1)
    # the estimates the memory cap uses are what is held
    b, length = inputs["input_ids"].shape
    assert held_vision == vision_bytes(vlm.model.config, 4, 2 * 36)
    assert recorder.recording.nbytes() == prefix_bytes(LLMShape.from_config(vlm.model.config), 4, b, length, [2])
    assert recorder.recording is not None and recorder.recording.serves(2) and not recorder.recording.serves(3)
    assert "get_image_features" not in vlm.vlm_module.__dict__
    other = vlm.build_inputs(tiny_models.samples(3, image_sizes=SIZES))
    with pytest.raises(PrefixMismatch, match="recorded prefix is for a"):
        with PrefixReplay(vlm, recorder.recording, 2):
            vlm.generate(other, max_new_tokens=2)
    assert all("forward" not in layer.__dict__ for layer in vlm.decoder_layers)
    with PrefixReplay(vlm, recorder.recording, 2) as replay:  # the recorded batch itself replays
        replayed = vlm.generate(inputs, max_new_tokens=2)
    assert replay.replayed and replayed.texts == vlm.generate(inputs, max_new_tokens=2).texts
    with pytest.raises(ValueError, match="serves prune layers"):
        PrefixReplay(vlm, recorder.recording, 3)


def test_execution_is_validated_recorded_and_overridable(tmp_path, capsys):
    vlm = tiny_models.llava()
    bad = write_grid(tmp_path, vlm, ["vanilla"], name="bad", execution={"mode": "fast", "cap": 1})
    with pytest.raises(ConfigError) as err:
        from tokenprune.runner.grid import load_grid

        load_grid(bad)
    assert "execution.mode: 'fast' is not one of auto, cell, sample" in str(err.value)
    assert "execution.cap: unknown key" in str(err.value)
    grid = write_grid(tmp_path, vlm, ["vanilla", "fastv"], name="ok", execution={"mode": "sample", "max_shared_mb": 64},
                      benchmarks=[{"name": "tiny_images", "n": 2}])
    out = tmp_path / "run"
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report", "--execution", "cell"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["execution"] == {"mode": "cell", "max_shared_mb": 64.0}
    assert {cs.metrics()["environment"]["execution"] for cs in RunStore(out).cells()} == {"cell"}
    # another execution resumes the same run (it changes no result)
    assert main(["run", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert json.loads((out / "run.json").read_text())["execution"]["mode"] == "sample"
    assert "skipped (already finished) 2" in capsys.readouterr().out


def test_bench_sweep_runs_both_modes_and_reports_identical_results(tmp_path, capsys):
    vlm = tiny_models.llava()
    grid = write_grid(tmp_path, vlm, ["vanilla", "fastv", "divprune"], name="tiny-sweep")
    out = tmp_path / "bench"
    assert main(["bench", "sweep", str(grid), "--limit", "3", "--repeats", "2", "--phases", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "results: identical in both modes" in printed
    speedup = next(line for line in printed.splitlines() if line.startswith("speed-up: "))
    assert speedup.endswith("x") and float(speedup.split()[1][:-1]) > 0
    result = json.loads((out / "sweep_tiny-sweep.json").read_text())
    assert result["identical"] and result["cells"] == 3 and result["samples_per_cell"] == [3]
    assert [r["mode"] for r in result["runs"]] == ["cell", "sample", "sample", "cell"]  # alternating
    phases = {r["mode"]: r["phases_s"] for r in result["rows"]}
    assert phases["sample"]["vision"] < phases["cell"]["vision"] and "threads" in result["environment"]
    md = (out / "sweep_tiny-sweep.md").read_text()
    assert "speed-up" in md and "Analytic prefill FLOPs of the same grid" in md and "% saved" in md
    # busy means the grid's own latency.max_load of the CPUs, the threshold the runner times its cells by
    from tokenprune import timing
    from tokenprune.bench import sweep

    assert result["max_load"] == 0.25 and result["busy"] == (max(result["other_cpu_load"]) > 0.25 * timing.usable_cpus())
    busy = {**result, "busy": True, "max_load": 0.6, "other_cpu_load": [0.1, 2.5]}
    assert f"kept 2.50 CPUs busy during a timed run, over 0.6 of the {timing.usable_cpus()} CPUs" in sweep.markdown(busy)
    assert main(["bench", "sweep", str(grid), "--limit", "0"]) == 2
    assert "--limit 0: must be a number of samples >= 1" in capsys.readouterr().err


def test_flops_saving_counts_each_cell_as_the_runner_does(tmp_path, capsys):
    """--flops-only: each cell's LLM prefill FLOPs as its metrics.json counts them, the vision tower once for
    the cells that share it, and layers below K once for the cells that start there."""
    from tokenprune.bench.sharing_flops import cell_prefill, grid_saving, tally
    from tokenprune.api import get_strategy
    from tokenprune.flops import VisionShape
    from tokenprune.runner.execute import load_model

    sweep = yaml.safe_load(Path("experiments/sweep.yaml").read_text())
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**sweep, "benchmarks": [{"name": "shapes", "limit": 2}], "batch_size": 2,
                                    "latency": {"warmup": 0}}))
    grid = sweep_grid(path, "sample")
    vlm = load_model(grid.cells[0].model)
    run_mode(grid, tmp_path / "run", {grid.cells[0].model.key(): vlm})
    config = vlm.model.config
    shape, vision = LLMShape.from_config(config), VisionShape.from_config(config)
    for cs in RunStore(tmp_path / "run").cells():
        cell = cs.cell
        strategy = None if cell.strategy == "vanilla" else get_strategy(cell.strategy, **cell.params)
        ours = [cell_prefill(strategy, cell.budget, cell.keep_ratio, shape, vision,
                             (r.get("native_prompt_tokens") or r["prompt_tokens"]) - r["n_visual"], r["n_visual"],
                             (12, 12))[1] for r in cs.records()]
        assert sum(ours) / len(ours) == cs.metrics()["flops"]["prefill_flops"], cell.describe()
    result = tally(grid.cells, shape, vision, 64, 144, (12, 12))
    native = vision.flops([144])
    resized = sum(vision.flops([rows * cols]) for rows, cols in (get_strategy("downsample").planned_grid((12, 12), b)
                                                                  for b in (48, 32, 16)))
    assert result.vision == 31 * native + resized and result.vision_shared == native + resized
    assert result.leader == "vanilla" and result.depths == [2]  # 12 llm-stage cells start at layer 2
    assert result.llm_skipped == 12 * 2 * shape.layer_flops(208, 208)
    assert main(["bench", "sweep", str(path), "--flops-only"]) == 0
    assert f"{100 * result.saved:.1f} % saved; vanilla leads, the others start at layers [2]" in capsys.readouterr().out
    paper = grid_saving("experiments/paper/main_llava15_7b.yaml", arch="llava-1.5-7b")[0]
    assert paper.visual == 576 and len(paper.streams) == 9
    assert {tuple(t.depths) for t in paper.streams.values()} == {(2, 8)}  # fastv, dart, vlm_pruner; saint at 8
    assert main(["bench", "sweep", "experiments/paper/main_llava15_7b.yaml", "--flops-only", "--arch", "qwen"]) == 2
    assert "--arch 'qwen': the model shape is known for llava-1.5-7b, llava-mid" in capsys.readouterr().err


def test_vanilla_cells_of_other_seeds_start_at_the_last_layer(tmp_path):
    """Qwen3-VL (DeepStack adds vision features after layers 0-2): the second seed's vanilla cell replays
    layers 0..2, its fastv cells layers 0..1, and all match cell by cell."""
    vlm = tiny_models.qwen3_vl()
    grid = write_grid(tmp_path, vlm, ["vanilla", "fastv"], name="seeds", seeds=[0, 1])
    runs = run_both(tmp_path, vlm, grid)
    assert differences(runs["cell"][0], runs["sample"][0]) == [] and len(runs["cell"][0]) == 4
    cell_counts, sample_counts = runs["cell"][1], runs["sample"][1]
    assert [cell_counts[i] - sample_counts[i] for i in range(4)] == [2 * 3, 2 * 3, 2 * 1, 0]
