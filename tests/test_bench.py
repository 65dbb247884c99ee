import json
from types import SimpleNamespace

import pytest
import torch

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
    assert main(["bench", "e2e", "--repeats", "0"]) == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_e2e_bench_sets_speed_beside_flops(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_models

    ckpt = tiny_models.llava(layers=4).checkpoint
    assert main(["bench", "e2e", "--arch", ckpt, "--strategies", "random,limit,downsample", "--budgets", "9",
                 "--repeats", "2", "--warmup", "0", "--out", str(tmp_path)]) == 0
    payload = json.loads(next(tmp_path.glob("e2e_*.json")).read_text())
    rows, env = payload["rows"], payload["environment"]
    assert [r["strategy"] for r in rows] == ["vanilla", "limit", "random", "downsample"]  # limit once, first
    assert env["rounds"] == 2 and set(env["load_average_1min"]) == {"before", "after_warmup", "max", "end"}
    assert set(env["other_processes_cores"]) == {"mean", "max_round"} and isinstance(env["busy"], bool)
    assert env["flops_scope"] == "vision+llm" and 0 < env["vision_flops_share"] < 1
    alone = {int(n): r for n, r in env["llm_alone_ratio"].items()}  # the LLM alone at n tokens / at all of them
    n_total = max(alone)
    assert alone[n_total] == 1.0 and len(alone) >= 2 and all(r > 0 for r in alone.values())
    shares = env["vanilla_time_shares"]
    assert 0 < shares["vision"] < 1 and 0 < shares["llm"] < 1 and shares["vision"] + shares["llm"] < 1
    downsample = rows[-1]
    assert downsample["select_ms"] >= 0 and downsample["budget"] == 9  # measured like any strategy
    # a smaller image: the vision tower's FLOPs shrink too, so the whole prefill gains more than the LLM alone
    assert downsample["flops_speedup"] > rows[-2]["flops_speedup"]
    pruned = rows[-2]
    assert pruned["budget"] == 9 and pruned["kept"] == 9 and pruned["layer"] == 0
    # the tower is untouched by LLM-side pruning: the whole-prefill prediction is below the LLM-only one
    assert 1.0 < pruned["flops_speedup"] < pruned["llm_flops_speedup"]
    assert pruned["vs_flops"] == pruned["speedup"] / pruned["flops_speedup"]
    expected = rows[0]["prefill_ms"] / (rows[0]["prefill_ms"] / pruned["flops_speedup"] + pruned["select_ms"])
    assert pruned["expected_speedup"] == pytest.approx(expected) and pruned["expected_speedup"] < pruned["flops_speedup"]
    assert pruned["prefill_ms"] > 0 and pruned["decode_ms_per_token"] > 0
    assert rows[0]["vision_ms"] > 0 and pruned["no_engine_speedup"] > 0
    assert pruned["vs_no_engine"] == pruned["speedup"] / pruned["no_engine_speedup"]
    kept_total = n_total - rows[0]["budget"] + 9  # random prunes before the LLM: every layer sees these
    assert pruned["no_engine_speedup"] == pytest.approx(1 / (1 - shares["llm"] + shares["llm"] * alone[kept_total]))
    assert "expected_speedup =" in next(tmp_path.glob("e2e_*.md")).read_text()


def test_e2e_pairs_every_pruned_run_with_a_vanilla_run_and_rotates_the_order():
    from tokenprune.bench.e2e import Case, measure

    log = []

    class FakeBench:
        def vanilla(self, case, keep=True):
            log.append(("vanilla", keep))
            return 2.0

        def pruned(self, case, keep=True):
            log.append((case.name, keep))
            return {"a": 1.0, "b": 0.5}[case.name]

        def llm_alone(self, n):
            log.append(("alone", n))

    cases = [Case("a"), Case("b")]
    base, conditions = measure(FakeBench(), cases, repeats=2, warmup=1, lengths=lambda: [30, 9], load_before=0.5)
    assert log == [("vanilla", False), ("a", False), ("b", False),
                   ("vanilla", True), ("a", True), ("vanilla", True), ("b", True), ("alone", 30), ("alone", 9),
                   ("vanilla", True), ("b", True), ("vanilla", True), ("a", True),  # order rotated
                   ("alone", 30), ("alone", 9)]
    assert cases[0].ratios == [2.0, 2.0] and cases[1].ratios == [4.0, 4.0]
    assert conditions["load_average_1min"]["before"] == 0.5 and conditions["rounds"] == 2


def test_busy_counts_other_processes_not_the_bench_itself(monkeypatch):
    from tokenprune import timing
    from tokenprune.bench import machine
    from tokenprune.bench.e2e import Case, measure

    class Idle:
        def vanilla(self, case, keep=True):
            return 1.0

        def pruned(self, case, keep=True):
            return 1.0

    # each round: the CPUs were busy for 20 s in 10 s, 15 of them this process's: others kept 0.5 cores busy
    busy, own, clock = iter([100.0, 100.0, 120.0] * 2), iter([5.0, 20.0] * 2), iter([0.0, 10.0] * 2)
    monkeypatch.setattr(timing, "_cpu_busy_seconds", lambda: next(busy))
    monkeypatch.setattr(timing.time, "process_time", lambda: next(own))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(timing.LoadMeter.__init__, "__defaults__", (timing._cpu_busy_seconds, timing.time.process_time,
                                                                    timing.time.perf_counter, None))
    _, conditions = measure(Idle(), [Case("a")], repeats=2, warmup=0)
    assert conditions["other_processes_cores"] == {"mean": 0.5, "max_round": 0.5}
    assert not machine.busy({"load_average_1min": {"before": 0.3}, "other_processes_cores": {"max_round": 0.2}})
    assert machine.busy({"load_average_1min": {"before": 0.3}, "other_processes_cores": {"max_round": 0.9}})
    # the load average lags and counts our own earlier work: it decides only when nothing was measured
    assert not machine.busy({"load_average_1min": {"before": 3.0}, "other_processes_cores": {"max_round": 0.0}})
    assert machine.busy({"load_average_1min": {"before": 3.0}, "other_processes_cores": {"max_round": None}})
    assert not machine.busy({"load_average_1min": {"before": 0.3}})


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


def _counted(fn):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("feature_layer", [-2, [-3, -1]])
def test_vision_flops_match_the_flop_counter_on_a_clip_tower(feature_layer):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from tokenprune import flops

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=80, num_hidden_layers=3, num_attention_heads=2,
                              image_size=28, patch_size=7)
    text = LlamaConfig(vocab_size=50, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=3, vision_feature_layer=feature_layer)
    config._attn_implementation = "sdpa"
    model = LlavaForConditionalGeneration(config).eval()
    pixels = torch.randn(2, 3, 28, 28)
    shape = flops.VisionShape.from_config(config)
    assert shape.flops([16, 16]) == _counted(lambda: model.model.get_image_features(
        pixels, vision_feature_layer=feature_layer, vision_feature_select_strategy="default"))


def test_vision_flops_match_the_flop_counter_on_qwen2_vl():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from tokenprune import flops

    config = Qwen2VLConfig(vision_config=dict(depth=2, embed_dim=32, hidden_size=48, num_heads=2, mlp_ratio=2,
                                              patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
                           text_config=dict(vocab_size=50, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=1,
                                            rope_parameters={"rope_type": "default", "mrope_section": [2, 2, 2]}))
    config._attn_implementation = "sdpa"
    model = Qwen2VLForConditionalGeneration(config).eval()
    grids = torch.tensor([[1, 4, 6], [1, 2, 2]])  # two images: 24 and 4 patches, attention within each
    pixels = torch.randn(28, 3 * 2 * 14 * 14)
    shape = flops.VisionShape.from_config(config)
    assert shape.flops([24, 4]) == _counted(lambda: model.model.get_image_features(pixels, grids))
    other = SimpleNamespace(vision_config=SimpleNamespace(model_type="siglip_vision_model"))
    assert flops.VisionShape.from_config(other) is None  # a tower this module does not describe is not counted


def test_llava_mid_keeps_llava_15s_layout_and_vision_share():
    from tokenprune import flops
    from tokenprune.bench.archs import ARCHS

    mid, full = ARCHS["llava-mid"](device="meta"), ARCHS["llava-1.5-7b"](device="meta")
    assert mid.tokens_per_image() == full.tokens_per_image() == (24, 576)
    shares = []
    for vlm in (mid, full):
        config = vlm.model.config
        llm = flops.prefill_flops(flops.LLMShape.from_config(config), [640] * config.text_config.num_hidden_layers)
        vision = flops.VisionShape.from_config(config).flops([576])
        shares.append(vision / (vision + llm))
    assert shares[0] == pytest.approx(shares[1], abs=0.01)  # ~4 % of the prefill in the tower, as in LLaVA-1.5-7B
    assert len(mid.decoder_layers) == 16 and mid.model.config.text_config.hidden_size == 1024


def test_hooks_bench_reports_the_engines_costs_per_call(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_models

    ckpt = tiny_models.llava(layers=4).checkpoint
    assert main(["bench", "hooks", "--arch", ckpt, "--strategies", "limit,divprune", "--budgets", "9",
                 "--repeats", "2", "--out", str(tmp_path)]) == 0
    rows = json.loads(next(tmp_path.glob("hooks_*.json")).read_text())["rows"]
    by = {(r["strategy"], r["what"]): r for r in rows}
    prefill = by[("limit", "engine hooks per prefill, select() taken out")]
    assert prefill["us"] > 0 and prefill["torch_ops"] > 10  # gathers, masks, records: real work at the prune point
    # one sample, SDPA, original positions: decode steps dispatch no torch operator in the engine's hooks
    assert by[("limit", "engine hooks per decode step")]["torch_ops"] == 0
    assert {("limit", "layer 3 hook at prefill"), ("limit", "layer 3 hook at decode")} <= set(by)
    assert ("divprune", "layer 3 hook at decode") not in by  # pre_llm: no decoder-layer hooks
    assert by[("divprune", "the strategy's select() per prefill")]["us"] > 0
