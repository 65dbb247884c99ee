"""Read back what workers that wrote to the run directory themselves left there."""
from __future__ import annotations


def _written(cs) -> tuple | None:
    """Which metrics.json a finished cell has (a rewrite replaces the file: a new inode and time)."""
    if not (cs.done and cs.metrics_path.exists()):
        return None
    stat = cs.metrics_path.stat()
    return stat.st_ino, stat.st_mtime_ns


def finished_at(groups, store) -> dict[str, tuple | None]:
    """Each finished cell's metrics.json (None: not finished), taken before the workers start."""
    return {cell.id: _written(store.cell(cell)) for _, cells in groups for cell in cells}


def statuses(groups, store, before: dict[str, tuple | None]) -> dict[str, str]:
    """{cell id: 'done' | 'skipped' | 'failed'} as `local` reports them: a cell whose metrics the workers
    left as they were (``before``: finished_at) was skipped; a cell with an error, or unfinished, failed."""
    out = {}
    for _, cells in groups:
        for cell in cells:
            cs = store.cell(cell)
            if cs.error() is not None:
                out[cell.id] = "failed"
            elif cs.done:
                out[cell.id] = "skipped" if before.get(cell.id) == _written(cs) else "done"
            else:
                cs.fail(RuntimeError("the worker ended without finishing this cell (killed or crashed)"))
                out[cell.id] = "failed"
    return out
