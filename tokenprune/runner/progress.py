"""Progress bars for cells and samples (tqdm when available and enabled, silent otherwise)."""
from __future__ import annotations

import sys


class _Silent:
    def update(self, n=1):
        pass

    def close(self):
        pass


class Progress:
    def __init__(self, total_cells: int = 0, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty() or enabled == "force"
        self._cells = None
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.enabled = False
            else:
                self._tqdm = tqdm
                self._cells = tqdm(total=total_cells, desc="cells", position=0, unit="cell")

    def samples(self, cell, total: int, initial: int = 0):
        if not self.enabled:
            return _Silent()
        return self._tqdm(total=total, initial=initial, desc=cell.describe()[:60], position=1, leave=False,
                          unit="sample")

    def cell_done(self, cell, status: str):
        if self._cells is not None:
            self._cells.update(1)
            self._cells.set_postfix_str(status)

    def close(self):
        if self._cells is not None:
            self._cells.close()
