"""Pictures of which tokens each strategy kept, and the spatial diagnostics of every cell."""
from __future__ import annotations

import statistics

import torch
from PIL import Image, ImageDraw

from .. import diagnostics, registry
from ..runner.store import RunStore


def _grid_hw(record) -> tuple[int, int, int] | None:
    grid = record.get("grid")
    if not grid:
        return None
    if len(grid) == 2:
        return 1, int(grid[0]), int(grid[1])
    return int(grid[0]), int(grid[1]), int(grid[2])


def _coords(t: int, h: int, w: int) -> torch.Tensor:
    from ..testing.inputs import grid_coords

    return grid_coords(h, w, t)


def cell_diagnostics(records: list[dict]) -> dict:
    """Mean edge-token count, nearest-kept distance and (when the engine logged it) redundancy over samples."""
    edge, spread, redundancy = [], [], []
    for r in records:
        thw = _grid_hw(r)
        if thw is None or r.get("kept") is None or r.get("n_visual") != thw[0] * thw[1] * thw[2]:
            continue
        keep = torch.tensor(r["kept"], dtype=torch.long)
        d = diagnostics.diagnose(_coords(*thw), keep, None)
        edge.append(d["edge_tokens"])
        if d["nn_distance"] is not None:
            spread.append(d["nn_distance"])
        red = (r.get("diagnostics") or {}).get("redundancy")
        if red is not None:
            redundancy.append(red)

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
        for rank, i in enumerate(order[:numbered]):
            if 0 <= i < h * w:
                r, c = divmod(i, w)
                text.text((c * cell_px + 3, r * cell_px + 3), str(rank + 1), fill=(255, 255, 0, 255))
    return out.convert("RGB")


def _sample_images(cell, ids: list[str]) -> dict[str, Image.Image]:
    bench = registry.lookup("benchmarks", cell.benchmark)(**cell.benchmark_options)
    found = {}
    for sample in bench.samples():
        if sample.id in ids and sample.images:
            found[sample.id] = sample.images[0]
            if len(found) == len(ids):
                break
    return found


def token_pictures(run_dir, df, n_samples: int = 3) -> list[tuple[str, Image.Image]]:
    """For the budget most strategies share: one panel per strategy for a few samples of one benchmark.

    Candidates (model, benchmark, budget) are tried from the most strategies down;
    the first whose benchmark has images gives the pictures.
    """
    done = df[(df["status"] == "done") & (df["strategy"] != "vanilla")]
    if done.empty:
        return []
    stores = {cs.cell.id: cs for cs in RunStore(run_dir).cells()}
    counts = done.groupby(["model", "benchmark", "budget_label"])["label"].nunique()
    for model, bench, budget in counts.sort_values(ascending=False, kind="stable").index:
        chosen = done[(done["model"] == model) & (done["benchmark"] == bench) & (done["budget_label"] == budget)]
        pictures = _pictures_for(chosen, stores, f"{model} · {bench}", budget, n_samples)
        if pictures:
            return pictures
    return []


def _pictures_for(chosen, stores, title, budget, n_samples):
    per_label = {}
    for _, row in chosen.iterrows():
        recs = [r for r in stores[row["cell"]].records() if r.get("kept") is not None and _grid_hw(r)]
        if recs:
            per_label[row["label"]] = {r["id"]: r for r in recs}
    if not per_label:
        return []
    common = sorted(set.intersection(*(set(v) for v in per_label.values())))[:n_samples]
    try:
        images = _sample_images(stores[chosen.iloc[0]["cell"]].cell, common)
    except Exception:  # noqa: BLE001 - data not available here: no pictures, the rest of the report stands
        return []
    pictures = []
    for sid in common:
        if sid not in images:
            continue
        panels = []
        for label, recs in per_label.items():
            r = recs[sid]
            t, h, w = _grid_hw(r)
            if t != 1 or r["n_visual"] != h * w:
                continue
            panels.append((label, overlay(images[sid], (h, w), r["kept"], r.get("order"))))
        if panels:
            pictures.append((f"{title} · sample {sid} · budget {budget}", _strip(panels)))
    return pictures


def _strip(panels: list[tuple[str, Image.Image]]) -> Image.Image:
    width = sum(p.width for _, p in panels) + 8 * (len(panels) - 1)
    height = max(p.height for _, p in panels) + 16
    out = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(out)
    x = 0
    for label, panel in panels:
        draw.text((x + 2, 2), label[:28], fill="black")
        out.paste(panel, (x, 16))
        x += panel.width + 8
    return out
