"""``TwoStage``: one strategy that prunes twice in a prefill, a pre_llm part then an llm part at layer K."""
from __future__ import annotations

from typing import ClassVar

import torch

from .errors import PluginError
from .selection import Context, Selection, pad_rows
from .strategy import Strategy


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
    def _check_more(cls, where: str):
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
        return Selection(keep=pad_rows(kept), hidden=pad_rows(hidden, fill=0) if hidden else None,
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


def _per_sample_info(infos: list[dict]) -> dict:
    """One info dict for the batch from per-sample (batch of one) infos: every key becomes a per-sample list."""
    out = {}
    for key in infos[0]:
        values = [info.get(key) for info in infos]
        out[key] = [v[0] if isinstance(v, (list, tuple, torch.Tensor)) and len(v) == 1 else v for v in values]
    return out
