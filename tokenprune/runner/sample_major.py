"""Sample-major execution: a model's cells run batch by batch, sharing the work their batches have in common.

Cell by cell, every cell of a model builds each batch's inputs, runs the vision tower and projector,
and (llm-stage strategies) decoder layers 0..K-1 over the whole prompt: the same work for every
cell. Sample-major, for each batch of samples:

* the inputs are built once, and the vision tower and projector run once for every cell that takes
  the images as they are (engine.shared_vision); an input-stage strategy (downsample) renders its
  own, smaller images, so it builds and encodes its own;
* one *leader* (the vanilla cell when there is one, else the cell with the deepest prune layer)
  computes layers 0..K-1 for every prune layer K of the other llm-stage cells, and those start at
  their layer K from what it left (engine.shared_prefix); other vanilla cells (another seed) start at
  the last layer. pre_llm and two-stage strategies (whose first cut is before the LLM) share the
  inputs and the vision tower only;
* then each cell runs its own pruning, the rest of its prefill and its decoding, and appends its
  records, exactly as cell by cell.

Each cell runs the batches it would run cell by cell (its own not yet recorded samples, cut into
batches of its batch size), so a resumed run whose cells stopped at different samples gives the
same batches, and each cell's records, metrics and DONE are the ones cell-by-cell execution writes.
What a batch holds while its cells run (the vision features, the leader's KV cache of the layers
below the deepest K it serves, the residual stream entering each served K, layer K-1's queries)
is estimated before the batch runs and capped (``execution.max_shared_mb``): beyond the cap the
deepest prefixes, then the vision features, are computed cell by cell, with a note on the console.
"""
from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass

from .. import registry
from ..two_stage import TwoStage
from .execute import CellPass, _pruning
from .spec import canonical_json

MODES = ("auto", "cell", "sample")


@dataclass(frozen=True)
class ExecutionPlan:
    """The grid's ``execution:`` section (a mode name, or a mapping of these keys)."""

    KEYS = ("mode", "max_shared_mb")

    mode: str = "auto"  # auto: sample-major when a model has more than one cell to run
    max_shared_mb: float = 2048.0  # MiB a batch may hold for its cells to share

    def as_dict(self) -> dict:
        return asdict(self)

    def resolve(self, cells: int) -> str:
        """"cell" or "sample" for a model with ``cells`` cells to run."""
        if self.mode == "auto":
            return "sample" if cells > 1 else "cell"
        return self.mode

    @property
    def cap_bytes(self) -> int:
        return int(self.max_shared_mb * 2 ** 20)


def parse_execution(value, problems) -> ExecutionPlan:
    """``execution: auto | cell | sample`` or ``{mode: ..., max_shared_mb: N}``; problems go to ``problems.add``."""
    if value is None:
        return ExecutionPlan()
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, dict):
        problems.add("execution", f"must be one of {', '.join(MODES)} or a mapping with keys "
                                  f"{', '.join(ExecutionPlan.KEYS)}, got {value!r}")
        return ExecutionPlan()
    for key in value:
        if key not in ExecutionPlan.KEYS:
            problems.add(f"execution.{key}", f"unknown key; allowed: {', '.join(ExecutionPlan.KEYS)}")
    default = ExecutionPlan()
    mode = value.get("mode", default.mode)
    if mode not in MODES:
        problems.add("execution.mode", f"{mode!r} is not one of {', '.join(MODES)}")
        mode = default.mode
    cap = value.get("max_shared_mb", default.max_shared_mb)
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap < 0:
        problems.add("execution.max_shared_mb", f"must be a number of MiB >= 0, got {cap!r}")
        cap = default.max_shared_mb
    return ExecutionPlan(mode=mode, max_shared_mb=float(cap))


class Member:
    """A cell taking part in sample-major batches: its pass, its strategy, and what it can share.

    kind: "input" (builds and encodes its own inputs), "vanilla", "llm" (starts at its prune layer
    ``k`` from a leader's prefix), "pre_llm" (pre_llm and two-stage: inputs and vision only).
    """

    def __init__(self, run: CellPass, depth: int):
        from ..api import get_strategy

        self.run = run
        cell = run.cell
        self.strategy = None if cell.strategy == "vanilla" else get_strategy(cell.strategy, **cell.params)
        self.kind, self.k = self.kind_of(self.strategy, depth)
        self.failed = False

    @staticmethod
    def kind_of(strategy, depth: int) -> tuple[str, int | None]:
        """(kind, the layer the cell can start at) of ``strategy`` (None: vanilla) on an LLM of ``depth`` layers."""
        if strategy is None:
            return "vanilla", depth - 1  # a vanilla cell that does not lead replays all layers but the last
        if strategy.stage == "input":
            return "input", None
        if strategy.stage == "llm" and not isinstance(strategy, TwoStage):
            return "llm", strategy.prune_layer
        return "pre_llm", None

    def attach(self, vlm):
        return _pruning(vlm, self.run.cell, self.strategy)

    def fail(self, exc: BaseException):
        self.run.cs.fail(exc)
        self.failed = True


def run_cells(vlm, todo: list, *, warmup: int, progress, max_load: float, plan: ExecutionPlan) -> dict[str, str]:
    """Run the (cell, store) pairs of one loaded model sample-major; {cell id: 'done' | 'failed'}."""
    status: dict[str, str] = {}
    members, benches = [], {}
    depth = len(vlm.decoder_layers)
    for cell, cs in todo:
        try:
            key = cell.benchmark_key()
            if key not in benches:  # cells of one benchmark share its samples (and so their inputs)
                bench = registry.lookup("benchmarks", cell.benchmark)(**cell.benchmark_options)
                benches[key] = (bench, list(bench.samples()))
            bench, samples = benches[key]
            members.append(Member(CellPass(cell, cs, warmup=warmup, bench=bench, samples=samples), depth))
        except Exception as exc:  # isolation, as cell by cell
            cs.fail(exc)
            status[cell.id] = "failed"
            progress.cell_done(cell, "failed")
    notes: set = set()
    for stream in _streams(members):
        _run_stream(vlm, stream, progress, plan.cap_bytes, notes)
        for m in stream:
            if not m.failed:
                try:
                    m.run.finish(vlm, max_load, execution="sample")
                except Exception as exc:
                    m.fail(exc)
            status[m.run.cell.id] = "failed" if m.failed else "done"
            progress.cell_done(m.run.cell, status[m.run.cell.id])
    return status


def stream_key(cell) -> str:
    """Cells with the same key see the same batches: same benchmark (and options), batch size and generation."""
    return canonical_json([cell.benchmark, cell.benchmark_options, cell.batch_size, cell.generation])


def _streams(members: list[Member]) -> list[list[Member]]:
    groups: dict[str, list[Member]] = {}
    for m in members:
        groups.setdefault(stream_key(m.run.cell), []).append(m)
    return list(groups.values())


def _run_stream(vlm, stream: list[Member], progress, cap: int, notes: set):
    """Every distinct batch of the stream's cells, in benchmark order, each run by the cells that have it."""
    order = {s.id: i for i, s in enumerate(stream[0].run.samples)}
    batches: dict[tuple, tuple[list, list[Member]]] = {}
    for m in stream:
        for batch in m.run.batches:
            batches.setdefault(tuple(s.id for s in batch), (batch, []))[1].append(m)
    first = stream[0].run.cell
    total = sum(len(b) * len(ms) for b, ms in batches.values())
    # its cells finish together at the end: say what runs now
    progress.note(f"{first.model.label} on {first.benchmark}: {len(stream)} cells run sample-major, "
                  f"{len(batches)} batches")
    bar = progress.samples(first, total=total, desc=f"{first.model.label} | {len(stream)} cells | {first.benchmark}")
    for key in sorted(batches, key=lambda ids: order[ids[0]]):
        batch, members = batches[key]
        live = [m for m in members if not m.failed]
        if live:
            run_batch(vlm, batch, live, cap, notes)
        bar.update(len(batch) * len(members))
    bar.close()


def run_batch(vlm, batch: list, members: list[Member], cap: int, notes: set):
    """One batch for every member: shared inputs, vision and prefix where they fit under ``cap`` bytes."""
    from ..engine.shared_prefix import PrefixRecorder, PrefixReplay

    sharing = [m for m in members if m.kind != "input"]
    inputs = None
    if sharing:
        try:
            inputs = _on_device(vlm, vlm.build_inputs(batch))  # no strategy attached: the images as they are
        except Exception as exc:  # each of these cells would have failed on it
            for m in sharing:
                m.fail(exc)
    leader, depths, share_vision = _sharing_plan(vlm, [m for m in sharing if not m.failed], inputs, cap, notes)
    ordered = ([leader] if leader is not None else []) + [m for m in members if m is not leader]
    recording = None
    with _vision_replay(vlm, inputs, share_vision):
        for m in ordered:
            if m.failed:
                continue
            try:
                with m.attach(vlm) as handle:
                    if m.kind == "input":
                        own = vlm.build_inputs(batch)  # rendered at the strategy's grid while it is attached
                        given, native = own, getattr(vlm, "native_visual", None)
                    else:
                        given, native = inputs, None
                    if m is leader and depths:
                        context = PrefixRecorder(vlm, depths)
                    elif recording is not None and m.k in depths and recording.serves(m.k):
                        context = PrefixReplay(vlm, recording, m.k)
                    else:
                        context = nullcontext()
                    with context:
                        m.run.run_batch(vlm, batch, given, handle, native)
                    if m is leader and depths:
                        recording = context.recording
                        if recording is None and context.declined:
                            _note(notes, "declined", f"layers below K computed per cell: {context.declined}")
            except Exception as exc:  # isolation: this cell stops, the others go on
                m.fail(exc)


def _sharing_plan(vlm, sharing: list[Member], inputs, cap: int, notes: set):
    """(leader, prune layers it records for the others, whether vision is shared), within ``cap`` bytes."""
    from ..engine.shared_prefix import prefix_bytes
    from ..engine.shared_vision import vision_bytes
    from ..flops import LLMShape

    if not sharing or inputs is None:
        return None, [], False
    ids = inputs["input_ids"]
    batch, length = ids.shape
    size = vlm.dtype.itemsize
    held = vision_bytes(vlm.model.config, size, sum(vlm.count_visual(row) for row in ids))
    shape = LLMShape.from_config(vlm.model.config)

    def prefix(depths):
        return prefix_bytes(shape, size, batch, length, depths)

    if held > cap:
        _note(notes, "vision", f"the vision features of a batch (~{_mib(held)} MiB) exceed execution.max_shared_mb "
                     f"({_mib(cap)} MiB): every cell runs its own vision tower and layers")
        return None, [], False
    lead, wanted = prefix_plan([(m.kind, m.k) for m in sharing])
    if lead is None:
        return None, [], True
    leader = sharing[lead]
    depths = []
    for k in wanted:  # shallow prefixes first: they serve the most for the least memory
        if held + prefix(depths + [k]) > cap:
            _note(notes, ("prefix", k), f"sharing layers below {k} would hold ~{_mib(held + prefix(wanted))} "
                         f"MiB per batch, over execution.max_shared_mb ({_mib(cap)} MiB): cells pruning at "
                         f"layer {k} or deeper compute their own layers")
            break
        depths.append(k)
    return leader, depths, True


def prefix_plan(kinds: list[tuple[str, int | None]]) -> tuple[int | None, list[int]]:
    """Given each cell's (kind, k) (Member.kind_of), the index of the cell that leads the prefix (the first
    vanilla cell, else the first of the deepest llm-stage ones: it computes what the others skip) and the
    layers the others start at; (None, []) when no cell has a prefix to share."""
    candidates = [i for i, (kind, _) in enumerate(kinds) if kind in ("vanilla", "llm")]
    if not candidates:
        return None, []
    vanilla = [i for i in candidates if kinds[i][0] == "vanilla"]
    lead = vanilla[0] if vanilla else max(candidates, key=lambda i: kinds[i][1])
    return lead, sorted({kinds[i][1] for i in candidates if i != lead})


def _vision_replay(vlm, inputs, share: bool):
    from ..engine.shared_vision import VisionReplay

    return VisionReplay(vlm, inputs) if share else nullcontext()


def _on_device(vlm, inputs):
    """The batch's tensors on the model's device once, so every cell's generate() gets the same objects."""
    import torch

    return {k: v.to(vlm.device) if isinstance(v, torch.Tensor) else v for k, v in dict(inputs).items()}


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.0f}"


def _note(notes: set, key, text: str):
    """Print ``text`` the first time ``key`` comes up in this run of a model's cells."""
    if key not in notes:
        notes.add(key)
        print(f"tokenprune: note: sample-major execution: {text}", file=sys.stderr, flush=True)
