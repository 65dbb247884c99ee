"""What a strategy receives besides keys/attn/coords (Context) and what it returns (Selection)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

#: Signals a strategy may list in ``requires``; the engine computes only those.
SIGNALS = (
    "keys",  # [B, N, Dk] pre_llm: projector outputs; llm: post-RoPE keys of layer K-1
    "attn",  # [B, N] last prompt token's attention at layer K-1, mean over heads
    "hidden",  # ctx.hidden [B, N, D] residual stream entering layer K (pre_llm: projector outputs)
    "text_keys",  # ctx.text_keys [B, T, Dk] keys of the tokens after the image span
    "text_hidden",  # ctx.text_hidden [B, T, D] hidden states of the tokens after the image span
    "final_norm",  # ctx.final_norm callable: the LLM's final norm
    "text_embeds",  # ctx.text_embeds [B, M, C] instruction embeddings in the vision-language space
    "image_embeds",  # ctx.image_embeds [B, N, C] visual tokens in that same space (CDPruner)
)


@dataclass
class Context:
    """Everything a strategy may ask for beyond keys, attn and coords.

    Signals not listed in the strategy's ``requires`` are left as None by the
    engine. ``generator`` is one ``torch.Generator`` per sample (a sequence of
    B), or a single one shared by the batch; use :meth:`rng`.
    """

    hidden: torch.Tensor | None = None
    text_keys: torch.Tensor | None = None
    text_hidden: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None  # [B, T] bool, True = real token (batches with ragged text)
    final_norm: Callable[[torch.Tensor], torch.Tensor] | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    grid: tuple[int, int, int] | None = None  # (T, H, W) of the LLM-side visual token grid
    generator: torch.Generator | Sequence[torch.Generator] | None = None
    layer: int | None = None
    batch_size: int | None = None  # B, for strategies that read no batched signal
    extras: dict[str, Any] = field(default_factory=dict)

    def rng(self, b: int = 0) -> torch.Generator:
        """The generator for sample ``b`` (a fixed seed-0 generator when none was given)."""
        gen = self.generator
        if gen is None:
            return torch.Generator().manual_seed(0)
        if isinstance(gen, torch.Generator):
            return gen
        return gen[b]


@dataclass
class Selection:
    """A strategy's answer for a batch.

    keep    [B, R] int64, ascending indices into the N visual tokens. R equals the
            budget unless the strategy runs in a faithful mode that keeps a
            different count; rows with fewer kept tokens are padded with -1 at the end.
    hidden  [B, R, D] optional replacement states for the kept tokens (merging methods).
    info    anything worth logging: selection order, realised counts ("counts" is
            always filled in by the contract check), thresholds, ...
    """

    keep: torch.Tensor
    hidden: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> list[int]:
        """Realised kept count per sample (padding excluded)."""
        return (self.keep >= 0).sum(dim=1).tolist()


def pad_rows(rows: Sequence[torch.Tensor], fill: float = -1) -> torch.Tensor:
    """Stack rows [n_i, ...] of different lengths into [len(rows), max n_i, ...], right-padded with ``fill``
    (-1 for kept-index rows, as ``Selection.keep`` pads them)."""
    width = max(int(r.shape[0]) for r in rows)
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), fill)
    for b, row in enumerate(rows):
        out[b, : row.shape[0]] = row
    return out
