"""`tokenprune bench e2e`: prefill/TTFT, decode ms per token and peak memory with and without pruning.

Each strategy's measured prefill speed-up is set beside the FLOPs-predicted one and beside
`limit`: a zero-cost strategy that hands layer K the same number of tokens (what a model that
simply receives the kept tokens from layer K on would cost, engine gathers included).

Timing under a shared machine: every pruned run is paired with a vanilla run just before it;
the pairs of all configurations are interleaved round by round (order rotated each round) after
warm-up runs, and a row's speed-up is the median over rounds of its pairs' ratios, so slow drifts
of the machine's load cancel. The 1-minute load average is sampled every round and reported.

The prediction compares like with like: the measured prefill runs the vision tower, the projector
and the LLM, so the FLOPs-predicted speed-up is (V + F) / (V' + F') with V the vision tower and
projector FLOPs (flops.VisionShape; V' differs only for input-stage strategies, which shrink the
image) and F, F' the LLM prefill FLOPs unpruned and pruned (`llm_flops_speedup` is F / F' alone).
With the strategy's own cost: expected = vanilla / (vanilla / predicted + select time).
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

import torch
from PIL import Image

from .. import flops
from ..benchmarks.base import Sample
from ..engine import apply
from ..selection import Selection
from ..strategy import Strategy
from ..timing import peak_memory_bytes, percentile

PROMPT = ("describe the picture . what is in this image ? how many are there ? " * 4).strip()
BUSY_LOAD = 1.2  # 1-minute load average of other work above which timings are flagged as taken under load


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


def _load(arch: str, device: str, dtype):
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
    ratios: list = field(default_factory=list)  # vanilla prefill of the paired run / this prefill
    peak: int = 0
    record: dict | None = None  # the first run's record: counts the FLOPs prediction uses
    visual: int = 0  # visual tokens of the inputs it ran on
    total: int = 0  # prompt length of those inputs


class Bench:
    """Runs generate() on one sample with and without pruning, and keeps each case's timings."""

    def __init__(self, vlm, sample: Sample, new_tokens: int):
        self.vlm, self.sample, self.new_tokens = vlm, sample, new_tokens
        self.inputs = vlm.build_inputs([sample])

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
        return self._generate(self.inputs, case, keep)

    def pruned(self, case: Case, keep: bool = True) -> float:
        with apply(self.vlm, case.strategy, budget=case.budget) as handle:
            # an input-stage strategy (downsample) changes the inputs themselves
            inputs = self.vlm.build_inputs([self.sample]) if case.strategy.stage == "input" else self.inputs
            prefill = self._generate(inputs, case, keep)
            if handle.records:
                case.record = case.record or dict(handle.records[0])
                if keep:
                    case.select.append(handle.records[0]["select_s"])
        return prefill


LEGEND = """\
speedup: median over rounds of (paired vanilla prefill / this prefill). flops_speedup: predicted
whole-prefill speed-up (V + F) / (V' + F'), V = vision tower + projector FLOPs, F = LLM prefill FLOPs
(flops_scope says whether V is counted; llm_flops_speedup = F / F'). vs_flops = speedup / flops_speedup.
expected_speedup = vanilla_ms / (vanilla_ms / flops_speedup + select_ms): the prediction with the
strategy's own selection time; vs_expected = speedup / expected_speedup. kept: tokens kept from layer K
(0 = before the LLM).
"""


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def measure(bench: Bench, cases: list[Case], repeats: int, warmup: int, load_before=None) -> tuple[Case, dict]:
    """Warm up, then ``repeats`` rounds of (vanilla, case) pairs over every case, rotating the order."""
    base = Case("vanilla")
    for _ in range(warmup):
        bench.vanilla(base, keep=False)
        for case in cases:
            bench.pruned(case, keep=False)
    loads = [_load_average()]
    for r in range(repeats):
        shift = r % len(cases) if cases else 0
        for case in cases[shift:] + cases[:shift]:
            v = bench.vanilla(base)
            case.ratios.append(v / bench.pruned(case))
        if not cases:
            bench.vanilla(base)
        loads.append(_load_average())
    seen = [x for x in loads if x is not None]
    conditions = {"rounds": repeats, "warmup_runs": warmup, "pairing": "each pruned run after its own vanilla run",
                  "load_average_1min": {"before": load_before, "after_warmup": loads[0],
                                        "max": max(seen) if seen else None, "end": loads[-1]}}
    return base, conditions


def _timings(case: Case) -> dict:
    out = {"prefill_ms": statistics.median(case.prefill) * 1e3, "prefill_p90_ms": percentile(case.prefill, 90) * 1e3,
           "decode_ms_per_token": statistics.median(case.decode) * 1e3, "peak_mem_mb": case.peak / 2**20}
    if case.select:
        out["select_ms"] = statistics.median(case.select) * 1e3
        out["select_share"] = out["select_ms"] / out["prefill_ms"]
    return out


class Prediction:
    """FLOPs of a whole prefill (vision tower + projector + LLM) for the bench sample, pruned or not."""

    def __init__(self, vlm, total: int, visual: int):
        config = vlm.model.config
        self.llm = flops.LLMShape.from_config(config)
        self.vision = flops.VisionShape.from_config(config)
        self.merge = self.vision.merge if self.vision else 1
        self.full_llm = flops.prefill_flops(self.llm, flops.alive_per_layer(self.llm, total, visual, visual, None))
        self.full_vision = self._vision(visual)

    def _vision(self, visual: int) -> int:
        return self.vision.flops([visual * self.merge]) if self.vision else 0

    @property
    def scope(self) -> str:
        return "vision+llm" if self.vision else "llm"

    @property
    def vision_share(self) -> float:
        return self.full_vision / (self.full_vision + self.full_llm)

    def speedups(self, case: Case, layer: int) -> tuple[float, float]:
        """(whole-prefill, LLM-only) predicted speed-ups of a case, from the counts its record holds."""
        rec = case.record or {}
        stage1 = (rec.get("info") or {}).get("stage1_count")
        kept = rec.get("count", case.budget)
        llm = flops.prefill_flops(self.llm, flops.alive_per_layer(self.llm, case.total, case.visual, kept, layer,
                                                                  stage1))
        whole = (self.full_vision + self.full_llm) / (self._vision(case.visual) + llm)
        return whole, self.full_llm / llm


def run(arch="zoo:shapes-llava-144", strategies=None, budgets=None, devices=None, repeats=5, warmup=2,
        dtype=None, new_tokens=8) -> tuple[list[dict], dict]:
    """Rows (vanilla first, then per budget `limit` and each strategy) and the measuring conditions."""
    from .. import get_strategy, list_strategies

    load_before = _load_average()  # before this process adds its own
    device = (devices or (["cuda"] if torch.cuda.is_available() else ["cpu"]))[-1]
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    vlm = _load(arch, device, dtype)
    size = getattr(vlm, "bench_image_size", None)  # dynamic-resolution archs name their image size
    if size is None:
        side = vlm.model.config.vision_config.image_size
        size = (side, side)
    sample = Sample(id="bench", prompt=PROMPT, references="", images=[Image.new("RGB", size, (90, 140, 200))])
    bench = Bench(vlm, sample, new_tokens)
    n_total = int(bench.inputs["input_ids"].shape[1])
    n_visual = vlm.count_visual(bench.inputs["input_ids"][0])
    names = strategies or [n for n in list_strategies() if n != "vanilla"]
    n_layers = len(vlm.decoder_layers)
    cases = [Case(name, ZeroCostLimit() if name == "limit" else _fitted(get_strategy(name), n_layers), budget)
             for budget in budgets or [max(1, round(n_visual * r)) for r in (1 / 3, 2 / 9, 1 / 9)]
             for name in ["limit", *names]]
    base, conditions = measure(bench, cases, repeats, warmup, load_before)
    predict = Prediction(vlm, n_total, n_visual)
    common = {"arch": arch, "device": device, "dtype": dtype, "attn": vlm.model.config._attn_implementation,
              "flops_scope": predict.scope}
    vanilla = _timings(base)
    conditions["vision_flops_share"] = predict.vision_share
    rows = [{**common, "strategy": "vanilla", "budget": n_visual, **vanilla, "speedup": 1.0, "flops_speedup": 1.0,
             "llm_flops_speedup": 1.0, "vs_flops": 1.0}]
    for case in cases:
        layer = case.strategy.prune_layer if case.strategy.stage == "llm" else 0
        m = _timings(case)
        speedup = statistics.median(case.ratios)
        predicted, llm_only = predict.speedups(case, layer)
        row = {**common, "strategy": case.name, "budget": case.budget, "layer": layer,
               "kept": (case.record or {}).get("count"), **m, "speedup": speedup, "flops_speedup": predicted,
               "llm_flops_speedup": llm_only, "vs_flops": speedup / predicted}
        if "select_ms" in m:
            expected = vanilla["prefill_ms"] / (vanilla["prefill_ms"] / predicted + m["select_ms"])
            row.update(expected_speedup=expected, vs_expected=speedup / expected)
        rows.append(row)
    return rows, conditions


def busy(conditions: dict, own_threads: int) -> bool:
    """Whether other work shared the machine while timing: load above BUSY_LOAD before the run, or
    above the bench's own ``own_threads`` plus BUSY_LOAD during it (CPU timings then say little)."""
    load = conditions.get("load_average_1min") or {}
    before, peak = load.get("before"), load.get("max")
    return (before is not None and before > BUSY_LOAD) or (peak is not None and peak > own_threads + BUSY_LOAD)
