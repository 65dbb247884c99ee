"""The prefill FLOPs a grid's cells share, counted as tokenprune.flops counts them: what sample-major
execution (runner.sample_major) computes once per sample instead of once per cell.

Per sample of ``text`` prompt tokens and ``visual`` visual tokens, every cell of a model runs the
vision tower and projector and its LLM prefill (tokenprune.flops.alive_per_layer: vanilla at full
length, pre_llm strategies pruned before layer 0, llm ones from layer K, two-stage ones both).
Sample-major, the tower and projector run once for every cell but the input-stage ones (which encode
their own smaller images), and the cells that start at their layer K from the leader's prefix (every
llm-stage cell but the leader, and vanilla cells after the first) skip layers 0..K-1. Decoding is
not shared, so it is left out; so is the memory cap (the figure assumes everything fits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import flops
from ..engine.handle import kept_count
from ..errors import ConfigError


@dataclass
class Tally:
    """Prefill FLOPs per sample of one benchmark's cells, cell by cell and sample-major."""

    cells: int = 0
    vision: int = 0  # cell by cell
    llm: int = 0
    vision_shared: int = 0  # sample-major
    llm_skipped: int = 0  # layers below K the followers do not run
    leader: str = ""
    depths: list[int] = field(default_factory=list)

    @property
    def cell_by_cell(self) -> int:
        return self.vision + self.llm

    @property
    def sample_major(self) -> int:
        return self.vision_shared + self.llm - self.llm_skipped

    @property
    def saved(self) -> float:
        return 1 - self.sample_major / self.cell_by_cell if self.cell_by_cell else 0.0


def cell_prefill(strategy, budget: int | None, keep_ratio: float | None, shape: flops.LLMShape, vision,
                 text: int, visual: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(vision tower + projector FLOPs, LLM prefill FLOPs) of one cell on one sample.

    ``strategy`` None is vanilla; ``vision`` a flops.VisionShape (None: not counted); ``grid`` the image's
    native token grid (rows, cols), for input-stage strategies that render it smaller.
    """
    from ..two_stage import TwoStage

    per_token = vision.merge if vision is not None else 1

    def tower(tokens: int) -> int:
        return vision.flops([tokens * per_token]) if vision is not None else 0

    if strategy is None:
        return tower(visual), flops.prefill_flops(shape, flops.alive_per_layer(shape, text + visual, visual, visual, None))
    kept = kept_count(visual, budget, keep_ratio)
    if strategy.stage == "input":
        rows, cols = strategy.planned_grid(grid, budget)
        resized = rows * cols
        alive = flops.alive_per_layer(shape, text + resized, resized, min(kept, resized), 0)
        return tower(resized), flops.prefill_flops(shape, alive)
    if isinstance(strategy, TwoStage):
        first = strategy.checked_first_budget(visual, kept)
        alive = flops.alive_per_layer(shape, text + visual, visual, min(kept, first), strategy.prune_layer,
                                      first_kept=first)
    else:
        layer = strategy.prune_layer if strategy.stage == "llm" else 0
        alive = flops.alive_per_layer(shape, text + visual, visual, kept, layer)
    return tower(visual), flops.prefill_flops(shape, alive)


def tally(cells, shape: flops.LLMShape, vision, text: int, visual: int, grid: tuple[int, int]) -> Tally:
    """Both ways, for cells that see the same samples (one benchmark of one model)."""
    from ..api import get_strategy
    from ..runner.sample_major import Member, prefix_plan

    out = Tally(cells=len(cells))
    kinds = []
    for cell in cells:
        strategy = None if cell.strategy == "vanilla" else get_strategy(cell.strategy, **cell.params)
        tower, llm = cell_prefill(strategy, cell.budget, cell.keep_ratio, shape, vision, text, visual, grid)
        out.vision += tower
        out.llm += llm
        kinds.append(Member.kind_of(strategy, shape.layers))
        if kinds[-1][0] == "input":
            out.vision_shared += tower  # its own smaller images
    if any(kind != "input" for kind, _ in kinds):  # once for every cell that takes the images as they are
        out.vision_shared += cell_prefill(None, None, None, shape, vision, text, visual, grid)[0]
    lead, out.depths = prefix_plan(kinds)
    if lead is not None:
        out.leader = cells[lead].label or cells[lead].strategy
        full = shape.layer_flops(text + visual, text + visual)
        out.llm_skipped = sum(k * full for i, (kind, k) in enumerate(kinds)
                              if i != lead and kind in ("vanilla", "llm"))
    return out


@dataclass
class ModelSaving:
    """One model of a grid: where its shape came from, the token counts assumed, a Tally per benchmark
    stream, and the bytes sample-major would hold per batch."""

    label: str
    checkpoint: str
    shape_from: str
    text: int
    visual: int
    streams: dict[str, Tally]
    held: dict[str, int]
    batch: int


def grid_saving(path, *, text_tokens: int = 64, arch: str | None = None) -> list[ModelSaving]:
    """The sharing saving of every model of the grid at ``path`` (its configs are read, never its weights)."""
    from ..engine.shared_prefix import prefix_bytes
    from ..engine.shared_vision import vision_bytes
    from ..runner.execute import BYTES
    from ..runner.grid import load_grid
    from ..runner.sample_major import stream_key
    from ..runner.spec import group_by_model

    if text_tokens < 0:
        raise ConfigError(f"--text-tokens must be a number of tokens >= 0, got {text_tokens}")
    grid = load_grid(path)
    out = []
    for model, cells in group_by_model(grid.cells):
        config, shape_from = _config(model, arch)
        shape = flops.LLMShape.from_config(config)
        vision = flops.VisionShape.from_config(config)
        visual, grid_rc = _visual_tokens(model, config)
        streams: dict[str, list] = {}
        for cell in cells:
            streams.setdefault(stream_key(cell), []).append(cell)
        tallies = {group[0].benchmark + _options(group[0]): tally(group, shape, vision, text_tokens, visual, grid_rc)
                   for group in streams.values()}
        batch = max(c.batch_size for c in cells)
        size = BYTES[model.dtype]
        depths = sorted({d for t in tallies.values() for d in t.depths})
        held = {"vision": vision_bytes(config, size, batch * visual),
                "prefix": prefix_bytes(shape, size, batch, text_tokens + visual, depths)}
        out.append(ModelSaving(model.label, model.checkpoint, shape_from, text_tokens, visual, tallies, held, batch))
    return out


def _options(cell) -> str:
    shown = {k: v for k, v in cell.benchmark_options.items() if k in ("protocol", "limit") and v is not None}
    return "(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else ""


def _config(model, arch: str | None):
    """The model config: a bench architecture's (--arch), else the checkpoint's config.json."""
    if arch:
        from .archs import config_of

        return config_of(arch), f"bench architecture {arch!r}"
    from ..runner.preflight import read_configs

    config, _ = read_configs(model.checkpoint)
    if config is None:
        raise ConfigError(f"model {model.label!r}: transformers does not know the type of {model.checkpoint!r}")
    return config, f"{model.checkpoint} config.json"


def _visual_tokens(model, config) -> tuple[int, tuple[int, int]]:
    """Visual tokens of one image and their (rows, cols) grid: fixed-grid models only (one count per image)."""
    from ..models import adapter_class

    counted = adapter_class(model.adapter).max_visual_tokens(config, {})
    if counted is None or not counted[1]:
        raise ConfigError(f"model {model.label!r} ({model.adapter}): its images have no fixed token count, "
                          f"so a per-sample FLOPs figure needs one; --flops-only counts fixed-grid models "
                          f"(llava) only")
    n = counted[0]
    side = round(n ** 0.5)
    return n, (side, side)


def _unit(values) -> tuple[float, str]:
    """The FLOPs unit that shows the largest of ``values`` with one to three digits before the point."""
    top = max(values, default=0)
    for scale, name in ((1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs")):
        if top >= scale:
            return scale, name
    return 1.0, "FLOPs"


def saving_lines(models: list[ModelSaving]) -> list[str]:
    lines = []
    for m in models:
        scale, unit = _unit([t.cell_by_cell for t in m.streams.values()])

        def n(value):
            return f"{value / scale:.2f}"

        lines.append(f"{m.label} ({m.checkpoint}; shape from {m.shape_from}): per sample {m.visual} visual + "
                     f"{m.text} text tokens; prefill {unit} per sample summed over the cells, vision tower and "
                     f"projector + LLM prefill (tokenprune.flops); decoding is not shared and not counted")
        alike: dict[tuple, list[str]] = {}  # benchmarks with the same cells give the same figures
        for name, t in m.streams.items():
            alike.setdefault((t.cells, t.vision, t.llm, t.vision_shared, t.llm_skipped, t.leader, tuple(t.depths)),
                             []).append(name)
        total = Tally()
        for names in alike.values():
            t = m.streams[names[0]]
            lines.append(f"  {', '.join(names)}: {t.cells} cells{' each' if len(names) > 1 else ''}: cell by cell "
                         f"{n(t.cell_by_cell)} (vision {n(t.vision)}, LLM {n(t.llm)}), sample-major "
                         f"{n(t.sample_major)} (vision {n(t.vision_shared)}, LLM {n(t.llm - t.llm_skipped)}): "
                         f"{100 * t.saved:.1f} % saved"
                         + (f"; {t.leader} leads, the others start at layers {t.depths}" if t.depths else ""))
            for name in names:
                for k in ("cells", "vision", "llm", "vision_shared", "llm_skipped"):
                    setattr(total, k, getattr(total, k) + getattr(m.streams[name], k))
        if len(m.streams) > 1:
            lines.append(f"  all {len(m.streams)} benchmarks: cell by cell {n(total.cell_by_cell)}, sample-major "
                         f"{n(total.sample_major)}: {100 * total.saved:.1f} % of the prefill FLOPs saved")
        lines.append(f"  held per batch of {m.batch} while its cells run: vision features "
                     f"{m.held['vision'] / 2 ** 20:.1f} MiB, prefix {m.held['prefix'] / 2 ** 20:.1f} MiB "
                     f"(execution.max_shared_mb caps the sum)")
    return lines
