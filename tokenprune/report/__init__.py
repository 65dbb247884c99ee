"""Comparison reports of run directories."""


def write_report(run_dir, out=None):
    """Write reports/<run name>/report.html (+ report.md, CSV, PNG); returns the HTML path."""
    from .build import write_report as _write

    return _write(run_dir, out)
