"""On a CUDA GPU (marked ``cuda``: skipped without one; scripts/gpu_check.sh runs them): every strategy
selects the same tokens on CUDA as on CPU, and pruned generation through the engine on CUDA equals CPU,
token for token. float64 on both devices puts the arithmetic differences (~1e-15) far below any gap in
these random inputs, so the comparisons are exact; bfloat16 + sdpa, what a GPU run uses, must run with
exact budgets."""
import pytest
import torch

import tiny_models as tm
import tokenprune
from tokenprune.bench.select import device_inputs
from tokenprune.models import load

pytestmark = pytest.mark.cuda

STRATEGIES = [n for n in tokenprune.list_strategies() if n != "vanilla"]
SHAPE = {"h": 12, "w": 12, "dk": 64, "d": 96, "head_dim": 16}


DEVICE = "cuda"


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_selects_the_same_on_cuda_as_on_cpu(name):
    strategy = tokenprune.get_strategy(name)
    out = {}
    for device in ("cpu", DEVICE):
        keys, attn, coords, ctx = device_inputs(strategy, SHAPE, 2, device, torch.float64)
        sel = strategy.select(keys, attn, coords, 36, ctx)
        assert sel.keep.device == coords.device, f"{name}: keep came back on {sel.keep.device}"
        out[device] = sel
    assert torch.equal(out[DEVICE].keep.cpu(), out["cpu"].keep), name
    if out["cpu"].hidden is not None:
        torch.testing.assert_close(out[DEVICE].hidden.cpu(), out["cpu"].hidden, rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def checkpoint():
    """A tiny LLaVA (36 visual tokens per image) deep enough for every strategy's default layer K."""
    layers = max([3] + [(tokenprune.strategy_class(n).layer or 0) + 1 for n in STRATEGIES
                        if tokenprune.strategy_class(n).stage == "llm"])
    return tm.llava(layers=layers).checkpoint


def _pruned(vlm, name, inputs, budget, new_tokens):
    with tokenprune.apply(vlm, name, budget) as handle:
        result = vlm.generate(inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    records = sorted((r["sample"], r["count"], r["kept"]) for r in handle.records)
    return result, records


@pytest.mark.parametrize("name", STRATEGIES)
def test_pruned_generate_on_cuda_equals_cpu(checkpoint, name):
    runs = []
    for device in ("cpu", DEVICE):
        vlm = load("llava", checkpoint, device=device)
        vlm.model.to(torch.float64)
        inputs = vlm.build_inputs(tm.samples(2, seed=3))
        result, records = _pruned(vlm, name, inputs, 9, new_tokens=4)  # 9 of 36 visual tokens per sample
        runs.append((result.sequences.cpu(), records))
    (seq_cpu, kept_cpu), (seq_dev, kept_dev) = runs
    assert kept_dev == kept_cpu
    assert torch.equal(seq_dev, seq_cpu)


@pytest.mark.parametrize("name", STRATEGIES)
def test_pruned_generate_in_bfloat16_with_sdpa_on_cuda(checkpoint, name):
    vlm = load("llava", checkpoint, dtype="bfloat16", attn_implementation="sdpa", device=DEVICE)
    inputs = vlm.build_inputs(tm.samples(2, seed=5))
    strategy = tokenprune.get_strategy(name)
    result, records = _pruned(vlm, strategy, inputs, 9, new_tokens=3)
    assert result.new_tokens == [3, 3]
    assert [r[0] for r in records] == [0, 1]
    for _, count, kept in records:
        assert count == len(kept) >= 1 and all(0 <= k < 36 for k in kept)
        if strategy.exact_budget:
            assert count == 9
