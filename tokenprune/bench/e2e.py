"""`tokenprune bench e2e`: prefill/TTFT, decode ms per token and peak memory with and without pruning.

Each strategy's measured prefill speed-up is set beside the analytic FLOPs speed-up
(how close the implementation gets to the limit), and beside `limit`: a zero-cost
strategy that hands layer K the same number of tokens (what a model that simply
receives the kept tokens from layer K on would cost, engine gathers included).
"""
from __future__ import annotations

import statistics

import torch
from PIL import Image

from .. import flops
from ..benchmarks.base import Sample
from ..engine import apply
from ..selection import Selection
from ..strategy import Strategy
from ..two_stage import TwoStage
from ..timing import percentile, peak_memory_bytes

PROMPT = ("describe the picture . what is in this image ? how many are there ? " * 4).strip()


class ZeroCostLimit(Strategy):
    """Bench-only: keeps the first `budget` visual tokens at layer K with no computation (the speed limit)."""

    name = "limit"
    stage = "llm"
    layer = 2

    def select(self, keys, attn, coords, budget, ctx):
        return Selection(keep=torch.arange(budget, device=coords.device).expand(ctx.batch_size, budget).clone())


def _fitted(strategy, n_layers: int):
    """A strategy whose default layer K lies beyond a small model's LLM prunes at K = 2 (as the
    limit does), like the default sweep sets SAINT on the bundled 4-layer model; rows record K."""
    if strategy.stage == "llm" and strategy.prune_layer >= n_layers:
        from .. import get_strategy

        return get_strategy(strategy.name, **{**strategy.cfg.as_dict(), "layer": min(2, n_layers - 1)})
    return strategy


def _load(arch: str, device: str, dtype):
    from ..runner.execute import resolve_checkpoint

    if arch.startswith("zoo:") or "/" in arch:
        from ..models import load

        return load("llava", resolve_checkpoint(arch), dtype=dtype, device=device)
    from .archs import ARCHS

    if arch not in ARCHS:
        from ..errors import TokenpruneError

        raise TokenpruneError(f"unknown --arch {arch!r}; choose zoo:NAME, a checkpoint path, or one of {', '.join(ARCHS)}")
    return ARCHS[arch](dtype=getattr(torch, dtype), device=device)


def _measure(vlm, inputs, repeats: int, warmup: int, new_tokens: int, handle=None) -> dict:
    prefill, decode, select = [], [], []
    if vlm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(vlm.device)
    for i in range(warmup + repeats):
        if handle is not None:
            handle.clear()
        result = vlm.generate(inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        if i < warmup:
            continue
        prefill.append(result.timings["prefill_s"])
        decode.append(result.timings["decode_s_per_token"])
        if handle is not None and handle.records:
            select.append(handle.records[0]["select_s"])
    out = {"prefill_ms": statistics.median(prefill) * 1e3, "prefill_p90_ms": percentile(prefill, 90) * 1e3,
           "decode_ms_per_token": statistics.median(decode) * 1e3,
           "peak_mem_mb": (peak_memory_bytes(str(vlm.device))["peak_memory_bytes"] or 0) / 2**20}
    if select:
        out["select_ms"] = statistics.median(select) * 1e3
        out["select_share"] = out["select_ms"] / out["prefill_ms"]
    return out


def run(arch="zoo:shapes-llava-144", strategies=None, budgets=None, devices=None, repeats=5, warmup=2,
        dtype=None, new_tokens=8) -> list[dict]:
    from .. import get_strategy, list_strategies

    device = (devices or (["cuda"] if torch.cuda.is_available() else ["cpu"]))[-1]
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    vlm = _load(arch, device, dtype)
    size = getattr(vlm, "bench_image_size", None)  # dynamic-resolution archs name their image size
    if size is None:
        side = vlm.model.config.vision_config.image_size
        size = (side, side)
    sample = Sample(id="bench", prompt=PROMPT, references="", images=[Image.new("RGB", size, (90, 140, 200))])
    inputs = vlm.build_inputs([sample])
    n_total = int(inputs["input_ids"].shape[1])
    n_visual = vlm.count_visual(inputs["input_ids"][0])
    shape = flops.LLMShape.from_config(vlm.model.config)
    full_flops = flops.prefill_flops(shape, flops.alive_per_layer(shape, n_total, n_visual, n_visual, None))
    base = _measure(vlm, inputs, repeats, warmup, new_tokens)
    common = {"arch": arch, "device": device, "dtype": dtype, "attn": vlm.model.config._attn_implementation}
    rows = [{**common, "strategy": "vanilla", "budget": n_visual, **base, "speedup": 1.0, "flops_speedup": 1.0,
             "speedup_vs_flops_limit": 1.0}]
    names = strategies or [n for n in list_strategies() if n != "vanilla"]
    n_layers = len(vlm.decoder_layers)
    for budget in budgets or [max(1, round(n_visual * r)) for r in (1 / 3, 2 / 9, 1 / 9)]:
        for name in ["limit", *names]:
            strategy = ZeroCostLimit() if name == "limit" else _fitted(get_strategy(name), n_layers)
            layer = strategy.prune_layer if strategy.stage == "llm" else 0
            first_kept = strategy.checked_first_budget(n_visual, budget) if isinstance(strategy, TwoStage) else None
            alive = flops.alive_per_layer(shape, n_total, n_visual, budget, layer, first_kept)
            with apply(vlm, strategy, budget=budget) as handle:
                # an input-stage strategy (downsample) changes the inputs themselves
                staged = vlm.build_inputs([sample]) if strategy.stage == "input" else inputs
                m = _measure(vlm, staged, repeats, warmup, new_tokens, handle)
            speedup = base["prefill_ms"] / m["prefill_ms"]
            flops_speedup = full_flops / flops.prefill_flops(shape, alive)
            rows.append({**common, "strategy": name, "budget": budget, "layer": layer, **m, "speedup": speedup,
                         "flops_speedup": flops_speedup, "speedup_vs_flops_limit": speedup / flops_speedup})
    return rows
