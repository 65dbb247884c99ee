"""The strategy contract: one class per pruning method, one ``select`` method.

A strategy subclass declares ``name``, ``stage``, ``layer``, ``requires`` and
``params`` and implements ``select(keys, attn, coords, budget, ctx)``. The
base class wraps that method so every call checks its inputs (shapes, budget,
NaN/inf) and the returned Selection (count, uniqueness, order, range, shape),
and raises an error that names the strategy. ``tokenprune.two_stage.TwoStage``
chains a pre_llm and an llm strategy into one that prunes at both points.
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
        cls._check_more(where)

    @classmethod
    def _check_more(cls, where: str):
        """Further declaration checks of a kind of strategy (tokenprune.two_stage.TwoStage checks its parts)."""

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
            "stages": [f"{p.stage}: {p.name}" for p in getattr(cls, "part_classes", ())] or None,
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
