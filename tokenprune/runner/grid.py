"""Experiment grids: YAML -> validated, expanded cells.

The whole grid is checked before anything runs. Every problem is reported at
once, each line saying where in the YAML it is and what is allowed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import registry
from ..errors import ConfigError, TokenpruneError
from .latency import LatencyPlan
from .paper_spec import GridAxes, PaperSpec, parse_paper
from .sample_major import ExecutionPlan, parse_execution
from .spec import CellSpec, ModelSpec, budget_label, canonical_json

TOP_KEYS = {
    "name": "run name (default: the file name)",
    "models": "list of {adapter, checkpoint, label, dtype, attn_implementation, device}",
    "strategies": "list of names or {name, params, label}",
    "budgets": "list of token counts / {keep_ratio: x}, or {keep_ratio: [..]} / {count: [..]}",
    "benchmarks": "list of names or {name, <options>}",
    "seeds": "list of integers",
    "generation": "{max_new_tokens, min_new_tokens}",
    "batch_size": "samples per generate() call",
    "executor": "name or {name, <options>}",
    "latency": "{warmup, subset, repeats, interleave, max_load}: warm-up samples per cell; time a fixed subset of "
               "`subset` samples `repeats` times after the accuracy pass, cells interleaved; the share of the CPUs "
               "other processes may use before a cell counts as timed under load",
    "execution": "auto | cell | sample, or {mode, max_shared_mb}: run a model's cells one after another, or batch by "
                 "batch sharing inputs, vision and the layers before each prune layer (auto: sample when a model has "
                 "more than one cell); max_shared_mb caps what a batch holds for sharing (default 2048)",
    "paper": "{source, metrics, rows}: published numbers to print beside ours (see docs/reproduce.md)",
    "smoke": "{adapter, checkpoint, limit}: what --smoke substitutes",
    "overridden": "written by the runner: the grid's own values of keys that --smoke / --limit replaced",
}
MODEL_KEYS = ("label", "adapter", "checkpoint", "dtype", "attn_implementation", "device")
DTYPES = ("float32", "float16", "bfloat16")
ATTN = ("sdpa", "eager", "flash_attention_2")
GENERATION_KEYS = ("max_new_tokens", "min_new_tokens")


@dataclass
class Grid:
    name: str
    path: Path | None
    cells: list[CellSpec]
    executor: str = "local"
    executor_options: dict = field(default_factory=dict)
    latency_warmup: int = 2
    raw: dict = field(default_factory=dict)
    paper: PaperSpec | None = None
    latency: LatencyPlan = field(default_factory=LatencyPlan)
    execution: ExecutionPlan = field(default_factory=ExecutionPlan)
    # (strategy, label, params) of a cell -> the strategies[i] entry it came from (the pre-flight's places)
    strategy_places: dict = field(default_factory=dict)


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str):
        self.items.append(f"{where}: {message}")

    def raise_if_any(self):
        if self.items:
            lines = "\n  ".join(self.items)
            raise ConfigError(f"{self.source}: {len(self.items)} problem(s) in the grid:\n  {lines}")


def load_grid(path, *, overrides: dict | None = None) -> Grid:
    """Read and validate a grid YAML file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"grid file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_grid(raw, source=str(path), default_name=path.stem, overrides=overrides, path=path)


def parse_grid(raw, *, source="<grid>", default_name="grid", overrides=None, path=None) -> Grid:
    problems = _Problems(source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the grid must be a YAML mapping with keys {', '.join(TOP_KEYS)}")
    raw = _with_overrides(raw, overrides)
    for key in raw:
        if key not in TOP_KEYS:
            problems.add(key, f"unknown key; allowed keys: {', '.join(TOP_KEYS)}")
    for key in ("models", "strategies", "benchmarks"):
        if key not in raw:
            problems.add(key, f"missing; expected {TOP_KEYS[key]}")

    models = _parse_models(raw.get("models"), problems)
    strategy_places: dict = {}
    strategies = _parse_strategies(raw.get("strategies"), problems, strategy_places)
    budgets = _parse_budgets(raw.get("budgets"), problems, needed=any(s[0] != "vanilla" for s in strategies))
    benchmarks = _parse_benchmarks(raw.get("benchmarks"), problems)
    seeds = _parse_int_list(raw.get("seeds", [0]), "seeds", problems)
    generation = _parse_generation(raw.get("generation", {}), problems)
    batch_size = _parse_positive_int(raw.get("batch_size", 1), "batch_size", problems)
    executor, executor_options = _parse_executor(raw.get("executor", "local"), problems)
    latency = _parse_latency(raw.get("latency"), problems)
    execution = parse_execution(raw.get("execution"), problems)
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or "/" in name:
        problems.add("name", f"{name!r} must be a non-empty string without '/'")
    paper = _parse_paper(raw, strategies, budgets, benchmarks, problems)
    problems.raise_if_any()

    cells = []
    for model, (sname, params, label), bench, seed in itertools.product(models, strategies, benchmarks, seeds):
        bname, options = bench
        budget_axis = [(None, None)] if sname == "vanilla" else budgets
        for budget, ratio in budget_axis:
            cells.append(CellSpec(model=model, strategy=sname, params=params, budget=budget, keep_ratio=ratio,
                                  benchmark=bname, benchmark_options=options, seed=seed, generation=generation,
                                  batch_size=batch_size, label=label))
    ids = {}
    for cell in cells:
        if cell.id in ids:
            raise ConfigError(f"{source}: the grid lists the same cell twice: {cell.describe()}")
        ids[cell.id] = cell
    return Grid(name=name, path=path, cells=cells, executor=executor, executor_options=executor_options,
                latency_warmup=latency.warmup, raw=raw, paper=paper, latency=latency, execution=execution,
                strategy_places=strategy_places)


def _with_overrides(raw: dict, overrides: dict | None) -> dict:
    """The grid a run executes; the values it replaced stay under ``overridden`` (stored with the run)."""
    if not overrides:
        return raw
    replaced = {key: raw[key] for key in overrides if key in raw}
    merged = {**raw, **overrides}
    prior = raw.get("overridden")
    if replaced:
        merged["overridden"] = {**replaced, **(prior if isinstance(prior, dict) else {})}
    return merged


def _parse_paper(raw, strategies, budgets, benchmarks, problems) -> PaperSpec | None:
    """The published numbers refer to the grid as written, before --smoke replaced its budgets and benchmarks."""
    if raw.get("paper") is None:
        return None
    written = raw.get("overridden") or {}
    if not isinstance(written, dict):
        problems.add("overridden", "must be a mapping of grid keys")
        written = {}
    if "budgets" in written:
        budgets = _parse_budgets(written["budgets"], _Problems(""), needed=False)
    if "benchmarks" in written:
        benchmarks = _parse_benchmarks(written["benchmarks"], _Problems(""))
    axes = GridAxes(vanilla_labels=frozenset(label for name, _, label in strategies if name == "vanilla"),
                    pruned_labels=frozenset(label for name, _, label in strategies if name != "vanilla"),
                    budgets=tuple(budget_label(b, r) for b, r in budgets),
                    benchmarks=frozenset(name for name, _ in benchmarks))
    return parse_paper(raw["paper"], problems.add, axes)


def _as_list(value, where, problems):
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        problems.add(where, f"must be a non-empty list, got {value!r}")
        return []
    return value


def _parse_models(value, problems) -> list[ModelSpec]:
    known = registry.names("models")
    out = []
    for i, entry in enumerate(_as_list(value, "models", problems)):
        where = f"models[{i}]"
        if not isinstance(entry, dict):
            problems.add(where, "must be a mapping with adapter and checkpoint")
            continue
        for key in entry:
            if key not in MODEL_KEYS:
                problems.add(f"{where}.{key}", f"unknown key; allowed: {', '.join(MODEL_KEYS)}")
        adapter = entry.get("adapter")
        if adapter not in known:
            problems.add(f"{where}.adapter", registry.missing_message("models", adapter))
        checkpoint = entry.get("checkpoint")
        if not isinstance(checkpoint, str) or not checkpoint:
            problems.add(f"{where}.checkpoint", "a hub id, a local path or zoo:<name> is required")
        dtype = entry.get("dtype", "float32")
        if dtype not in DTYPES:
            problems.add(f"{where}.dtype", f"{dtype!r} is not one of {', '.join(DTYPES)}")
        attn = entry.get("attn_implementation", "sdpa")
        if attn not in ATTN:
            problems.add(f"{where}.attn_implementation", f"{attn!r} is not one of {', '.join(ATTN)}")
        device = entry.get("device", "cpu")
        if not isinstance(device, str) or not (device in ("cpu", "cuda", "mps") or device.startswith("cuda:")):
            problems.add(f"{where}.device", f"{device!r} must be cpu, cuda, cuda:N or mps")
        label = entry.get("label") or (f"{adapter}:{Path(str(checkpoint)).name}" if checkpoint else str(adapter))
        out.append(ModelSpec(label=str(label), adapter=str(adapter), checkpoint=str(checkpoint), dtype=str(dtype),
                             attn_implementation=str(attn), device=str(device)))
    labels = [m.label for m in out]
    for dup in {lab for lab in labels if labels.count(lab) > 1}:
        problems.add("models", f"two models share the label {dup!r}; give each a distinct label")
    return out


def _named_entries(value, kind: str, shape: str, problems):
    """(where, mapping, name) of each entry of a list of names or {name, ...} mappings with a registered name."""
    singular = {"strategies": "strategy", "benchmarks": "benchmark"}[kind]
    known = registry.names(kind)
    for i, entry in enumerate(_as_list(value, kind, problems)):
        where = f"{kind}[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            problems.add(where, f"must be a {singular} name or a mapping {shape}")
            continue
        if entry["name"] not in known:
            problems.add(f"{where}.name", registry.missing_message(kind, entry["name"]))
            continue
        yield where, entry, entry["name"]


def _parse_strategies(value, problems, places: dict | None = None):
    """(name, resolved params, label) of each strategy cell; ``places`` gets strategy_place() -> its entry."""
    from ..api import strategy_class

    out = []
    for where, entry, name in _named_entries(value, "strategies", "{name, params, label}", problems):
        for key in entry:
            if key not in ("name", "params", "label"):
                problems.add(f"{where}.{key}", "unknown key; allowed: name, params, label")
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            problems.add(f"{where}.params", "must be a mapping of param name -> value (a list expands)")
            continue
        axes = {k: (v if isinstance(v, list) else [v]) for k, v in params.items()}
        for combo in itertools.product(*axes.values()) if axes else [()]:
            chosen = dict(zip(axes, combo))
            try:
                strategy = strategy_class(name)(**chosen)
            except TokenpruneError as exc:
                problems.add(f"{where}.params", str(exc))
                break
            # a label names the strategy plus the params that tell its cells apart
            shown = {k: v for k, v in chosen.items() if len(axes[k]) > 1 or not entry.get("label")}
            label = (entry.get("label") or name) + (
                "(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else "")
            out.append((name, strategy.cfg.as_dict(), label))
            if places is not None:
                places.setdefault(strategy_place(name, label, out[-1][1]), where)
    return out


def strategy_place(name: str, label: str, params: dict) -> str:
    """Key of Grid.strategy_places: the label alone is not unique (two entries may share a label)."""
    return canonical_json([name, label, params])


def _parse_budgets(value, problems, needed: bool):
    if value is None:
        if needed:
            problems.add("budgets", f"missing; expected {TOP_KEYS['budgets']}")
        return []
    items = []
    if isinstance(value, dict):
        for key, vals in value.items():
            if key not in ("keep_ratio", "count"):
                problems.add(f"budgets.{key}", "unknown key; allowed: keep_ratio, count")
                continue
            for v in vals if isinstance(vals, list) else [vals]:
                items.append((f"budgets.{key}", {key: v}))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            items.append((f"budgets[{i}]", v if isinstance(v, dict) else {"count": v}))
    else:
        problems.add("budgets", f"must be a list or a mapping, got {value!r}")
    out = []
    for where, item in items:
        if set(item) == {"count"}:
            v = item["count"]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.add(where, f"token count {v!r} must be an integer >= 1")
                continue
            out.append((v, None))
        elif set(item) == {"keep_ratio"}:
            v = item["keep_ratio"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                problems.add(where, f"keep_ratio {v!r} must be a number in (0, 1]")
                continue
            out.append((None, float(v)))
        else:
            problems.add(where, f"{item!r}: use an integer count or {{keep_ratio: x}}")
    if len(set(out)) != len(out):
        problems.add("budgets", "lists the same budget twice")
    return out


def _parse_benchmarks(value, problems):
    out = []
    for where, entry, name in _named_entries(value, "benchmarks", "{name, <options>}", problems):
        options = {k: v for k, v in entry.items() if k != "name"}
        try:
            bench = registry.lookup("benchmarks", name)(**options)
        except TokenpruneError as exc:
            problems.add(where, str(exc))
            continue
        out.append((name, bench.cfg.as_dict()))
    return out


def _parse_int_list(value, where, problems):
    if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        problems.add(where, f"must be a non-empty list of integers, got {value!r}")
        return [0]
    return value


def _parse_positive_int(value, where, problems, allow_zero=False):
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        problems.add(where, f"must be an integer >= {low}, got {value!r}")
        return low
    return value


def _parse_latency(value, problems) -> LatencyPlan:
    if value is None:
        return LatencyPlan()
    if not isinstance(value, dict):
        problems.add("latency", f"must be a mapping with keys {', '.join(LatencyPlan.KEYS)}, got {value!r}")
        return LatencyPlan()
    for key in value:
        if key not in LatencyPlan.KEYS:
            problems.add(f"latency.{key}", f"unknown key; allowed: {', '.join(LatencyPlan.KEYS)}")
    default = LatencyPlan()
    warmup = _parse_positive_int(value.get("warmup", default.warmup), "latency.warmup", problems, allow_zero=True)
    subset = value.get("subset")
    if subset is not None:
        subset = _parse_positive_int(subset, "latency.subset", problems)
    repeats = _parse_positive_int(value.get("repeats", default.repeats), "latency.repeats", problems)
    if "repeats" in value and subset is None:
        problems.add("latency.repeats", "only applies with latency.subset (the samples timed repeatedly)")
    interleave = value.get("interleave", default.interleave)
    if not isinstance(interleave, bool):
        problems.add("latency.interleave", f"must be true or false, got {interleave!r}")
    max_load = value.get("max_load", default.max_load)
    if isinstance(max_load, bool) or not isinstance(max_load, (int, float)) or max_load < 0:
        problems.add("latency.max_load", f"must be a number >= 0 (share of the CPUs), got {max_load!r}")
        max_load = default.max_load
    return LatencyPlan(warmup=warmup, subset=subset, repeats=repeats, interleave=interleave is not False,
                       max_load=float(max_load))


def _parse_generation(value, problems):
    if not isinstance(value, dict):
        problems.add("generation", f"must be a mapping with keys {', '.join(GENERATION_KEYS)}")
        return {}
    for key, v in value.items():
        if key not in GENERATION_KEYS:
            problems.add(f"generation.{key}", f"unknown key; allowed: {', '.join(GENERATION_KEYS)}")
        elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
            problems.add(f"generation.{key}", f"must be an integer >= 1, got {v!r}")
    return dict(value)


def _parse_executor(value, problems):
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        problems.add("executor", "must be an executor name or {name, <options>}")
        return "local", {}
    name = value["name"]
    known = registry.names("executors")
    if name not in known:
        problems.add("executor.name", registry.missing_message("executors", name))
        return name, {}
    options = {k: v for k, v in value.items() if k != "name"}
    try:
        registry.lookup("executors", name).check_options(options)
    except TokenpruneError as exc:
        problems.add("executor", str(exc))
    return name, options
