"""The built-in benchmarks as the registry sees them, and seeded sub-sampling."""
import json
import sys
from pathlib import Path

import pytest
import yaml

from tokenprune import registry
from tokenprune.benchmarks import BUILTIN, Benchmark
from tokenprune.benchmarks._sampling import subset_indices

sys.path.insert(0, str(Path(__file__).parent))
from docs_examples import plugin_from_docs  # noqa: E402

PAPER = {"gqa", "mmbench", "mme", "pope", "scienceqa_img", "textvqa", "ocrbench", "seedbench", "okvqa",
         "egoschema", "nextqa", "videomme", "egoplan"}
TWO_PROTOCOLS = {"pope", "textvqa", "mme", "gqa", "scienceqa_img"}


def test_every_paper_benchmark_is_registered_with_a_valid_contract():
    names = set(registry.names("benchmarks"))
    assert PAPER <= names
    assert len(BUILTIN) == len(PAPER)
    for name in PAPER:
        cls = registry.lookup("benchmarks", name)
        assert issubclass(cls, Benchmark) and cls.name == name
        params = cls.all_params()
        assert {"limit", "seed", "protocol", "dataset", "split", "revision"} <= set(params)
        assert cls.max_new_tokens >= 1 and cls.main_metric
        assert cls.protocols[0] == "lmms-eval"
        assert (set(cls.protocols) == {"lmms-eval", "llava"}) == (name in TWO_PROTOCOLS)
        bench = cls()  # defaults are valid and name the hub dataset
        assert "/" in bench.cfg.dataset
        json.dumps(bench.cfg.as_dict())


# Each protocol's own generation length. lmms-eval: the task YAML's generation_kwargs.max_new_tokens
# in lmms_eval/tasks/ (0.7.3); where the task sets none, the backend's default, 1024 in the llava,
# llava_hf, llava_onevision and llava_vid models. llava: the LLaVA-1.5 eval scripts
# (scripts/v1_5/eval/*.sh pass no --max_new_tokens to llava/eval/model_vqa_loader.py, default 128;
# llava/eval/model_vqa_science.py generates with max_new_tokens=1024).
GENERATION_LENGTHS = {
    ("gqa", "lmms-eval"): 16,             # gqa/gqa.yaml
    ("gqa", "llava"): 128,                # gqa.sh -> model_vqa_loader.py default
    ("mmbench", "lmms-eval"): 1024,       # mmbench/_default_template_mmbench_en_yaml
    ("mme", "lmms-eval"): 16,             # mme/mme.yaml
    ("mme", "llava"): 128,                # mme.sh -> model_vqa_loader.py default
    ("pope", "lmms-eval"): 128,           # pope/pope.yaml
    ("pope", "llava"): 128,               # pope.sh -> model_vqa_loader.py default
    ("scienceqa_img", "lmms-eval"): 16,   # scienceqa/scienceqa_img.yaml
    ("scienceqa_img", "llava"): 1024,     # sqa.sh -> model_vqa_science.py, fixed 1024
    ("textvqa", "lmms-eval"): 1024,       # textvqa/_default_template_textvqa_yaml sets only `until`: backend default
    ("textvqa", "llava"): 128,            # textvqa.sh -> model_vqa_loader.py default
    ("ocrbench", "lmms-eval"): 128,       # ocrbench/ocrbench.yaml
    ("seedbench", "lmms-eval"): 1024,     # seedbench/seedbench.yaml sets only `until`: backend default
    ("okvqa", "lmms-eval"): 1024,         # ok_vqa/_default_template_vqa_yaml sets only `until`: backend default
    ("egoschema", "lmms-eval"): 16,       # egoschema/_default_template_yaml
    ("nextqa", "lmms-eval"): 1024,        # nextqa/nextqa_mc_test.yaml sets none: backend default
    ("videomme", "lmms-eval"): 16,        # videomme/videomme.yaml
    ("egoplan", "lmms-eval"): 4096,       # egoplan/egoplan.yaml
}


def test_every_protocol_generates_its_own_length():
    assert {name for name, _ in GENERATION_LENGTHS} == PAPER
    for name in PAPER:
        cls = registry.lookup("benchmarks", name)
        assert {p for n, p in GENERATION_LENGTHS if n == name} == set(cls.protocols), name
        for protocol in cls.protocols:
            bench = cls(protocol=protocol)
            assert bench.max_new_tokens == GENERATION_LENGTHS[name, protocol], (name, protocol)


def test_video_benchmarks_record_the_frame_count_option():
    for name in ("egoschema", "nextqa", "videomme", "egoplan"):
        cls = registry.lookup("benchmarks", name)
        assert cls(num_frames=8).cfg.num_frames == 8
        with pytest.raises(Exception, match=f"benchmark '{name}'.*num_frames"):
            cls(num_frames=0)


def test_subset_is_seeded_sorted_and_honours_limit():
    a = subset_indices(100, 10, seed=3)
    assert a == sorted(a) and len(set(a)) == 10
    assert subset_indices(100, 10, seed=3) == a
    assert subset_indices(100, 10, seed=4) != a
    assert subset_indices(5, None, seed=0) == [0, 1, 2, 3, 4]
    assert subset_indices(5, 50, seed=0) == [0, 1, 2, 3, 4]


def test_subset_keeps_groups_whole():
    groups = [i // 3 for i in range(30)]  # ten groups of three
    for seed in range(5):
        picked = subset_indices(30, 4, seed, groups)
        assert len(picked) == 6  # two whole groups: at least 4 rows, less than one group over
        kept = {groups[i] for i in picked}
        assert all(groups.count(g) == sum(groups[i] == g for i in picked) for g in kept)
    assert subset_indices(30, 4, 0, groups) != subset_indices(30, 4, 1, groups)


def test_the_docs_example_benchmark_runs(tmp_path):
    """The plugin module of docs/benchmarks.md ("Write your own benchmark"), as written there: registered
    through register_benchmarks, checked when the grid loads, run by `tokenprune run` on the bundled model."""
    from tokenprune.cli import main
    from tokenprune.errors import ParamError
    from tokenprune.runner.store import RunStore

    with plugin_from_docs("benchmarks.md", "## Write your own benchmark"):
        cls = registry.lookup("benchmarks", "solid_colours")
        bench = cls(limit=2, seed=1)
        samples = list(bench.samples())
        assert len(samples) == 2 and [s.id for s in samples] == [s.id for s in cls(limit=2, seed=1).samples()]
        assert bench.score(samples[0], samples[0].references.upper() + ".")["correct"] == 0.0  # "red." is not "red"
        assert bench.aggregate([{"score": bench.score(s, s.references)} for s in samples]) == {"accuracy": 100.0}
        with pytest.raises(ParamError, match="benchmark 'solid_colours': param size=4"):
            cls(size=4)
        grid = {"models": [{"label": "shapes", "adapter": "llava", "checkpoint": "zoo:shapes-llava-144"}],
                "strategies": ["vanilla", "random"], "budgets": [16],
                "benchmarks": [{"name": "solid_colours", "limit": 3}], "latency": {"warmup": 0}}
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
        assert main(["run", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
        for cs in RunStore(tmp_path / "run").cells():
            metrics = cs.metrics()
            assert metrics["samples"] == 3 and metrics["main_metric"] == "accuracy"
            assert 0.0 <= metrics["benchmark_metrics"]["accuracy"] <= 100.0
            assert metrics["source"]["dataset"] == "solid colours, drawn in code"
