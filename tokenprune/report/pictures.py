"""Pictures of which tokens each strategy kept, and the spatial diagnostics of every cell."""
from __future__ import annotations

import statistics

import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFont

from .. import diagnostics, registry
from ..runner.collect import sample_correct
from ..runner.store import RunStore
from .plots import plt, png

PANEL_PX = 264  # side of each panel of the kept-token figures


def _grid_hw(record) -> tuple[int, int, int] | None:
    grid = record.get("grid")
    if not grid:
        return None
    if len(grid) == 2:
        return 1, int(grid[0]), int(grid[1])
    return int(grid[0]), int(grid[1]), int(grid[2])


def _on_grid(record) -> bool:
    """The kept indices address the record's grid (the resized grid where the strategy resized the input)."""
    thw = _grid_hw(record)
    n = record.get("n_resized") or record.get("n_visual")
    return thw is not None and record.get("kept") is not None and n == thw[0] * thw[1] * thw[2]


def _coords(t: int, h: int, w: int) -> torch.Tensor:
    from ..testing.inputs import grid_coords

    return grid_coords(h, w, t)


def cell_diagnostics(records: list[dict]) -> dict:
    """Mean edge-token count, nearest-kept distance and redundancy over samples: as the engine recorded
    them with each sample, else (records without them) edge and distance recomputed from the kept set."""
    edge, spread, redundancy = [], [], []
    for r in records:
        d = r.get("diagnostics") or {}
        if d.get("edge_tokens") is None:
            if not _on_grid(r):
                continue
            found = diagnostics.diagnose(_coords(*_grid_hw(r)), torch.tensor(r["kept"], dtype=torch.long), None)
            d = {**found, "redundancy": d.get("redundancy")}
        edge.append(d["edge_tokens"])
        if d.get("nn_distance") is not None:
            spread.append(d["nn_distance"])
        if d.get("redundancy") is not None:
            redundancy.append(d["redundancy"])

    def mean(v):
        return statistics.fmean(v) if v else None

    return {"edge_tokens": mean(edge), "nn_distance": mean(spread), "redundancy": mean(redundancy)}


def overlay(image: Image.Image, grid_hw: tuple[int, int], kept: list[int], order: list[int] | None,
            cell_px: int = 22, numbered: int = 24) -> Image.Image:
    """The image on the token grid: dropped tokens dimmed, kept ones outlined, first picks numbered."""
    h, w = grid_hw
    base = image.convert("RGB").resize((w * cell_px, h * cell_px))
    shade = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(shade)
    kept_set = set(kept)
    for i in range(h * w):
        r, c = divmod(i, w)
        box = (c * cell_px, r * cell_px, (c + 1) * cell_px - 1, (r + 1) * cell_px - 1)
        if i in kept_set:
            draw.rectangle(box, outline=(255, 40, 40, 255), width=2)
        else:
            draw.rectangle(box, fill=(0, 0, 0, 150))
    out = Image.alpha_composite(base.convert("RGBA"), shade)
    if order:
        text = ImageDraw.Draw(out)
        font = _font(max(9, int(cell_px * 0.5)))
        outline = {"stroke_width": 1, "stroke_fill": (0, 0, 0, 255)} if isinstance(font, ImageFont.FreeTypeFont) else {}
        for rank, i in enumerate(order[:numbered]):
            if 0 <= i < h * w:
                r, c = divmod(i, w)
                text.text((c * cell_px + 3, r * cell_px + 2), str(rank + 1), fill=(255, 255, 0, 255), font=font,
                          **outline)
    return out.convert("RGB")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _samples(cell, ids: list[str]) -> dict:
    """The benchmark's samples with these ids (their images, question and reference answer)."""
    bench = registry.lookup("benchmarks", cell.benchmark)(**cell.benchmark_options)
    found = {}
    for sample in bench.samples():
        if sample.id in ids and sample.images:
            found[sample.id] = sample
            if len(found) == len(ids):
                break
    return found


def token_pictures(run_dir, df, styles, n_samples: int = 3) -> list[tuple[str, bytes]]:
    """For the budget most strategies share: one figure per sample for a few samples of one benchmark, with
    a panel per strategy (and vanilla), each with the strategy's answer under it.

    Candidates (model, benchmark, budget) are tried from the most strategies down;
    the first whose benchmark has images gives the pictures.
    """
    done = df[(df["status"] == "done") & (df["strategy"] != "vanilla")]
    if done.empty:
        return []
    stores = {cs.cell.id: cs for cs in RunStore(run_dir).cells()}
    if "tokens.kept_mean" not in done:
        done = done.assign(**{"tokens.kept_mean": 0.0})
    counts = done.groupby(["model", "benchmark", "budget_label"]).agg(
        labels=("label", "nunique"), kept=("tokens.kept_mean", "mean")).fillna({"kept": 0.0})
    # the most strategies first, and among those the fewest tokens (where they differ most)
    for model, bench, budget in counts.sort_values(["labels", "kept"], ascending=[False, True], kind="stable").index:
        chosen = done[(done["model"] == model) & (done["benchmark"] == bench) & (done["budget_label"] == budget)]
        vanilla = df[(df["status"] == "done") & (df["strategy"] == "vanilla") & (df["model"] == model)
                     & (df["benchmark"] == bench)]
        pictures = _pictures_for(pd.concat([vanilla.iloc[:1], chosen]), stores, f"{model} · {bench}", budget,
                                 styles, n_samples)
        if pictures:
            return pictures
    return []


def _pictures_for(chosen, stores, title, budget, styles, n_samples):
    per_label = {}
    for _, row in chosen.iterrows():
        recs = [r for r in stores[row["cell"]].records() if r.get("kept") is not None and _grid_hw(r)]
        if row["strategy"] == "vanilla":
            recs = stores[row["cell"]].records()
        if recs:
            per_label[row["label"]] = {r["id"]: r for r in recs}
    pruned = [lab for lab in per_label if lab != "vanilla"]
    if not pruned:
        return []
    common = sorted(set.intersection(*(set(per_label[lab]) for lab in pruned)))[:n_samples]
    try:
        samples = _samples(stores[chosen.iloc[-1]["cell"]].cell, common)
    except Exception:  # noqa: BLE001 - data not available here: no pictures, the rest of the report stands
        return []
    labels = (["vanilla"] if "vanilla" in per_label else []) + styles.ordered(pruned)
    native = _native_grid(per_label, pruned)
    pictures = []
    for sid in common:
        if sid not in samples:
            continue
        panels = [_panel(label, per_label[label].get(sid), samples[sid].images[0], native) for label in labels]
        caption = f"{title} · budget {budget} · sample {sid}"
        pictures.append((caption, _figure(samples[sid], panels, caption, styles)))
    return pictures


def _native_grid(per_label, labels) -> tuple[int, int] | None:
    """The token grid most strategies saw (the model's own for this image)."""
    grids = [(_grid_hw(r)[1], _grid_hw(r)[2]) for lab in labels for r in per_label[lab].values()
             if _grid_hw(r) and _grid_hw(r)[0] == 1]
    return max(set(grids), key=grids.count) if grids else None


def _panel(label, record, image, native):
    """(label, picture or None, note, record): the kept tokens on what the strategy saw, or why not shown."""
    if record is None:
        return label, None, "no record for this sample", None
    if label == "vanilla" or record.get("kept") is None:
        return label, image.convert("RGB"), "all tokens", record
    t, h, w = _grid_hw(record)
    if t != 1 or not _on_grid(record):
        return label, None, f"not drawn: {record['n_visual']} tokens in {t} frame(s) of {h}x{w}", record
    note = f"{record.get('count', len(record['kept']))} kept"
    seen = image
    if native and (h, w) != native:  # a resized input (e.g. downsample): draw on the image it saw
        px = image.width / native[1]
        seen = image.resize((max(1, round(w * px)), max(1, round(h * px))), Image.BILINEAR)
        note += f" of {h}x{w} (input {seen.width}x{seen.height} px)"
    return label, overlay(seen, (h, w), record["kept"], record.get("order"), cell_px=max(1, PANEL_PX // max(h, w))), \
        note, record


def _figure(sample, panels, caption, styles) -> bytes:
    cols = min(len(panels), 6)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.3 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, picture, note, record) in zip(axes.flat, panels):
        if picture is not None:
            ax.imshow(picture)
        else:
            ax.text(0.5, 0.5, note.replace(": ", ":\n"), ha="center", va="center", fontsize=9, transform=ax.transAxes)
        ax.set_title(_short(label, 24), fontsize=12.5, color=styles[label].colour)
        if record is not None:
            right = sample_correct(record.get("score"))
            mark = "" if right is None else (" ✓" if right >= 1 else " ✗")
            lines = [_short(str(record.get("prediction", "")).strip(), 22) + mark] + ([note] if picture is not None else [])
            ax.text(0.5, -0.03, "\n".join(lines), ha="center", va="top", fontsize=11, transform=ax.transAxes,
                    color="#1a7f37" if mark == " ✓" else "#c62828" if mark == " ✗" else "black")
    question = " ".join(str(sample.prompt).split())
    reference = sample.references if isinstance(sample.references, str) else " / ".join(map(str, sample.references))
    fig.suptitle(f"{caption}\nQ: {_short(question, 140)}   ·   reference answer: {_short(reference, 40)}",
                 fontsize=13.5, y=1.0)
    fig.tight_layout()
    return png(fig)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
