"""`tokenprune report RUN_DIR`: one self-contained HTML page, a markdown summary and CSV files."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ..runner.collect import write_parquet
from . import comparisons, data, plots, tables
from .document import Bullets, Figure, Section, Table, Text, figures, to_html, to_markdown
from .pictures import token_pictures


def _pil_png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def df_table(df: pd.DataFrame) -> Table:
    """A plain data frame as a report table (floats to 3 significant digits, None as a dash)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "—" if v is None else str(v)

    return Table(list(df.columns), [[fmt(v) for v in row] for row in df.itertuples(index=False)])


def write_report(run_dir, out=None) -> Path:
    run = data.load(run_dir)
    out = Path(out) if out else Path("reports") / run.name
    out.mkdir(parents=True, exist_ok=True)
    df = run.df
    df.to_csv(out / "cells.csv", index=False)
    if (df["status"] == "done").any():
        write_parquet(df[df["status"] != "missing"], out / "cells.parquet")

    sections = _sections(run, out)
    for figure in figures(sections):
        (out / figure.filename).write_bytes(figure.png)
    (out / "report.md").write_text(to_markdown(sections))
    (out / "report.html").write_text(to_html(sections))
    return out / "report.html"


def _sections(run: data.RunData, out: Path) -> list[Section]:
    """The report, top to bottom; CSV files of the tables are written to ``out`` on the way."""
    df, label_order, run_dir, name = run.df, run.label_order, run.run_dir, run.name
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(df["status"].value_counts().to_dict().items()))
    sections = [Section(f"tokenprune report: {name}", [Text(f"Run directory: `{run_dir}`"), Text(f"Cells: {summary}")],
                        level=1)]
    for model in sorted(df["model"].dropna().unique()):
        table = tables.paper_table(df, model, label_order, run.unc)
        block = tables.to_table(table)
        if block is None:
            blocks = [Text("_no finished cells_")]
        else:
            blocks = [block] + ([comparisons.table_caption(run.unc)] if run.unc is not None else [])
        sections.append(Section(model, blocks, level=2))
        table.drop(columns=[c for c in table.columns if c.endswith("__status")]).to_csv(
            out / f"table_{_slug(model)}.csv", index=False)

    paper = run.grid.get("paper")
    if isinstance(paper, dict):
        from . import paper as paper_section

        comp = paper_section.comparison(df, paper)
        if not comp.empty:
            comp.to_csv(out / "paper_vs_ours.csv", index=False)
            sections.append(Section("Paper vs ours", paper_section.blocks(comp, paper.get("source", "paper")), level=2))

    if run.unc is not None:
        seeds = comparisons.seed_section(run.unc, df, label_order)
        sections += [seeds] if seeds is not None else []
        sections += comparisons.comparison_sections(run.unc, df, label_order, out)

    figures_ = [
        ("Accuracy vs retained visual tokens", plots.accuracy_vs_tokens(df)),
        ("% of vanilla vs retained visual tokens", plots.relative_vs_tokens(df)),
        ("Accuracy vs analytic prefill FLOPs (Pareto front)", plots.pareto(df, "flops.prefill_flops", "prefill FLOPs")),
        ("Accuracy vs measured prefill latency (Pareto front)",
         plots.pareto(df, "latency.prefill_s_median", "prefill / TTFT, median (s)")),
        ("Selection overhead", plots.selection_overhead(df)),
        ("Score per group, fewest tokens", plots.per_type(df)),
    ]
    for title, data in figures_:
        if data is not None:
            sections.append(Section(title, [Figure(_slug(title) + ".png", data, title)]))

    pictures = token_pictures(run_dir, df)
    if pictures:
        blocks = [Text("Red outline = kept, numbers = selection order.")]
        for i, (title, image) in enumerate(pictures):
            blocks += [Text(title), Figure(f"tokens_{i}.png", _pil_png(image), title)]
        sections.append(Section("Kept tokens", blocks))

    for bench in sorted(df["benchmark"].dropna().unique()):
        parts = tables.breakdown_table(df, bench, label_order)
        if parts.empty:
            continue
        sections.append(Section(f"{bench}: score per group", [df_table(parts)]))
        parts.to_csv(out / f"breakdown_{_slug(bench)}.csv", index=False)

    loyal_cols = ["model", "label", "budget_label", "benchmark", "score", "loyalty", "hard_accuracy", "hard_samples"]
    loyal_df = df[(df["status"] == "done") & (df["strategy"] != "vanilla")]
    if "loyalty" in loyal_df and loyal_df["loyalty"].notna().any():
        text = ("Loyalty: % of samples answered as the unpruned model answered them. Hard subset: accuracy on "
                "the samples the `pool` baseline at the same budget gets wrong (where strategies differ).")
        sections.append(Section("Loyalty and the hard subset",
                                [Text(text), df_table(tables.in_table_order(loyal_df, label_order)[loyal_cols])]))

    diag_cols = ["model", "label", "budget_label", "benchmark", "diagnostics.edge_tokens",
                 "diagnostics.nn_distance", "diagnostics.redundancy"]
    diag_df = tables.in_table_order(df[(df["status"] == "done") & df["diagnostics.edge_tokens"].notna()],
                                    label_order)[diag_cols]
    if not diag_df.empty:
        sections.append(Section("Spatial diagnostics (mean over samples)",
                                [df_table(diag_df.rename(columns=lambda c: c.replace("diagnostics.", "")))]))

    failed = df[df["status"] == "failed"]
    missing = df[df["status"].isin(["missing", "incomplete"])]
    if not failed.empty or not missing.empty:
        lines = [f"FAILED {r.model} | {r.label} | {r.budget_label} | {r.benchmark}: {r.error}"
                 for r in failed.itertuples()]
        lines += [f"{r.status.upper()} {r.model} | {r.label} | {r.budget_label} | {r.benchmark}"
                  for r in missing.itertuples()]
        sections.append(Section("Failed and missing cells", [Bullets(lines)]))
    return sections


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")[:60]
