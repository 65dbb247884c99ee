"""A cell of a sweep (one model x strategy+params x budget x benchmark x seed) and its stable id."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    label: str
    adapter: str
    checkpoint: str
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    device: str = "cpu"

    def key(self) -> str:
        """Cells with the same key share one loaded model."""
        return canonical_json(asdict(self))


@dataclass(frozen=True)
class CellSpec:
    model: ModelSpec
    strategy: str
    params: dict  # fully resolved strategy params (defaults included)
    budget: int | None  # absolute visual tokens kept per sample; None with keep_ratio or for vanilla
    keep_ratio: float | None
    benchmark: str
    benchmark_options: dict  # fully resolved benchmark options
    seed: int
    generation: dict = field(default_factory=dict)
    batch_size: int = 1
    label: str = ""  # strategy label shown in reports (name + non-default params)

    def as_dict(self) -> dict:
        d = asdict(self)
        return d

    @property
    def id(self) -> str:
        return cell_id(self.as_dict())

    def benchmark_key(self) -> str:
        """Cells with the same key read the same samples: same benchmark, same options."""
        return canonical_json([self.benchmark, self.benchmark_options])

    def budget_label(self) -> str:
        return "all" if self.strategy == "vanilla" else budget_label(self.budget, self.keep_ratio)

    def describe(self) -> str:
        return (f"{self.model.label} | {self.label or self.strategy} | budget {self.budget_label()} | "
                f"{self.benchmark} | seed {self.seed}")


def budget_label(budget: int | None, keep_ratio: float | None) -> str:
    """How reports name a budget: a token count ("64") or a keep ratio to one decimal of a percent ("11.1%")."""
    return str(budget) if budget is not None else f"{keep_ratio:.1%}"


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cell_id(spec_dict: dict) -> str:
    """Hash of the canonical spec: the same cell always gets the same id, whatever the YAML order."""
    return hashlib.sha256(canonical_json(spec_dict).encode()).hexdigest()[:16]


def cell_from_dict(d: dict) -> CellSpec:
    """A cell from its as_dict(), or from a spec.json / run.json entry, whose "id" it recomputes."""
    d = {k: v for k, v in d.items() if k != "id"}
    d["model"] = ModelSpec(**d["model"])
    return CellSpec(**d)


def group_by_model(cells) -> list[tuple[ModelSpec, list[CellSpec]]]:
    """(model, its cells) in first-seen order: an executor loads each model once for its group."""
    groups: dict[str, tuple[ModelSpec, list[CellSpec]]] = {}
    for cell in cells:
        groups.setdefault(cell.model.key(), (cell.model, []))[1].append(cell)
    return list(groups.values())
