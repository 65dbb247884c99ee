"""`tokenprune bench select`: time every strategy's select() on realistic shapes.

Shapes: LLaVA-1.5-7B (N = 576 on 24x24, keys and hidden 4096-d, budgets 64/128/192)
and Qwen2-VL-7B (N = 1280 on 32x40, keys 512-d (4 KV heads x 128), hidden 3584, budget 142).
Keys come with heads concatenated and ctx.extras["head_dim"] = 128, as the engine gives them.
Median and p90 after warm-up, batch 1 and 8, on CPU and CUDA where present.
"""
from __future__ import annotations

import statistics
import time

import torch

from .. import get_strategy, list_strategies
from ..timing import percentile, synchronize
from ..testing.inputs import make_inputs

SHAPES = {
    "llava-1.5-7b": {"h": 24, "w": 24, "dk": 4096, "d": 4096, "head_dim": 128, "budgets": (64, 128, 192)},
    "qwen2-vl-7b": {"h": 32, "w": 40, "dk": 512, "d": 3584, "head_dim": 128, "budgets": (142,)},
}


def _to(x, device, dtype):
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
    return x


def device_inputs(strategy, shape: dict, batch: int, device: str, dtype):
    """(keys, attn, coords, ctx) of ``shape`` for ``strategy``, on ``device`` in ``dtype`` (same values anywhere)."""
    keys, attn, coords, ctx = make_inputs(strategy, batch=batch, h=shape["h"], w=shape["w"], dk=shape["dk"],
                                          d=shape["d"], text_len=32)
    keys, attn, coords = _to(keys, device, dtype), _to(attn, device, dtype), coords.to(device)
    for name in ("hidden", "text_keys", "text_hidden", "text_embeds", "image_embeds"):
        setattr(ctx, name, _to(getattr(ctx, name), device, dtype))
    if ctx.final_norm is not None:
        ctx.final_norm = ctx.final_norm.to(device=device, dtype=dtype)
    if shape.get("head_dim"):  # the engine fills it from the model config (saint averages heads)
        ctx.extras["head_dim"] = shape["head_dim"]
    return keys, attn, coords, ctx


def time_select(strategy, shape: dict, budget: int, batch: int, device: str, dtype, repeats: int, warmup: int):
    keys, attn, coords, ctx = device_inputs(strategy, shape, batch, device, dtype)
    seeds = [g.initial_seed() for g in ctx.generator]
    times = []
    for i in range(warmup + repeats):
        ctx.generator = [torch.Generator().manual_seed(s) for s in seeds]
        synchronize(device)
        start = time.perf_counter()
        strategy.select(keys, attn, coords, budget, ctx)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1e3, "p90_ms": percentile(times, 90) * 1e3}


def run(strategies=None, devices=None, batches=(1, 8), shapes=None, repeats=10, warmup=3, dtype="float32",
        params: dict | None = None) -> list[dict]:
    """Rows of timings; ``shapes`` is a list of SHAPES names or a dict of custom shapes."""
    names = strategies or [n for n in list_strategies() if n != "vanilla"]
    devices = devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        torch_dtype = getattr(torch, dtype)
        table = shapes if isinstance(shapes, dict) else {n: SHAPES[n] for n in shapes or SHAPES}
        for shape_name, shape in table.items():
            for name in names:
                strategy = get_strategy(name, **(params or {}).get(name, {}))
                for budget in shape["budgets"]:
                    for batch in batches:
                        r = time_select(strategy, shape, budget, batch, device, torch_dtype, repeats, warmup)
                        rows.append({"strategy": name, "shape": shape_name, "N": shape["h"] * shape["w"],
                                     "budget": budget, "batch": batch, "device": device, "dtype": dtype, **r})
    return rows
