"""Read back what executors that run elsewhere left in the store."""


def statuses(groups, store) -> dict[str, str]:
    out = {}
    for _, cells in groups:
        for cell in cells:
            cs = store.cell(cell)
            out[cell.id] = "done" if cs.done else "failed"
            if not cs.done and cs.error() is None:
                cs.fail(RuntimeError("the worker ended without finishing this cell (killed or crashed)"))
    return out
