"""`tokenprune report RUN_DIR`: one self-contained HTML page, a markdown summary and CSV files."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from ..runner.collect import collect, write_parquet
from ..runner.store import RunStore
from . import plots, tables
from .pictures import cell_diagnostics, token_pictures


def _expected_cells(run_dir: Path):
    """Cells the grid asked for (so ones never started show as missing); None if the grid cannot be re-read."""
    from ..runner.grid import parse_grid

    planned = RunStore(run_dir).planned_cells()  # the cells as run (smoke changes included)
    if planned is not None:
        return planned
    try:
        return parse_grid(_grid_raw(run_dir), source=str(run_dir / "grid.json")).cells
    except Exception:  # noqa: BLE001 - an unreadable grid only loses the 'missing' rows
        return None


def _grid_raw(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "grid.json").read_text())
    except (OSError, ValueError):
        return {}


def _add_missing(df: pd.DataFrame, expected) -> pd.DataFrame:
    if not expected:
        return df
    have = set(df["cell"]) if not df.empty else set()
    extra = [{
        "cell": c.id, "model": c.model.label, "strategy": c.strategy, "label": c.label or c.strategy,
        "budget": c.budget, "keep_ratio": c.keep_ratio, "budget_label": c.budget_label(), "benchmark": c.benchmark,
        "seed": c.seed, "status": "missing", "score": None, "relative": None,
    } for c in expected if c.id not in have]
    return pd.concat([df, pd.DataFrame(extra)], ignore_index=True) if extra else df


def _img(data: bytes) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}"/>'


def _pil_png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_report(run_dir, out=None) -> Path:
    run_dir = Path(run_dir)
    name = run_dir.resolve().name
    out = Path(out) if out else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    df = collect(run_dir)
    if df.empty:
        df = pd.DataFrame(columns=["cell", "model", "strategy", "label", "budget_label", "benchmark", "status",
                                   "score", "relative"])
    stores = {cs.cell.id: cs for cs in RunStore(run_dir).cells()}
    diag = [cell_diagnostics(stores[c].records()) if c in stores else {} for c in df["cell"]]
    for key in ("edge_tokens", "nn_distance", "redundancy"):
        df[f"diagnostics.{key}"] = [d.get(key) for d in diag]
    expected = _expected_cells(run_dir)
    df = _add_missing(df, expected)
    label_order = list(dict.fromkeys(c.label or c.strategy for c in expected or []))
    df.to_csv(out / "cells.csv", index=False)
    if (df["status"] == "done").any():
        write_parquet(df[df["status"] != "missing"], out / "cells.parquet")

    sections_md = [f"# tokenprune report: {name}\n", f"Run directory: `{run_dir}`\n"]
    sections_html = [f"<h1>tokenprune report: {html.escape(name)}</h1>"]
    status_counts = df["status"].value_counts().to_dict()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(status_counts.items()))
    sections_md.append(f"Cells: {summary}\n")
    sections_html.append(f"<p>Cells: {html.escape(summary)}</p>")

    for model in sorted(df["model"].dropna().unique()):
        table = tables.paper_table(df, model, label_order)
        md = tables.to_markdown(table)
        sections_md += [f"## {model}\n", md]
        sections_html += [f"<h2>{html.escape(model)}</h2>", _md_table_to_html(md)]
        table.drop(columns=[c for c in table.columns if c.endswith("__status")]).to_csv(
            out / f"table_{_slug(model)}.csv", index=False)

    paper = _grid_raw(run_dir).get("paper")
    if isinstance(paper, dict):
        from . import paper as paper_section

        comp = paper_section.comparison(df, paper)
        if not comp.empty:
            md = paper_section.to_markdown(comp, paper.get("source", "paper"))
            comp.to_csv(out / "paper_vs_ours.csv", index=False)
            sections_md += ["## Paper vs ours\n", md]
            sections_html += ["<h2>Paper vs ours</h2>", _md_table_to_html(md)]

    figures = [
        ("Accuracy vs retained visual tokens", plots.accuracy_vs_tokens(df)),
        ("% of vanilla vs retained visual tokens", plots.relative_vs_tokens(df)),
        ("Accuracy vs analytic prefill FLOPs (Pareto front)", plots.pareto(df, "flops.prefill_flops", "prefill FLOPs")),
        ("Accuracy vs measured prefill latency (Pareto front)",
         plots.pareto(df, "latency.prefill_s_median", "prefill / TTFT, median (s)")),
        ("Selection overhead", plots.selection_overhead(df)),
        ("Score per group, fewest tokens", plots.per_type(df)),
    ]
    for title, data in figures:
        if data is None:
            continue
        fname = _slug(title) + ".png"
        (out / fname).write_bytes(data)
        sections_md.append(f"### {title}\n\n![{title}]({fname})\n")
        sections_html += [f"<h3>{html.escape(title)}</h3>", _img(data)]

    pictures = token_pictures(run_dir, df)
    if pictures:
        sections_md.append("### Kept tokens\n")
        sections_html.append("<h3>Kept tokens (red outline = kept, numbers = selection order)</h3>")
        for i, (title, image) in enumerate(pictures):
            data = _pil_png(image)
            fname = f"tokens_{i}.png"
            (out / fname).write_bytes(data)
            sections_md.append(f"{title}\n\n![{title}]({fname})\n")
            sections_html += [f"<p>{html.escape(title)}</p>", _img(data)]

    for bench in sorted(df["benchmark"].dropna().unique()):
        parts = tables.breakdown_table(df, bench, label_order)
        if parts.empty:
            continue
        md = _df_markdown(parts)
        title = f"{bench}: score per group"
        sections_md += [f"### {title}\n", md]
        sections_html += [f"<h3>{html.escape(title)}</h3>", _md_table_to_html(md)]
        parts.to_csv(out / f"breakdown_{_slug(bench)}.csv", index=False)

    loyal_cols = ["model", "label", "budget_label", "benchmark", "score", "loyalty", "hard_accuracy", "hard_samples"]
    loyal_df = df[(df["status"] == "done") & (df["strategy"] != "vanilla")]
    if "loyalty" in loyal_df and loyal_df["loyalty"].notna().any():
        md = _df_markdown(tables.in_table_order(loyal_df, label_order)[loyal_cols])
        text = ("Loyalty: % of samples answered as the unpruned model answered them. Hard subset: accuracy on "
                "the samples the `pool` baseline at the same budget gets wrong (where strategies differ).\n\n")
        sections_md += ["### Loyalty and the hard subset\n", text + md]
        sections_html += ["<h3>Loyalty and the hard subset</h3>", f"<p>{html.escape(text)}</p>", _md_table_to_html(md)]

    diag_cols = ["model", "label", "budget_label", "benchmark", "diagnostics.edge_tokens",
                 "diagnostics.nn_distance", "diagnostics.redundancy"]
    diag_df = tables.in_table_order(df[(df["status"] == "done") & df["diagnostics.edge_tokens"].notna()],
                                    label_order)[diag_cols]
    if not diag_df.empty:
        md = _df_markdown(diag_df.rename(columns=lambda c: c.replace("diagnostics.", "")))
        sections_md += ["### Spatial diagnostics (mean over samples)\n", md]
        sections_html += ["<h3>Spatial diagnostics (mean over samples)</h3>", _md_table_to_html(md)]

    failed = df[df["status"] == "failed"]
    missing = df[df["status"].isin(["missing", "incomplete"])]
    if not failed.empty or not missing.empty:
        lines = [f"- FAILED {r.model} | {r.label} | {r.budget_label} | {r.benchmark}: {r.error}"
                 for r in failed.itertuples()]
        lines += [f"- {r.status.upper()} {r.model} | {r.label} | {r.budget_label} | {r.benchmark}"
                  for r in missing.itertuples()]
        sections_md += ["### Failed and missing cells\n", "\n".join(lines) + "\n"]
        sections_html += ["<h3>Failed and missing cells</h3>",
                          "<ul>" + "".join(f"<li>{html.escape(x[2:])}</li>" for x in lines) + "</ul>"]

    (out / "report.md").write_text("\n".join(sections_md))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>tokenprune report</title><style>"
            "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
            "img{max-width:100%}</style></head><body>" + "\n".join(sections_html) + "</body></html>")
    (out / "report.html").write_text(page)
    return out / "report.html"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")[:60]


def _df_markdown(df: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "—" if v is None else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _md_table_to_html(md: str) -> str:
    """Render the small markdown tables this module writes (bold and italics included)."""
    rows = [ln for ln in md.strip().splitlines() if ln.startswith("|")]
    if not rows:
        return f"<p>{html.escape(md)}</p>"
    out = ["<table>"]
    for i, ln in enumerate(rows):
        if i == 1:
            continue
        cells = [c.strip() for c in ln.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        rendered = []
        for c in cells:
            c = html.escape(c)
            if c.startswith("**") and c.endswith("**"):
                c = f"<b>{c[2:-2]}</b>"
            elif c.startswith("*") and c.endswith("*") and len(c) > 1:
                c = f"<i>{c[1:-1]}</i>"
            rendered.append(f"<{tag}>{c}</{tag}>")
        out.append("<tr>" + "".join(rendered) + "</tr>")
    return "".join(out) + "</table>"
