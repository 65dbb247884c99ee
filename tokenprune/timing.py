"""Latency statistics and device-synchronised timers."""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch


def synchronize(device) -> None:
    """Wait for queued GPU work so CPU timers measure it (no-op on CPU)."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(dev)


@contextmanager
def timed(device, out: dict, key: str, clock=time.perf_counter):
    synchronize(device)
    start = clock()
    try:
        yield
    finally:
        synchronize(device)
        out[key] = clock() - start


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: list[float | None]) -> dict:
    """median, p90, mean and count of the measured values (None = not measured)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "p90": None, "mean": None, "n": 0}
    return {"median": statistics.median(vals), "p90": percentile(vals, 90), "mean": statistics.fmean(vals),
            "n": len(vals)}


def peak_memory_bytes(device) -> dict:
    """Peak memory so far: CUDA allocator peak on GPU, process max RSS on CPU (labelled)."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(dev)), "memory_kind": "cuda_max_allocated"}
    try:
        import resource

        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"peak_memory_bytes": int(rss_kb) * 1024, "memory_kind": "process_max_rss"}
    except (ImportError, OSError):
        return {"peak_memory_bytes": None, "memory_kind": "unavailable"}
