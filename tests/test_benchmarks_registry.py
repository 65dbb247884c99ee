"""The built-in benchmarks as the registry sees them, and seeded sub-sampling."""
import json

import pytest

from tokenprune import registry
from tokenprune.benchmarks import BUILTIN, Benchmark
from tokenprune.benchmarks._sampling import subset_indices

PAPER = {"gqa", "mmbench", "mme", "pope", "scienceqa_img", "textvqa", "ocrbench", "seedbench", "okvqa",
         "egoschema", "nextqa", "videomme", "egoplan"}
TWO_PROTOCOLS = {"pope", "textvqa", "mme", "gqa"}


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
