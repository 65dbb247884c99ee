"""`tokenprune bench e2e`: prefill/TTFT, decode ms per token and peak memory with and without pruning.

Each strategy's measured prefill speed-up is set beside two references (see predict.py): the
FLOPs-predicted one, and the one the same model reaches on the kept tokens without the engine.
`limit`, a zero-cost strategy that hands layer K the same number of tokens, shows what is left
once selection costs nothing.

Timing on a shared machine: every pruned run is paired with a vanilla run just before it; the
pairs of all configurations are interleaved round by round (order rotated each round) after
warm-up runs, and a row's speed-up is the median over rounds of its pairs' ratios, so slow drifts
of the machine's load cancel. What else ran is reported (machine.py): the load average before, and
the cores other processes kept busy in each round.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import timing
from ..benchmarks.base import Sample
from ..engine import apply
from ..engine.vision_timer import VisionTimer
from ..selection import Selection
from ..strategy import Strategy
from ..timing import peak_memory_bytes, percentile, synchronize
from .predict import LEGEND, Prediction

PROMPT = ("describe the picture . what is in this image ? how many are there ? " * 4).strip()

__all__ = ["LEGEND", "bench_sample", "load", "run"]

DEFAULT_ARCH = "zoo:shapes-llava-144"  # the bundled model: runs anywhere, offline


class ZeroCostLimit(Strategy):
    """Bench-only: keeps the first `budget` visual tokens at layer K with no computation (the speed limit)."""

    name = "limit"
    stage = "llm"
    layer = 2

    def select(self, keys, attn, coords, budget, ctx):
        return Selection(keep=torch.arange(budget, device=coords.device).expand(ctx.batch_size, budget).clone())


def _fitted(strategy, n_layers: int):
    """A strategy whose default layer K lies beyond a small model's LLM prunes at K = 2 (as the
    limit does), like the default sweep sets SAINT on the bundled 4-layer model; rows record K."""
    if strategy.stage == "llm" and strategy.prune_layer >= n_layers:
        from .. import get_strategy

        return get_strategy(strategy.name, **{**strategy.cfg.as_dict(), "layer": min(2, n_layers - 1)})
    return strategy


def bench_sample(vlm) -> Sample:
    """The one sample every bench run uses: PROMPT and a plain image at the model's native size."""
    size = getattr(vlm, "bench_image_size", None)  # dynamic-resolution archs name their image size
    if size is None:
        side = vlm.model.config.vision_config.image_size
        size = (side, side)
    return Sample(id="bench", prompt=PROMPT, references="", images=[Image.new("RGB", size, (90, 140, 200))])


def load(arch: str, device: str, dtype):
    """A bench model: zoo:NAME or a checkpoint path (llava adapter), or a random-weight arch of archs.ARCHS."""
    from ..runner.execute import resolve_checkpoint

    if arch.startswith("zoo:") or "/" in arch:
        from ..models import load

        return load("llava", resolve_checkpoint(arch), dtype=dtype, device=device)
    from .archs import ARCHS

    if arch not in ARCHS:
        from ..errors import TokenpruneError

        raise TokenpruneError(f"unknown --arch {arch!r}; choose zoo:NAME, a checkpoint path, or one of {', '.join(ARCHS)}")
    return ARCHS[arch](dtype=getattr(torch, dtype), device=device)


@dataclass
class Case:
    """One configuration timed against vanilla: a strategy at a budget, and what its runs measured."""

    name: str
    strategy: object = None
    budget: int = 0
    prefill: list = field(default_factory=list)
    decode: list = field(default_factory=list)
    select: list = field(default_factory=list)
    vision: list = field(default_factory=list)  # vision tower seconds of each run
    llm: list = field(default_factory=list)  # vanilla: LLM seconds of each run
    ratios: list = field(default_factory=list)  # vanilla prefill of the paired run / this prefill
    peak: int = 0
    record: dict | None = None  # the first run's record: the counts the references use
    visual: int = 0  # visual tokens of the inputs it ran on
    total: int = 0  # prompt length of those inputs

    @property
    def layer(self) -> int | None:
        """Where the LLM first sees fewer tokens: K, 0 (before the LLM), None (vanilla)."""
        if self.strategy is None:
            return None
        return self.strategy.prune_layer if self.strategy.stage == "llm" else 0


class Bench:
    """Runs generate() on one sample with and without pruning, and the LLM alone on a given number of tokens."""

    def __init__(self, vlm, sample: Sample, new_tokens: int):
        self.vlm, self.sample, self.new_tokens = vlm, sample, new_tokens
        self.inputs = vlm.build_inputs([sample])
        self.timer = VisionTimer(vlm)
        with torch.inference_mode():  # the prompt's own embeddings, for the LLM-alone runs
            ids = self.inputs["input_ids"].to(vlm.device)
            self.embeds = vlm.language_model.get_input_embeddings()(ids)
        self.full = int(ids.shape[1])
        self.alone: dict[int, list[float]] = {}  # n -> per round: LLM-alone seconds on n tokens / on all of them

    def _generate(self, inputs, case: Case, keep: bool):
        cuda = self.vlm.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.vlm.device)
        result = self.vlm.generate(inputs, max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens)
        prefill = result.timings["prefill_s"]
        if keep:
            case.prefill.append(prefill)
            case.decode.append(result.timings["decode_s_per_token"])
            case.peak = max(case.peak, peak_memory_bytes(str(self.vlm.device))["peak_memory_bytes"] or 0)
        case.visual = self.vlm.count_visual(inputs["input_ids"][0])
        case.total = int(inputs["input_ids"].shape[1])
        return prefill

    def vanilla(self, case: Case, keep: bool = True) -> float:
        # the tower is timed as in a pruned run (the handle attaches the same timer), the LLM's prefill too
        llm = []
        hooks = [*self.timer.attach(), *_clock_hooks(self.vlm.language_model, self.vlm.device, llm)]
        try:
            prefill = self._generate(self.inputs, case, keep)
        finally:
            for h in hooks:
                h.remove()
        if keep:
            case.vision.append(self.timer.seconds)
            case.llm.append(llm[0])
        self.timer.seconds = 0.0
        return prefill

    def pruned(self, case: Case, keep: bool = True) -> float:
        with apply(self.vlm, case.strategy, budget=case.budget) as handle:
            # an input-stage strategy (downsample) changes the inputs themselves
            inputs = self.vlm.build_inputs([self.sample]) if case.strategy.stage == "input" else self.inputs
            prefill = self._generate(inputs, case, keep)
            if handle.records:
                case.record = case.record or dict(handle.records[0])
                if keep:
                    case.select.append(handle.records[0]["select_s"])
                    case.vision.append(handle.records[0]["vision_s"])
        return prefill

    def _alone(self, n: int) -> float:
        with torch.inference_mode():
            synchronize(self.vlm.device)
            start = time.perf_counter()
            self.vlm.language_model(inputs_embeds=self.embeds[:, :n], use_cache=False)
            synchronize(self.vlm.device)
        return time.perf_counter() - start

    def llm_alone(self, n: int) -> float:
        """The LLM alone (no engine) on the first n prompt embeddings, over the same on all of them, run
        back to back; kept in ``alone[n]``."""
        ratio = self._alone(n) / self._alone(self.full)
        self.alone.setdefault(n, []).append(ratio)
        return ratio


def _clock_hooks(module, device, out: list) -> list:
    """Hooks that append the seconds of ``module``'s first call to ``out`` (synchronised on CUDA)."""
    start = []

    def begin(mod, args):
        if not start:
            synchronize(device)
            start.append(time.perf_counter())

    def end(mod, args, output):
        if len(out) < len(start):
            synchronize(device)
            out.append(time.perf_counter() - start[0])

    return [module.register_forward_pre_hook(begin), module.register_forward_hook(end)]


def measure(bench: Bench, cases: list[Case], repeats: int, warmup: int, lengths=lambda: (),
            load_before=None) -> tuple[Case, dict]:
    """Warm up, then ``repeats`` rounds: (vanilla, case) pairs over every case in an order rotated each
    round, then the LLM alone at every length in ``lengths()`` (each against the full length)."""
    base = Case("vanilla")
    for _ in range(warmup):
        bench.vanilla(base, keep=False)
        for case in cases:
            bench.pruned(case, keep=False)
    loads, others = [timing.load_average()], []
    for r in range(repeats):
        meter = timing.LoadMeter(loadavg=lambda: None)  # per round; without /proc/stat, busy() reads the load average
        with meter.span():
            shift = r % len(cases) if cases else 0
            for case in cases[shift:] + cases[:shift]:
                v = bench.vanilla(base)
                case.ratios.append(v / bench.pruned(case))
            if not cases:
                bench.vanilla(base)
            for n in lengths():
                bench.llm_alone(n)
        loads.append(timing.load_average())
        cores = meter.other_cpus()
        others.append(None if cores is None else round(cores, 3))
    seen, cores = [x for x in loads if x is not None], [x for x in others if x is not None]
    conditions = {"rounds": repeats, "warmup_runs": warmup, "pairing": "each pruned run after its own vanilla run",
                  "load_average_1min": {"before": load_before, "after_warmup": loads[0],
                                        "max": max(seen) if seen else None, "end": loads[-1]},
                  "other_processes_cores": {"mean": round(sum(cores) / len(cores), 3) if cores else None,
                                            "max_round": max(cores) if cores else None}}
    return base, conditions


def _timings(case: Case) -> dict:
    out = {"prefill_ms": statistics.median(case.prefill) * 1e3, "prefill_p90_ms": percentile(case.prefill, 90) * 1e3,
           "decode_ms_per_token": statistics.median(case.decode) * 1e3, "peak_mem_mb": case.peak / 2**20}
    if case.vision:
        out["vision_ms"] = statistics.median(case.vision) * 1e3
    if case.select:
        out["select_ms"] = statistics.median(case.select) * 1e3
        out["select_share"] = out["select_ms"] / out["prefill_ms"]
    return out


def pick(devices=None, dtype=None) -> tuple[str, str]:
    """The device a bench runs on (the last one asked for; cuda when present) and its dtype (bf16 on cuda)."""
    device = (devices or (["cuda"] if torch.cuda.is_available() else ["cpu"]))[-1]
    return device, dtype or ("bfloat16" if device.startswith("cuda") else "float32")


def run(arch=DEFAULT_ARCH, strategies=None, budgets=None, devices=None, repeats=5, warmup=2,
        dtype=None, new_tokens=8) -> tuple[list[dict], dict]:
    """Rows (vanilla first, then per budget `limit` and each strategy) and the measuring conditions."""
    from .. import get_strategy, list_strategies

    load_before = timing.load_average()  # before this process adds its own
    device, dtype = pick(devices, dtype)
    vlm = load(arch, device, dtype)
    bench = Bench(vlm, bench_sample(vlm), new_tokens)
    n_total = int(bench.inputs["input_ids"].shape[1])
    n_visual = vlm.count_visual(bench.inputs["input_ids"][0])
    predict = Prediction(vlm, n_total, n_visual)
    names = strategies or [n for n in list_strategies() if n != "vanilla"]
    n_layers = len(vlm.decoder_layers)
    cases = [Case(name, ZeroCostLimit() if name == "limit" else _fitted(get_strategy(name), n_layers), budget)
             for budget in budgets or [max(1, round(n_visual * r)) for r in (1 / 3, 2 / 9, 1 / 9)]
             for name in dict.fromkeys(["limit", *names])]  # `limit` always, and once even when asked for

    def lengths():
        return sorted({n for c in cases if c.record for n in predict.alive(c)} - {n_total})

    base, conditions = measure(bench, cases, repeats, warmup, lengths, load_before)
    common = {"arch": arch, "device": device, "dtype": dtype, "attn": vlm.model.config._attn_implementation,
              "flops_scope": predict.scope}
    vanilla = _timings(base)
    shares = {"vision": statistics.median(v / p for v, p in zip(base.vision, base.prefill)),
              "llm": statistics.median(t / p for t, p in zip(base.llm, base.prefill))}
    alone = {n_total: 1.0, **{n: statistics.median(r) for n, r in bench.alone.items()}}
    conditions.update(vision_flops_share=predict.vision_share, vanilla_time_shares=shares, llm_alone_ratio=alone)
    rows = [{**common, "strategy": "vanilla", "budget": n_visual, **vanilla, "speedup": 1.0, "flops_speedup": 1.0,
             "llm_flops_speedup": 1.0, "vs_flops": 1.0}]
    for case in cases:
        m = _timings(case)
        speedup = statistics.median(case.ratios)
        row = {**common, "strategy": case.name, "budget": case.budget, "layer": case.layer,
               "kept": (case.record or {}).get("count"), **m, "speedup": speedup,
               **predict.references(case, vanilla, m, shares, alone)}
        for ref in ("flops", "expected", "no_engine"):
            if row.get(f"{ref}_speedup"):
                row[f"vs_{ref}"] = speedup / row[f"{ref}_speedup"]
        rows.append(row)
    return rows, conditions
