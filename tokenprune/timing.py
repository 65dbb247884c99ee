"""Latency statistics, device-synchronised timers, and how busy the host was while we timed."""
from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager

import torch


def synchronize(device) -> None:
    """Wait for queued GPU work so CPU timers measure it (no-op on CPU, and for ``None``)."""
    if device is None:
        return
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(dev)


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
    """median, quartiles, p90, mean and count of the measured values (None = not measured)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "p25": None, "p75": None, "p90": None, "mean": None, "n": 0}
    return {"median": statistics.median(vals), "p25": percentile(vals, 25), "p75": percentile(vals, 75),
            "p90": percentile(vals, 90), "mean": statistics.fmean(vals), "n": len(vals)}


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


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity set where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average, rounded (None where the OS has none). It lags, and counts our own work."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _cpu_busy_seconds() -> float | None:
    """CPU seconds every process together has spent on this process's CPUs since boot (Linux /proc/stat).

    Busy is every state but idle and iowait; steal counts as busy, since the hypervisor gave
    that time to someone else. None where /proc/stat is not readable.
    """
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
    except OSError:
        return None
    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        mine = None
    per_cpu = [f for f in lines if f[0] != "cpu" and (mine is None or f[0] in mine)] or lines[:1]
    ticks = 0
    for fields in per_cpu:
        # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
        values = [int(v) for v in fields[1:9]]
        ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """How many CPUs other processes kept busy while we timed: (all CPU time - ours) / wall time.

    Accumulates over ``span()`` blocks. Reads /proc/stat (10 ms ticks, so short spans are only
    right on average); elsewhere it falls back to the 1-minute load average minus our own use.
    """

    def __init__(self, busy=_cpu_busy_seconds, own=time.process_time, clock=time.perf_counter, loadavg=None):
        self._busy, self._own, self._clock = busy, own, clock
        self._loadavg = loadavg or (lambda: os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
        self.measure = "proc-stat" if busy() is not None else "loadavg"
        self.span_s = 0.0
        self.other_cpu_s = 0.0

    @contextmanager
    def span(self):
        busy0, own0, t0 = self._busy(), self._own(), self._clock()
        try:
            yield self
        finally:
            busy1, own1, t1 = self._busy(), self._own(), self._clock()
            wall, own = t1 - t0, own1 - own0
            if busy0 is not None and busy1 is not None:
                other = (busy1 - busy0) - own
            else:
                load = self._loadavg()
                other = None if load is None else load * wall - own
            if other is not None:
                self.add(wall, max(0.0, other))

    def add(self, span_s: float, other_cpu_s: float):
        self.span_s += span_s
        self.other_cpu_s += other_cpu_s

    def other_cpus(self) -> float | None:
        """Mean number of CPUs other processes used over the spans (None: nothing measured)."""
        return self.other_cpu_s / self.span_s if self.span_s > 0 else None


def host_busy(window_s: float = 0.3) -> tuple[float | None, str]:
    """CPUs other processes use right now (measured over ``window_s`` while we sleep), and how it was measured."""
    meter = LoadMeter()
    with meter.span():
        time.sleep(window_s)
    return meter.other_cpus(), meter.measure


def duration(seconds: float) -> str:
    """A wall time as people read it: 4.5 s, 1 min 35 s."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"
