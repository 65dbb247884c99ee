import json

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
