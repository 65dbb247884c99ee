"""`tokenprune report RUN_DIR`: one self-contained HTML page, a markdown summary and CSV files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..runner.collect import write_parquet
from . import comparisons, data, environment, notes, plots, tables
from .document import Bullets, Figure, Section, Table, Text, figures, to_html, to_markdown
from .pictures import token_pictures
from .style import Styles


def df_table(df: pd.DataFrame, text_columns: int = 1) -> Table:
    """A plain data frame as a report table (floats to 3 significant digits, None as a dash)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "—" if v is None else str(v)

    return Table(list(df.columns), [[fmt(v) for v in row] for row in df.itertuples(index=False)], text_columns)


def write_report(run_dir, out=None) -> Path:
    run = data.load(run_dir)
    out = Path(out) if out else Path(run_dir) / "report"
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
    df, label_order = run.df, run.label_order
    strategy_of = dict(zip(df["label"], df["strategy"]))
    styles = Styles(label_order or list(dict.fromkeys(df["label"].dropna())), strategy_of)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(df["status"].value_counts().to_dict().items()))
    sections = [Section(f"tokenprune report: {run.name}",
                        [Text(f"Run directory: `{run.run_dir}`"), Text(f"Cells: {summary}")], level=1)]
    warning = environment.load_warning_section(df)
    sections += [warning] if warning is not None else []
    sections += _comparison_tables(run, out)
    sections += _figures(run, styles)
    sections += _token_pictures(run, styles)
    for bench in sorted(df["benchmark"].dropna().unique()):
        parts = tables.breakdown_table(df, bench, label_order)
        if not parts.empty:
            parts.to_csv(out / f"breakdown_{_slug(bench)}.csv", index=False)
            text = Text("Score per group (seeds averaged); shaded from red (low) to green (high) in the HTML.")
            sections.append(Section(f"{bench}: score per group", [text, tables.breakdown_heatmap(parts)]))
    if run.unc is not None:
        sections += comparisons.comparison_sections(run.unc, df, label_order, out)
    sections += _per_sample_tables(df, label_order)
    failed = df[df["status"] == "failed"]
    missing = df[df["status"].isin(["missing", "incomplete"])]
    if not failed.empty or not missing.empty:
        lines = [f"FAILED {r.model} | {r.label} | {r.budget_label} | {r.benchmark}: {r.error}"
                 for r in failed.itertuples()]
        lines += [f"{r.status.upper()} {r.model} | {r.label} | {r.budget_label} | {r.benchmark}"
                  for r in missing.itertuples()]
        sections.append(Section("Failed and missing cells", [Bullets(lines)]))
    return sections


def _comparison_tables(run: data.RunData, out: Path) -> list[Section]:
    """The paper-style table per model with its reading guide, the caveat of the bundled model, the
    published numbers and the spread over seeds."""
    df, sections = run.df, []
    for model in sorted(df["model"].dropna().unique()):
        table = tables.paper_table(df, model, run.label_order, run.unc)
        block = tables.to_table(table)
        if block is None:
            blocks = [Text("_no finished cells_")]
        else:
            blocks = [block] + (comparisons.table_notes(run.unc, model) if run.unc is not None else [])
        note = notes.bundled_model_note(df[df["model"] == model])
        sections.append(Section(model, blocks + ([note] if note is not None else []), level=2))
        table.drop(columns=[c for c in table.columns if c.endswith("__status")]).to_csv(
            out / f"table_{_slug(model)}.csv", index=False)
    paper = run.grid.get("paper")
    if isinstance(paper, dict):
        from . import paper as paper_section

        comp = paper_section.comparison(df, paper)
        if not comp.empty:
            comp.to_csv(out / "paper_vs_ours.csv", index=False)
            sections.append(Section("Paper vs ours", paper_section.blocks(comp, paper.get("source", "paper")), level=2))
    seeds = comparisons.seed_section(run.unc, df, run.label_order) if run.unc is not None else None
    return sections + ([seeds] if seeds is not None else [])


def _figures(run: data.RunData, styles: Styles) -> list[Section]:
    df, unc = run.df, run.unc
    bars = "Error bars: 95 % bootstrap intervals (markers nudged sideways so the bars do not overlap)."
    timing = ("Cells timed under load are drawn hollow. Compare timings only within one run on a quiet host "
              "(see Environment).")
    figures_ = [
        ("Accuracy vs retained visual tokens", plots.accuracy_vs_tokens(df, styles, unc), bars),
        ("% of vanilla vs retained visual tokens", plots.relative_vs_tokens(df, styles, unc), bars),
        ("Accuracy vs analytic prefill FLOPs (Pareto front)",
         plots.pareto(df, "flops.prefill_flops", "prefill FLOPs (analytic, mean per sample)", styles, unc=unc,
                      engineering=True),
         "Vertical bars: 95 % bootstrap intervals. The line joins the points no cheaper point beats."),
        ("Accuracy vs measured prefill latency (Pareto front)",
         plots.pareto(environment.comparable_latency(df), "latency.prefill_s_median",
                      "prefill / TTFT per sample, median (s)", styles,
                      spread=("latency.prefill_s_p25", "latency.prefill_s_p75"), unc=unc),
         "Horizontal bars: interquartile range of the per-sample times; vertical bars: 95 % bootstrap "
         "intervals. " + timing + _shared_note(df)),
        ("Selection overhead", plots.selection_overhead(df, styles),
         "Median time of the strategy's selection per sample, with the interquartile range. " + timing),
    ]
    sections = []
    for title, png, caption in figures_:
        if png is None:
            continue
        if title.startswith("Accuracy vs measured"):
            env = environment.environment_section(df, run.invocations)
            sections += [env] if env is not None else []
        sections.append(Section(title, [Figure(_slug(title) + ".png", png, title, min_width=900), Text(caption)]))
    return sections


def _shared_note(df) -> str:
    shared = int(environment.shared_timings(df[df["status"] == "done"]).sum())
    if not shared:
        return ""
    return (f" Not drawn: {shared} cells timed only in a sample-major accuracy pass (latency.source "
            "samples-shared); time them with `latency: {subset: N}`.")


def _token_pictures(run: data.RunData, styles: Styles) -> list[Section]:
    pictures = token_pictures(run.run_dir, run.df, styles)
    if not pictures:
        return []
    blocks = [Text("Each panel: the image the strategy saw on its token grid; dropped tokens dimmed, kept ones "
                   "outlined in red, the first picks numbered in selection order (where the strategy ranks). "
                   "Under each panel: the strategy's answer (✓ right, ✗ wrong) and how many tokens it kept.")]
    for i, (title, png) in enumerate(pictures):
        blocks.append(Figure(f"tokens_{i}.png", png, title))
    return [Section("Kept tokens", blocks)]


def _per_sample_tables(df: pd.DataFrame, label_order: list[str]) -> list[Section]:
    sections = []
    loyal_cols = ["model", "label", "budget_label", "benchmark", "score", "loyalty", "hard_accuracy", "hard_samples"]
    loyal_df = df[(df["status"] == "done") & (df["strategy"] != "vanilla")]
    if "loyalty" in loyal_df and loyal_df["loyalty"].notna().any():
        text = ("Loyalty: % of samples answered as the unpruned model answered them. Hard subset: accuracy on "
                "the samples the `pool` baseline at the same budget gets wrong (where strategies differ).")
        sections.append(Section("Loyalty and the hard subset",
                                [Text(text), df_table(tables.in_table_order(loyal_df, label_order)[loyal_cols], 4)]))
    diag_cols = ["model", "label", "budget_label", "benchmark"] + [f"diagnostics.{k}" for k in data.DIAGNOSTICS]
    diag_df = tables.in_table_order(df[(df["status"] == "done") & df["diagnostics.edge_tokens"].notna()],
                                    label_order)[diag_cols]
    if not diag_df.empty:
        sections.append(notes.diagnostics_section(df_table(diag_df.rename(columns=lambda c: c.replace("diagnostics.", "")), 4)))
    return sections


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")[:60]
