"""What else ran on the machine while a benchmark timed: CPU timings taken under others' load say little.

The load average counts the benchmark's own threads too (and lags by a minute), so the CPU time of
*other* processes is measured directly: the machine's busy time (/proc/stat) minus this process's
own (os.times), over each interval, in cores.
"""
from __future__ import annotations

import os
import time

BUSY_LOAD = 1.2  # 1-minute load average before the run above which the machine counts as busy (fallback)
BUSY_CORES = 0.5  # cores used by other processes, in any round, above which the machine counts as busy


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _machine_busy_seconds() -> float | None:
    """Seconds all CPUs spent busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherCPU:
    """Cores that other processes kept busy between consecutive ``sample()`` calls."""

    def __init__(self):
        self._last = self._now()

    @staticmethod
    def _now():
        own = os.times()
        return _machine_busy_seconds(), own.user + own.system, time.monotonic()

    def sample(self) -> float | None:
        now = self._now()
        (busy0, own0, t0), (busy1, own1, t1) = self._last, now
        self._last = now
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return round(max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0), 3)


def busy(conditions: dict) -> bool:
    """Whether other work shared the machine while timing: other processes above BUSY_CORES in any round.

    Only where that cannot be measured (no /proc/stat), the 1-minute load average before the run above
    BUSY_LOAD: it lags by a minute and counts whatever we ran just before, so it is the weaker evidence.
    """
    other = (conditions.get("other_processes_cores") or {}).get("max_round")
    if other is not None:
        return other > BUSY_CORES
    before = (conditions.get("load_average_1min") or {}).get("before")
    return before is not None and before > BUSY_LOAD
