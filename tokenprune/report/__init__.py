"""Comparison reports of run directories."""


def write_report(run_dir, out=None):
    """Write RUN_DIR/report/report.html, or OUT/report.html (+ report.md, CSV, PNG); returns the HTML path."""
    from .build import write_report as _write

    return _write(run_dir, out)
