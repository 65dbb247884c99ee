"""What the handle remembers between hook calls: one :class:`Pass` per prefill, one :class:`Forward` per call."""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .layout import Layout
from .positions import Renumbering
from .prefill import Outcome, Prefill
from .transform import Memo


@dataclass(eq=False)
class Pass:
    """One prefill and the decode steps that follow it.

    prefill       the prompt batch being pruned; for a two-stage strategy, after the first point, the
                  sequence the LLM receives (stages.survivors)
    phase         "prefill" until the VLM's prefill forward returns, then "decode"
    cache         weak reference to the KV cache this prefill fills
    first         two-stage: the pre_llm point's outcome (recorded with the second point's)
    outcome       the last prune point's outcome: the layout of layers >= K, or of the LLM's input
    lm_layout     the layout of the LLM's input (pre_llm pruning), or None
    embeds        the LLM's input embeddings at prefill (the ``embeds`` source at layer K)
    lm_positions  the LLM-level position ids of the prefill (None when the model passed none)
    renumbering   positions="reindex": the kept tokens' plain positions and decode shift
    adapter       the adapter's own scratch for this pass, made by its ``new_stash()`` (``stash=`` in
                  prune_lm_kwargs and after_layer)
    """

    prefill: Prefill
    phase: str = "prefill"
    cache: Callable | None = None
    first: Outcome | None = None
    outcome: Outcome | None = None
    lm_layout: Layout | None = None
    embeds: torch.Tensor | None = None
    lm_positions: torch.Tensor | None = None
    renumbering: Renumbering | None = None
    adapter: Any = None

    def owns(self, cache) -> bool:
        return self.cache is not None and cache is not None and self.cache() is cache


@dataclass(eq=False, slots=True)
class Forward:
    """One call of the VLM (a prefill or a decode step).

    memo          rewritten keyword arguments shared by every layer >= K (transform.Memo)
    seen          decode: tokens already in the cache when the LLM was called
    lm_positions  decode: the position ids the model passed to the LLM (before rewriting), or None
    """

    memo: Memo = field(default_factory=Memo)
    seen: int = 0
    lm_positions: torch.Tensor | None = None


def ref(obj):
    """A weak reference to ``obj`` (None stays None)."""
    if obj is None:
        return None
    try:
        return weakref.ref(obj)
    except TypeError:  # pragma: no cover - caches are ordinary objects
        return lambda: obj


def seen(cache) -> int:
    """Tokens a KV cache already holds (0 for none)."""
    return 0 if cache is None else int(cache.get_seq_length())
