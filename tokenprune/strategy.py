"""The strategy contract: one class per pruning method, one ``select`` method.

A strategy subclass declares ``name``, ``stage``, ``layer``, ``requires`` and
``params`` and implements ``select(keys, attn, coords, budget, ctx)``. The
base class wraps that method so every call checks its inputs (shapes, budget,
NaN/inf) and the returned Selection (count, uniqueness, order, range, shape),
and raises an error that names the strategy. ``TwoStage`` chains a pre_llm and
an llm strategy into one that prunes at both points in the same prefill.
"""
from __future__ import annotations

import functools
import inspect
from typing import ClassVar

import torch

from .errors import PluginError
from .params import Config, Param, resolve
from .selection import SIGNALS, Context, Selection
from .validation import check_input_grid, check_inputs, check_selection

STAGES = ("input", "pre_llm", "llm")


class Strategy:
    """Base class of every pruning strategy (built-in or third-party).

    Class attributes:
      name      unique registry name
      stage     "pre_llm" (before the LLM), "llm" (at the input of decoder layer K) or
                "input" (the image is resized before the vision tower to the token grid
                ``input_grid(grid, budget)`` names; ``select`` then runs on the tokens of
                the resized image as a pre_llm strategy would)
      layer     default K for llm-stage strategies (becomes the ``layer`` param)
      requires  signals the strategy reads (see tokenprune.SIGNALS); the engine computes only these
      params    hyper-parameters with the paper's defaults (name -> Param)
      paper     citation
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = "llm"
    layer: ClassVar[int | None] = None
    requires: ClassVar[frozenset] = frozenset()
    params: ClassVar[dict[str, Param]] = {}
    paper: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        impl = cls.__dict__.get("select")
        if impl is not None and not getattr(impl, "_tp_checked", False):
            cls.select = _checked(impl)
        cls.requires = frozenset(cls.requires)

    @classmethod
    def all_params(cls) -> dict[str, Param]:
        """Declared params plus ``layer`` for llm-stage strategies that did not declare it."""
        declared = dict(cls.params)
        if cls.stage == "llm" and "layer" not in declared:
            declared = {"layer": Param(cls.layer, "decoder layer K at whose input tokens are pruned", int, min=1), **declared}
        return declared

    @classmethod
    def check_declaration(cls):
        """Raise PluginError if the class does not follow the contract."""
        where = f"{cls.__module__}.{cls.__qualname__}"
        if not isinstance(cls.name, str) or not cls.name:
            raise PluginError(f"strategy class {where} has no name")
        if cls.stage not in STAGES:
            raise PluginError(f"strategy {cls.name!r} ({where}): stage {cls.stage!r} is not one of {STAGES}")
        if cls.stage == "llm" and not isinstance(cls.layer, int):
            raise PluginError(f"strategy {cls.name!r} ({where}): an llm-stage strategy needs an integer default layer")
        unknown = set(cls.requires) - set(SIGNALS)
        if unknown:
            raise PluginError(
                f"strategy {cls.name!r} ({where}): unknown signals {sorted(unknown)} in requires; "
                f"known: {', '.join(SIGNALS)}"
            )
        for pname, p in cls.all_params().items():
            if not isinstance(p, Param):
                raise PluginError(f"strategy {cls.name!r}: param {pname!r} must be a tokenprune.Param")
        if not callable(getattr(cls, "select", None)):
            raise PluginError(f"strategy {cls.name!r} ({where}) does not implement select()")
        if cls.stage == "input" and cls.input_grid is Strategy.input_grid:
            raise PluginError(f"strategy {cls.name!r} ({where}): an input-stage strategy must implement "
                              "input_grid(grid, budget)")
        if issubclass(cls, TwoStage):
            cls._check_parts(where)

    def __init__(self, **params):
        self.cfg = Config(resolve(self.all_params(), params, owner=f"strategy {self.name!r}"))

    @property
    def exact_budget(self) -> bool:
        """True when every call must keep exactly ``budget`` tokens (the default).

        Strategies with a faithful mode that under- or over-fills return False
        while that mode is on.
        """
        return True

    @property
    def prune_layer(self) -> int | None:
        """The decoder layer K this instance prunes at (None for pre_llm)."""
        return self.cfg.layer if self.stage == "llm" else None

    def select(self, keys, attn, coords, budget, ctx=None) -> Selection:  # pragma: no cover - abstract
        raise NotImplementedError

    def input_grid(self, grid: tuple[int, int], budget: int) -> tuple[int, int]:  # pragma: no cover - abstract
        """Input-stage strategies: the (rows, cols) token grid an image with native token grid
        ``grid`` is resized to, for ``budget`` kept tokens. Never larger than ``grid``; at least
        ``budget`` tokens when the native grid has them (``select`` then trims to the budget)."""
        raise NotImplementedError

    def planned_grid(self, grid: tuple[int, int], budget: int) -> tuple[int, int]:
        """``input_grid`` checked: positive integers, inside the native grid, room for the budget."""
        return check_input_grid(self, grid, budget, self.input_grid(tuple(grid), budget))

    @classmethod
    def describe(cls) -> dict:
        """Everything `tokenprune show` prints."""
        doc = inspect.getdoc(cls) or ""
        return {
            "name": cls.name,
            "stage": cls.stage,
            "stages": [f"{p.stage}: {p.name}" for p in cls.part_classes] if issubclass(cls, TwoStage) else None,
            "layer": cls.layer if cls.stage == "llm" else None,
            "requires": sorted(cls.requires),
            "paper": cls.paper,
            "params": {
                n: {"default": p.default, "allowed": p.allowed(), "help": p.help} for n, p in cls.all_params().items()
            },
            "doc": doc,
        }

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.cfg.as_dict().items())
        return f"<strategy {self.name}({args})>"


def _checked(impl):
    @functools.wraps(impl)
    def select(self, keys, attn, coords, budget, ctx=None):
        ctx = Context() if ctx is None else ctx
        if isinstance(keys, torch.Tensor) and keys.dim() == 2:
            keys = keys.unsqueeze(0)  # a single sample [N, Dk] is a batch of one
        if isinstance(attn, torch.Tensor) and attn.dim() == 1:
            attn = attn.unsqueeze(0)
        B, N = check_inputs(self, keys, attn, coords, budget, ctx)
        sel = impl(self, keys, attn, coords, budget, ctx)
        hidden_dim = ctx.hidden.shape[-1] if ctx.hidden is not None else None
        return check_selection(self, sel, B=B, N=N, budget=budget, hidden_dim=hidden_dim)

    select._tp_checked = True
    select.unchecked = impl
    return select


class TwoStage(Strategy):
    """A strategy that prunes twice in one prefill: a pre_llm part, then an llm part at decoder layer K.

    Subclasses set ``part_classes = (PreLLMStrategy, LLMStrategy)``, a default ``layer`` (K, the
    ``layer`` param, handed to the llm part) and implement
      part_params()           -> (params of the pre_llm part, params of the llm part, without layer)
      first_budget(n, budget) -> visual tokens the pre_llm part keeps of a sample's n, for the final
                                 ``budget`` (budget <= result <= n)
    ``budget`` is always the final count, after the llm part. Inside a model the engine calls each
    part at its own prune point with that point's signals, the llm part on the tokens the pre_llm
    part kept (docs/engine.md, "What happens inside the model"). ``select`` chains the parts on one
    set of inputs (for standalone use and the conformance suite): the llm part then runs once per
    sample, because each sample keeps a different subset.
    """

    stage: ClassVar[str] = "llm"
    part_classes: ClassVar[tuple] = ()

    @classmethod
    def _check_parts(cls, where: str):
        stages = tuple(getattr(part, "stage", None) for part in cls.part_classes)
        if stages != ("pre_llm", "llm") or not all(issubclass(p, Strategy) for p in cls.part_classes):
            raise PluginError(f"strategy {cls.name!r} ({where}): part_classes must be (a pre_llm strategy, "
                              f"an llm strategy), got stages {stages}")
        if cls.stage != "llm":
            raise PluginError(f"strategy {cls.name!r} ({where}): a two-stage strategy ends at an llm layer; "
                              "its stage must be 'llm'")

    def part_params(self) -> tuple[dict, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def first_budget(self, n: int, budget: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def parts(self) -> tuple[Strategy, Strategy]:
        """The two part instances, built once from this instance's params."""
        if getattr(self, "_parts", None) is None:
            first_cls, second_cls = self.part_classes
            first_params, second_params = self.part_params()
            self._parts = (first_cls(**first_params), second_cls(**second_params, layer=self.cfg.layer))
        return self._parts

    def checked_first_budget(self, n: int, budget: int) -> int:
        """``first_budget`` held to its contract, so a bad subclass fails here with its name."""
        n1 = self.first_budget(n, budget)
        if isinstance(n1, bool) or not isinstance(n1, int) or not min(budget, n) <= n1 <= n:
            raise PluginError(f"strategy {self.name!r}: first_budget({n}, {budget}) returned {n1!r}; "
                              f"it must be an integer between {min(budget, n)} and {n}")
        return n1

    @property
    def exact_budget(self) -> bool:
        first, second = self.parts()
        return first.exact_budget and second.exact_budget

    def select(self, keys, attn, coords, budget, ctx):
        first, second = self.parts()
        n = coords.shape[0]
        sel1 = first.select(keys, attn, coords, self.checked_first_budget(n, budget), ctx)
        kept, hidden, infos = [], [], []
        for b, row in enumerate(sel1.keep):
            row = row[row >= 0]
            sub_keys, sub_attn, sub_ctx = _sample_subset(keys, attn, ctx, b, row, sel1.hidden, n)
            sel2 = second.select(sub_keys, sub_attn, coords[row.to(coords.device)], min(budget, row.numel()),
                                 sub_ctx)
            inner = sel2.keep[0][sel2.keep[0] >= 0]
            kept.append(row[inner.to(row.device)])
            if sel2.hidden is not None:
                hidden.append(sel2.hidden[0][: inner.numel()])
            elif sel1.hidden is not None:
                hidden.append(sel1.hidden[b][inner.to(sel1.hidden.device)])
            infos.append({**sel2.info, "stage1_count": int(row.numel())})
        return Selection(keep=_pad_rows(kept), hidden=_pad_rows(hidden) if hidden else None,
                         info=_per_sample_info(infos))


def _sample_subset(keys, attn, ctx, b: int, rows: torch.Tensor, replaced, n: int):
    """Sample ``b`` of the inputs, restricted to the visual tokens ``rows`` (a batch of one)."""
    def token_rows(t):
        return None if t is None else t[b:b + 1, rows.to(t.device)]

    def sample(t):
        return None if t is None else t[b:b + 1]

    hidden = replaced[b:b + 1, : rows.numel()] if replaced is not None else token_rows(ctx.hidden)
    extras = {}
    for key, value in ctx.extras.items():  # per-token extras follow the rows, per-sample ones the sample
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == n:
            value = token_rows(value)
        elif isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == _batch_of(keys, ctx):
            value = sample(value)
        elif isinstance(value, (list, tuple)) and len(value) == _batch_of(keys, ctx):
            value = [value[b]]
        extras[key] = value
    gens = ctx.generator
    sub = Context(hidden=hidden, text_keys=sample(ctx.text_keys), text_hidden=sample(ctx.text_hidden),
                  text_mask=sample(ctx.text_mask), final_norm=ctx.final_norm, text_embeds=sample(ctx.text_embeds),
                  image_embeds=token_rows(ctx.image_embeds), grid=ctx.grid,
                  generator=gens if gens is None or isinstance(gens, torch.Generator) else [gens[b]],
                  layer=ctx.layer, batch_size=1, extras=extras)
    return token_rows(keys), token_rows(attn), sub


def _batch_of(keys, ctx) -> int:
    return keys.shape[0] if keys is not None else (ctx.batch_size or 1)


def _pad_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """Stack rows of different lengths, padding index rows with -1 and state rows with 0 at the end."""
    width = max(r.shape[0] for r in rows)
    fill = -1 if rows[0].dtype == torch.int64 else 0
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), fill)
    for b, r in enumerate(rows):
        out[b, : r.shape[0]] = r
    return out


def _per_sample_info(infos: list[dict]) -> dict:
    """One info dict for the batch from per-sample (batch of one) infos: every key becomes a per-sample list."""
    out = {}
    for key in infos[0]:
        values = [info.get(key) for info in infos]
        out[key] = [v[0] if isinstance(v, (list, tuple, torch.Tensor)) and len(v) == 1 else v for v in values]
    return out
