"""Running cells: load each model once, prune, generate, score, append per sample, then metrics."""
from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from .. import flops, registry, timing
from ..errors import ConfigError
from . import latency
from . import metrics as cell_metrics
from .latency import LatencyPlan
from .progress import Progress
from .spec import CellSpec, ModelSpec
from .store import CellStore, RunStore

BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


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
              progress: Progress | None = None) -> dict[str, str]:
    """Run every cell that shares one model, then its latency subset when the run has one.

    Returns {cell id: 'done' | 'skipped' | 'failed'}.
    """
    progress = progress or Progress(enabled=False)
    plan = store.latency_plan()
    status, todo = _pending(cells, store, progress)
    # finished cells whose latency subset is still to time need the model too
    untimed = [cell for cell in cells if plan.subset and status.get(cell.id) == "skipped"
               and not latency.is_timed(store.cell(cell))]
    if not todo and not untimed:
        return status
    try:
        vlm = load_model(model_spec)
    except Exception as exc:  # every cell of this model records why it could not run
        for cell, cs in todo:
            cs.fail(exc)
            status[cell.id] = "failed"
            progress.cell_done(cell, "failed")
        for cell in untimed:
            store.cell(cell).fail(exc)
            status[cell.id] = "failed"
        return status
    for cell, cs in todo:
        status[cell.id] = run_cell(vlm, cell, cs, warmup=warmup, progress=progress, max_load=plan.max_load)
        progress.cell_done(cell, status[cell.id])
    if plan.subset:
        ok = [cell for cell in cells if status[cell.id] != "failed"]
        status.update(latency.time_subset(vlm, ok, store, plan, progress))
    return status


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


def _pruning(vlm, cell: CellSpec):
    if cell.strategy == "vanilla":
        return nullcontext(None)  # the reference is the untouched model
    from ..engine import apply

    # the engine seeds each sample's generator from this seed and the sample's own tokens,
    # so results do not depend on batch composition or on resuming
    return apply(vlm, cell.strategy, budget=cell.budget, keep_ratio=cell.keep_ratio, seed=cell.seed, **cell.params)


def _generation(cell: CellSpec, bench) -> tuple[int, dict]:
    """max_new_tokens (the grid's, else the benchmark's) and the other generate() arguments."""
    max_new = cell.generation.get("max_new_tokens", bench.max_new_tokens)
    return max_new, {k: v for k, v in cell.generation.items() if k != "max_new_tokens"}


def run_cell(vlm, cell: CellSpec, cs: CellStore, *, warmup: int, progress: Progress,
             max_load: float = LatencyPlan.max_load) -> str:
    try:
        bench = registry.lookup("benchmarks", cell.benchmark)(**cell.benchmark_options)
        samples = list(bench.samples())
        done = cs.completed_ids()
        todo = [s for s in samples if s.id not in done]
        max_new, gen_kwargs = _generation(cell, bench)
        bar = progress.samples(cell, total=len(samples), initial=len(samples) - len(todo))
        meter = timing.LoadMeter()  # what else ran on the host while this cell was timed
        measured_so_far = 0
        with _pruning(vlm, cell) as handle:
            for start in range(0, len(todo), cell.batch_size):
                batch = todo[start:start + cell.batch_size]
                if handle is not None:
                    handle.clear()
                inputs = vlm.build_inputs(batch)
                with meter.span():
                    started = time.perf_counter()
                    result = vlm.generate(inputs, max_new_tokens=max_new, **gen_kwargs)
                    wall = time.perf_counter() - started
                prune_records = _per_sample(handle, len(batch))
                prompt_tokens, n_visual = _prompt_sizes(vlm, inputs)
                native = getattr(vlm, "native_visual", None)  # set when an input-stage strategy resized images
                for i, sample in enumerate(batch):
                    record = _record(bench, sample, result, i, prune_records[i], prompt_tokens[i], n_visual[i],
                                     wall, warm=measured_so_far < warmup)
                    if native is not None:
                        _count_native(record, native[i])
                    cs.append(record)
                    measured_so_far += 1
                bar.update(len(batch))
        bar.close()
        order = {s.id: i for i, s in enumerate(samples)}
        records = sorted((r for r in cs.records() if r["id"] in order), key=lambda r: order[r["id"]])
        cs.finish(_cell_metrics(vlm, cell, bench, records, cell_metrics.host_load(meter, max_load)))
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


def _cell_metrics(vlm, cell: CellSpec, bench, records: list[dict], load: dict) -> dict:
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
        "latency": cell_metrics.latency_stats(records),
        "memory": timing.peak_memory_bytes(cell.model.device),
        "environment": {**cell_metrics.environment(cell.model.device, cell.model.dtype,
                                                   cell.model.attn_implementation, load),
                        "input_builder": getattr(vlm, "input_builder", None)},
        "prune_layer": prune_layer,
    }
    return out
