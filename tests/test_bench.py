import json

import pytest

from tokenprune.bench.select import run
from tokenprune.cli import main


def test_select_bench_times_every_requested_case():
    rows = run(strategies=["uniform", "random"], batches=[1, 2], repeats=2, warmup=1,
               shapes={"tiny": {"h": 6, "w": 6, "dk": 16, "d": 16, "budgets": (4, 9)}})
    assert len(rows) == 2 * 2 * 2
    assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] * 0.999 for r in rows)
    assert {(r["strategy"], r["budget"], r["batch"]) for r in rows} == {
        (s, b, n) for s in ("uniform", "random") for b in (4, 9) for n in (1, 2)}


def test_bench_cli_writes_labelled_results(tmp_path, capsys):
    assert main(["bench", "select", "--strategies", "uniform", "--shapes", "llava-1.5-7b", "--batches", "1",
                 "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "select.json").read_text())
    assert payload["environment"]["device"] == "cpu" and payload["environment"]["threads"] == 1
    assert [r["budget"] for r in payload["rows"]] == [64, 128, 192]
    assert "Measured on: device cpu" in (tmp_path / "select.md").read_text()


def test_bench_cli_rejects_unknown_shape(capsys):
    assert main(["bench", "select", "--shapes", "gpt5"]) == 2
    assert "unknown shape(s) ['gpt5']" in capsys.readouterr().err


def test_e2e_bench_sets_speed_beside_flops(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_models

    ckpt = tiny_models.llava(layers=4).checkpoint
    assert main(["bench", "e2e", "--arch", ckpt, "--strategies", "random,downsample", "--budgets", "9",
                 "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)]) == 0
    rows = json.loads(next(tmp_path.glob("e2e_*.json")).read_text())["rows"]
    assert [r["strategy"] for r in rows] == ["vanilla", "limit", "random", "downsample"]
    assert rows[-1]["select_ms"] >= 0 and rows[-1]["budget"] == 9  # measured like any strategy
    pruned = rows[-2]
    assert pruned["budget"] == 9 and pruned["flops_speedup"] > 1.0
    assert pruned["speedup_vs_flops_limit"] == pruned["speedup"] / pruned["flops_speedup"]
    assert pruned["prefill_ms"] > 0 and pruned["decode_ms_per_token"] > 0 and "select_ms" in pruned


@pytest.mark.parametrize("arch, params", [("llava-1.5-7b", 7_063_427_072), ("qwen2-vl-7b", 8_291_375_616)])
def test_full_size_archs_have_the_published_parameter_counts(arch, params):
    from tokenprune.bench.archs import ARCHS

    vlm = ARCHS[arch](device="meta")  # shapes only, no memory
    assert sum(p.numel() for p in vlm.model.parameters()) == params


def test_e2e_on_the_qwen2_vl_arch_code_path(tmp_path, monkeypatch):
    """The Qwen2-VL-7B builder at toy sizes: dynamic-resolution image, M-RoPE, every stage timed."""
    import functools

    from tokenprune.bench import archs

    small = {"vision": dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                            spatial_merge_size=2, temporal_patch_size=2),
             "text": dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                          rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4})}
    monkeypatch.setitem(archs.ARCHS, "qwen2-vl-7b", functools.partial(archs.qwen2_vl_7b, sizes=small,
                                                                      image_size=(5 * 28, 4 * 28)))
    assert main(["bench", "e2e", "--arch", "qwen2-vl-7b", "--devices", "cpu", "--dtype", "float32",
                 "--strategies", "vlm_pruner,downsample", "--budgets", "6", "--repeats", "1", "--warmup", "0",
                 "--out", str(tmp_path)]) == 0
    rows = json.loads(next(tmp_path.glob("e2e_*.json")).read_text())["rows"]
    assert rows[0]["strategy"] == "vanilla" and rows[0]["budget"] == 20  # 4 x 5 merged patches
    assert [r["strategy"] for r in rows[1:]] == ["limit", "vlm_pruner", "downsample"]
    assert all(r["prefill_ms"] > 0 and r["flops_speedup"] > 1 for r in rows[1:])


def test_e2e_fits_a_deep_default_layer_into_a_small_model(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_models

    ckpt = tiny_models.llava(layers=4).checkpoint
    assert main(["bench", "e2e", "--arch", ckpt, "--strategies", "saint", "--budgets", "9", "--repeats", "1",
                 "--warmup", "0", "--out", str(tmp_path)]) == 0
    rows = json.loads(next(tmp_path.glob("e2e_*.json")).read_text())["rows"]
    assert rows[-1]["strategy"] == "saint" and rows[-1]["layer"] == 2  # default K = 8 > 3
