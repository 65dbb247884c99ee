"""Whether other work shared the machine while a benchmark timed: CPU timings taken under others' load say little.

The load average counts the benchmark's own threads too (and lags by a minute), so the CPU time of
*other* processes is measured directly, round by round, with ``timing.LoadMeter``.
"""
from __future__ import annotations

BUSY_LOAD = 1.2  # 1-minute load average before the run above which the machine counts as busy (fallback)
BUSY_CORES = 0.5  # cores used by other processes, in any round, above which the machine counts as busy


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
