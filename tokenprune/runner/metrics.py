"""Per-cell metrics: benchmark scores, realised tokens, analytic FLOPs, latency, memory, environment."""
from __future__ import annotations

import platform
import statistics

import torch

from .. import flops, timing

LATENCY_KEYS = ("vision_s", "select_s", "prefill_s", "decode_s_per_token", "total_s")


def token_stats(records: list[dict]) -> dict:
    counts = [r["count"] for r in records if r.get("count") is not None]
    visual = [r["n_visual"] for r in records if r.get("n_visual") is not None]
    if not counts:
        return {"kept_mean": None, "kept_min": None, "kept_max": None, "n_visual_mean": None}
    out = {
        "kept_mean": statistics.fmean(counts),
        "kept_min": min(counts),
        "kept_max": max(counts),
        "n_visual_mean": statistics.fmean(visual) if visual else None,
        # samples with no more visual tokens than the budget keep them all (the engine's rule)
        "all_kept_samples": sum(1 for r in records if r.get("count") is not None
                                and r.get("n_visual") is not None and r["count"] >= r["n_visual"]),
    }
    first = [r["stage1_count"] for r in records if r.get("stage1_count") is not None]
    if first:  # two-stage strategies: tokens the LLM received (layers below K)
        out["stage1_kept_mean"] = statistics.fmean(first)
    return out


def flops_stats(records: list[dict], shape: flops.LLMShape, prune_layer: int | None, bytes_per_value: int) -> dict:
    """Mean analytic FLOPs over samples, with each sample's real prompt length and kept count."""
    rows = []
    for r in records:
        if r.get("prompt_tokens") is None or r.get("n_visual") is None:
            continue
        # a resized input is costed against the prompt the unpruned model would have had
        n_total, n_visual = r.get("native_prompt_tokens") or r["prompt_tokens"], r["n_visual"]
        kept = r["count"] if r.get("count") is not None else n_visual
        alive = flops.alive_per_layer(shape, n_total, n_visual, kept, prune_layer, r.get("stage1_count"))
        full = flops.alive_per_layer(shape, n_total, n_visual, n_visual, None)
        new_tokens = r.get("new_tokens") or 1
        rows.append({
            "prefill_flops": flops.prefill_flops(shape, alive),
            "decode_flops_per_token": flops.decode_flops(shape, alive, new_tokens),
            "prefill_flops_ratio": flops.prefill_flops(shape, alive) / flops.prefill_flops(shape, full),
            "fastv_convention_macs": flops.fastv_convention_macs(shape, alive),
            "fastv_convention_ratio": flops.fastv_convention_macs(shape, alive) / flops.fastv_convention_macs(shape, full),
            "kv_cache_bytes": flops.kv_cache_bytes(shape, alive, bytes_per_value),
            "layer_avg_visual_tokens": flops.layer_averaged_tokens(alive, n_total - n_visual),
        })
    if not rows:
        return {}
    return {key: statistics.fmean(row[key] for row in rows) for key in rows[0]}


def latency_stats(records: list[dict], *, source: str = "samples", repeats: int = 1) -> dict:
    """median, quartiles and p90 per latency component over the records not flagged as warm-up.

    ``source``: "samples" (timed while the accuracy pass ran) or "latency-subset" (a fixed subset
    timed ``repeats`` times, cells interleaved).
    """
    measured = [r for r in records if not r.get("warmup")]
    out = {}
    for key in LATENCY_KEYS:
        stats = timing.summarize([(r.get("timings") or {}).get(key) for r in measured])
        for stat in ("median", "p25", "p75", "p90"):
            out[f"{key}_{stat}"] = stats[stat]
    out["latency_samples"] = len(measured)
    out["source"] = source
    out["repeats"] = repeats
    return out


def host_load(meter: timing.LoadMeter, max_load: float) -> dict:
    """How busy the host was while the cell was timed, against the grid's threshold (latency.max_load)."""
    cpus = timing.usable_cpus()
    threshold = round(max_load * cpus, 3)
    other = meter.other_cpus()
    return {
        "cpu_count": cpus,
        "other_cpu_load": None if other is None else round(other, 3),
        "load_measure": meter.measure,
        "load_threshold": float(threshold),
        "timed_under_load": None if other is None else bool(other > threshold),
    }


def environment(device: str, dtype: str, attn_implementation: str, load: dict | None = None) -> dict:
    import transformers

    from .. import __version__

    env = {
        "device": device,
        "device_name": platform.processor() or platform.machine(),
        "dtype": dtype,
        "attn_implementation": attn_implementation,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenprune": __version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if (average := timing.load_average()) is not None:  # other work on the machine skews CPU timings: keep the evidence
        env["load_average_1min"] = average
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    env.update(load or {})
    return env
