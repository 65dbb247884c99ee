"""Running cells: load each model once, prune, generate, score, append per sample, then metrics."""
from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from .. import flops, registry, timing
from ..errors import ConfigError
from . import latency
from . import metrics as cell_metrics
from .progress import Progress
from .spec import CellSpec, ModelSpec
from .store import CellStore, RunStore

BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
SHARED_SOURCE = "samples-shared"  # latency.source of an accuracy pass run sample-major


def resolve_checkpoint(checkpoint: str) -> str:
    """``zoo:<name>`` names a checkpoint bundled in the package; anything else goes to from_pretrained,
    but a local path that does not exist is refused here (from_pretrained would call it a bad repo id)."""
    if checkpoint.startswith("zoo:"):
        from .. import zoo

        try:
            return str(zoo.checkpoint_path(checkpoint[4:]))
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from None
    from .preflight import missing_local_path

    if missing_local_path(checkpoint):
        raise ConfigError(f"checkpoint {checkpoint!r} does not exist (no such directory: "
                          f"{Path(checkpoint).expanduser().resolve()})")
    return checkpoint


def load_model(spec: ModelSpec):
    from ..models import load

    return load(spec.adapter, resolve_checkpoint(spec.checkpoint), dtype=spec.dtype,
                attn_implementation=spec.attn_implementation, device=spec.device)


def run_group(model_spec: ModelSpec, cells: list[CellSpec], store: RunStore, *, warmup: int,
              progress: Progress | None = None, vlm=None) -> dict[str, str]:
    """Run every cell that shares one model, then its latency subset when the run has one.

    The cells run cell by cell or sample-major (sample_major.py), as the run's ``execution`` says;
    ``vlm``: the model already loaded (else it is loaded here). Returns {cell id: 'done' | 'skipped' | 'failed'}.
    """
    progress = progress or Progress(enabled=False)
    plan = store.latency_plan()
    status, todo = _pending(cells, store, progress)
    untimed = _untimed(cells, store, plan)
    if not todo and not untimed:
        return status
    try:
        vlm = vlm if vlm is not None else load_model(model_spec)
    except Exception as exc:  # every cell of this model records why it could not run
        for cell, cs in todo:
            cs.fail(exc)
            status[cell.id] = "failed"
            progress.cell_done(cell, "failed")
        for cell in untimed:
            store.cell(cell).fail(exc)
            status[cell.id] = "failed"
        return status
    execution = store.execution_plan()
    if execution.resolve(len(todo)) == "sample":
        from . import sample_major

        status.update(sample_major.run_cells(vlm, todo, warmup=warmup, progress=progress, max_load=plan.max_load,
                                             plan=execution))
    else:
        for cell, cs in todo:
            status[cell.id] = run_cell(vlm, cell, cs, warmup=warmup, progress=progress, max_load=plan.max_load)
            progress.cell_done(cell, status[cell.id])
    if plan.subset:
        ok = [cell for cell in cells if status[cell.id] != "failed"]
        status.update(latency.time_subset(vlm, ok, store, plan, progress))
    return status


def idle(cells: list[CellSpec], store: RunStore) -> bool:
    """Nothing for this group to load its model for: every cell finished (and timed, when the run has a
    latency subset). run_group's own test, for executors that skip such groups before starting a worker."""
    return all(store.cell(c).done for c in cells) and not _untimed(cells, store, store.latency_plan())


def _untimed(cells: list[CellSpec], store: RunStore, plan) -> list[CellSpec]:
    """Finished cells whose latency subset is still to time: they need the model too."""
    if not plan.subset:
        return []
    return [c for c in cells if store.cell(c).done and not latency.is_timed(store.cell(c))]


def _pending(cells: list[CellSpec], store: RunStore, progress: Progress):
    """Status of the finished cells, and (cell, store) of the ones to run."""
    status, todo = {}, []
    for cell in cells:
        cs = store.cell(cell)
        cs.prepare()
        if cs.done:
            status[cell.id] = "skipped"
            progress.cell_done(cell, "skipped")
        else:
            todo.append((cell, cs))
    return status, todo


def _pruning(vlm, cell: CellSpec, strategy=None):
    """The cell's strategy attached to the model (``strategy``: a ready instance of it), or nothing for vanilla."""
    if cell.strategy == "vanilla":
        return nullcontext(None)  # the reference is the untouched model
    from ..engine import apply

    # the engine seeds each sample's generator from this seed and the sample's own tokens,
    # so results do not depend on batch composition or on resuming
    if strategy is not None:
        return apply(vlm, strategy, budget=cell.budget, keep_ratio=cell.keep_ratio, seed=cell.seed)
    return apply(vlm, cell.strategy, budget=cell.budget, keep_ratio=cell.keep_ratio, seed=cell.seed, **cell.params)


def _generation(cell: CellSpec, bench) -> tuple[int, dict]:
    """max_new_tokens (the grid's, else the benchmark's) and the other generate() arguments."""
    max_new = cell.generation.get("max_new_tokens", bench.max_new_tokens)
    return max_new, {k: v for k, v in cell.generation.items() if k != "max_new_tokens"}


class CellPass:
    """One cell's accuracy pass: the samples it still has to run, in batches, and where their records go.

    ``bench`` and ``samples`` may be handed in when several cells read the same benchmark.
    """

    def __init__(self, cell: CellSpec, cs: CellStore, *, warmup: int, bench=None, samples=None):
        self.cell, self.cs, self.warmup = cell, cs, warmup
        self.bench = bench or registry.lookup("benchmarks", cell.benchmark)(**cell.benchmark_options)
        self.samples = list(self.bench.samples()) if samples is None else samples
        done = cs.completed_ids()
        todo = [s for s in self.samples if s.id not in done]
        self.remaining = len(todo)
        self.batches = [todo[i:i + cell.batch_size] for i in range(0, len(todo), cell.batch_size)]
        self.max_new, self.gen_kwargs = _generation(cell, self.bench)
        self.meter = timing.LoadMeter()  # what else ran on the host while this cell was timed
        self.measured = 0  # samples timed in this process (the first ``warmup`` are flagged)

    def run_batch(self, vlm, batch: list, inputs, handle, native: list[int] | None = None):
        """Generate one batch and append its records. ``native``: each sample's visual tokens at native
        resolution when an input-stage strategy resized the images."""
        with self.meter.span():
            started = time.perf_counter()
            result = vlm.generate(inputs, max_new_tokens=self.max_new, **self.gen_kwargs)
            wall = time.perf_counter() - started
        prune_records = _per_sample(handle, len(batch))
        prompt_tokens, n_visual = _prompt_sizes(vlm, inputs)
        for i, sample in enumerate(batch):
            record = _record(self.bench, sample, result, i, prune_records[i], prompt_tokens[i], n_visual[i],
                             wall, warm=self.measured < self.warmup)
            if native is not None:
                _count_native(record, native[i])
            self.cs.append(record)
            self.measured += 1

    def finish(self, vlm, max_load: float, execution: str = "cell"):
        """metrics.json from every record of the cell, in benchmark order, then DONE."""
        order = {s.id: i for i, s in enumerate(self.samples)}
        records = sorted((r for r in self.cs.records() if r["id"] in order), key=lambda r: order[r["id"]])
        load = cell_metrics.host_load(self.meter, max_load)
        self.cs.finish(_cell_metrics(vlm, self.cell, self.bench, records, load, execution))


def run_cell(vlm, cell: CellSpec, cs: CellStore, *, warmup: int, progress: Progress, max_load: float) -> str:
    try:
        run = CellPass(cell, cs, warmup=warmup)
        bar = progress.samples(cell, total=len(run.samples), initial=len(run.samples) - run.remaining)
        with _pruning(vlm, cell) as handle:
            for batch in run.batches:
                if handle is not None:
                    handle.clear()
                inputs = vlm.build_inputs(batch)
                native = getattr(vlm, "native_visual", None)  # set when an input-stage strategy resized images
                run.run_batch(vlm, batch, inputs, handle, native)
                bar.update(len(batch))
        bar.close()
        run.finish(vlm, max_load)
        return "done"
    except Exception as exc:  # isolation: record the failure, let the sweep go on
        cs.fail(exc)
        return "failed"


def time_sample(vlm, cell: CellSpec, bench, sample, meter: timing.LoadMeter) -> dict:
    """One cell's whole prefill + decode of one sample, batch 1, decode length fixed: the latency subset's unit."""
    max_new, gen_kwargs = _generation(cell, bench)
    gen_kwargs["min_new_tokens"] = max_new  # an early end of answer must not pass for speed
    with _pruning(vlm, cell) as handle:
        inputs = vlm.build_inputs([sample])
        with meter.span():
            started = time.perf_counter()
            result = vlm.generate(inputs, max_new_tokens=max_new, **gen_kwargs)
            wall = time.perf_counter() - started
        return _timings(result, _per_sample(handle, 1)[0], wall)


def _per_sample(handle, batch_size: int) -> list:
    """The engine's record of each sample's (single) pruned prefill, in batch order."""
    if handle is None:
        return [None] * batch_size
    recs = [r for r in handle.records if r.get("prefill", 0) == handle.records[0].get("prefill", 0)]
    if len(recs) != batch_size:
        raise RuntimeError(f"the engine recorded {len(recs)} pruned samples for a batch of {batch_size}")
    return sorted(recs, key=lambda r: r["sample"])


def _prompt_sizes(vlm, inputs) -> tuple[list[int], list[int]]:
    """Prompt length (padding excluded) and visual-token count of every sample in the batch."""
    import torch

    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    lengths = (mask.sum(dim=1) if mask is not None else torch.full((ids.shape[0],), ids.shape[1])).tolist()
    visual = [vlm.count_visual(row) for row in ids]
    return [int(n) for n in lengths], visual


def _count_native(record: dict, native: int):
    """A resized input: token counts and FLOPs are against the native-resolution prompt."""
    record["n_resized"] = record["n_visual"]
    record["native_prompt_tokens"] = record["prompt_tokens"] - record["n_visual"] + native
    record["n_visual"] = native


def _timings(result, prune, wall: float) -> dict:
    """The generate() call's timings plus the engine's vision and selection times."""
    timings = dict(result.timings or {})
    timings.setdefault("total_s", wall)
    if prune is not None:
        timings["select_s"] = prune.get("select_s")
        timings["vision_s"] = prune.get("vision_s", timings.get("vision_s"))
    return timings


def _record(bench, sample, result, i, prune, prompt_tokens, n_visual, wall, warm) -> dict:
    text = result.texts[i]
    return {
        "id": sample.id,
        "prediction": text,
        "score": bench.score(sample, text),
        "meta": sample.meta,
        "n_visual": n_visual,
        "count": prune["count"] if prune is not None else n_visual,
        # two-stage strategies: the visual tokens left before the LLM (layers below K see these)
        "stage1_count": (prune.get("info") or {}).get("stage1_count") if prune is not None else None,
        "kept": prune.get("kept") if prune is not None else None,
        "order": (prune.get("info") or {}).get("order") if prune is not None else None,
        "grid": prune.get("grid") if prune is not None else None,
        "diagnostics": prune.get("diagnostics") if prune is not None else None,
        "prompt_tokens": prompt_tokens,
        "new_tokens": result.new_tokens[i] if getattr(result, "new_tokens", None) else None,
        "timings": _timings(result, prune, wall),
        "warmup": warm,
    }


def _cell_metrics(vlm, cell: CellSpec, bench, records: list[dict], load: dict, execution: str = "cell") -> dict:
    from ..api import strategy_class

    strategy = strategy_class(cell.strategy)(**cell.params)
    if cell.strategy == "vanilla":
        prune_layer = None
    else:
        prune_layer = strategy.prune_layer if strategy.stage == "llm" else 0
    shape = flops.LLMShape.from_config(vlm.model.config)
    out = {
        "cell": cell.id,
        "benchmark_metrics": bench.aggregate(records),
        "main_metric": bench.main_metric,
        "samples": len(records),
        "source": bench.source(),
        "protocol": cell.benchmark_options.get("protocol"),
        "tokens": cell_metrics.token_stats(records),
        "flops": cell_metrics.flops_stats(records, shape, prune_layer, BYTES.get(cell.model.dtype, 4)),
        # sample-major: the cells of a batch shared inputs, vision and layers < K, so one cell's per-sample
        # times leave out work another cell did for it: marked, not comparable across cells
        "latency": cell_metrics.latency_stats(records, source="samples" if execution == "cell" else SHARED_SOURCE),
        "memory": timing.peak_memory_bytes(cell.model.device),
        "environment": {**cell_metrics.environment(cell.model.device, cell.model.dtype,
                                                   cell.model.attn_implementation, load),
                        "input_builder": getattr(vlm, "input_builder", None), "execution": execution},
        "prune_layer": prune_layer,
    }
    return out
