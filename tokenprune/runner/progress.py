"""Progress of a run: tqdm bars on a terminal, a plain line per finished cell otherwise (CI logs, nohup)."""
from __future__ import annotations

import sys
import time


class _Silent:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """enabled: True (bars on a terminal, lines elsewhere), False (nothing), "force" (bars anyway).

    ``store`` (the run's RunStore) lets a line name the finished cell's sample count and score.
    """

    def __init__(self, total_cells: int = 0, enabled=True, store=None, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.total = total_cells
        self.store = store
        self._clock = clock
        self._cells = None
        self.mode = "off"
        if enabled:
            self.mode = "bars" if enabled == "force" or self.stream.isatty() else "lines"
        if self.mode == "bars":
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.mode = "lines"
            else:
                self._tqdm = tqdm
                self._cells = tqdm(total=total_cells, desc="cells", position=0, unit="cell", file=self.stream)
        self.started = self._last = clock()
        self.finished = 0  # cells finished (any status), for [k/total]
        self.ran = 0  # cells run in this process, for the ETA
        self.run_seconds = 0.0

    def samples(self, cell, total: int, initial: int = 0, desc: str | None = None):
        """A bar over the samples of ``cell`` (``desc``: another title, e.g. for several cells run together)."""
        if self.mode != "bars":
            return _Silent()
        return self._tqdm(total=total, initial=initial, desc=(desc or cell.describe())[:60], position=1, leave=False,
                          unit="sample", file=self.stream)

    def latency(self, cell, total: int):
        """A bar over the latency subset's timings of cell's model (bars only)."""
        if self.mode != "bars":
            return _Silent()
        return self._tqdm(total=total, desc=f"latency {cell.model.label}"[:60], position=1, leave=False,
                          unit="timing", file=self.stream)

    def cell_done(self, cell, status: str):
        now = self._clock()
        took, self._last = now - self._last, now
        self.finished += 1
        if status != "skipped":
            self.ran += 1
            self.run_seconds += took
        if self._cells is not None:
            self._cells.update(1)
            self._cells.set_postfix_str(status)
        elif self.mode == "lines":
            self._print(self._line(cell, status, took, now))

    def note(self, text: str):
        """A one-off line (e.g. the latency subset's summary) in either mode."""
        if self.mode == "bars":
            self._tqdm.write(text, file=self.stream)
        elif self.mode == "lines":
            self._print(text)

    def _line(self, cell, status: str, took: float, now: float) -> str:
        parts = [status]
        metrics = self.store.cell(cell).metrics() if self.store is not None and status == "done" else None
        if metrics:
            main = metrics.get("main_metric")
            score = (metrics.get("benchmark_metrics") or {}).get(main)
            parts.append(f"{metrics.get('samples')} samples")
            if isinstance(score, (int, float)):
                parts.append(f"{main} {score:.4g}")
            if (metrics.get("environment") or {}).get("timed_under_load"):
                parts.append("timed under load")
        if status != "skipped":
            parts.append(f"{took:.1f} s")
        left = self.total - self.finished
        eta = _clock(self.run_seconds / self.ran * left) if self.ran else "?"
        return (f"[{self.finished}/{self.total}] {cell.describe()}: {', '.join(parts)} | "
                f"elapsed {_clock(now - self.started)}, ETA {eta if left else '0:00'}")

    def _print(self, text: str):
        print(text, file=self.stream, flush=True)

    def close(self):
        if self._cells is not None:
            self._cells.close()
