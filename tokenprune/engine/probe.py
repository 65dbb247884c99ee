"""Reading layer K-1's post-RoPE queries and keys without changing the attention kernel.

Every transformers 5.x attention module calls
``ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager)``
with its final (normed, rotated, cache-updated) query and key states. The probe
gives that one module a shallow copy of its config whose implementation name
points at a registered pass-through function: it records what the strategy
needs and calls the model's original kernel (SDPA stays SDPA). Nothing else in
the model sees the copy, and removing the probe restores the original config.
"""
from __future__ import annotations

import copy
import sys
import weakref

import torch
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

PROBE_IMPL = "tokenprune_probe"
_probes: "weakref.WeakKeyDictionary[torch.nn.Module, AttentionProbe]" = weakref.WeakKeyDictionary()


def _probe_attention(module, query, key, value, attention_mask, **kwargs):
    probe = _probes.get(module)
    if probe is None:  # pragma: no cover - a stale config copy outliving its probe
        raise RuntimeError("tokenprune attention probe called on a module it is not attached to")
    if probe.armed:
        probe.record(query, key, kwargs.get("scaling"))
    return probe.kernel(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(PROBE_IMPL, _probe_attention)


def attached(attn_module: torch.nn.Module) -> "AttentionProbe | None":
    """The probe ``attn_module`` carries, if any."""
    return _probes.get(attn_module)


class AttentionProbe:
    """Records query/key states of one attention module while ``armed``.

    ``rows``: [B] query positions to keep (the last prompt token per sample), or None.
    ``all_queries``: also keep every query (for criteria averaging over all prompt queries).
    """

    def __init__(self, attn_module: torch.nn.Module):
        if attn_module in _probes:
            raise RuntimeError("this attention module already carries a tokenprune probe")
        self.module = attn_module
        self.original_config = attn_module.config
        impl = self.original_config._attn_implementation or "eager"
        eager = getattr(sys.modules[type(attn_module).__module__], "eager_attention_forward", None)
        if impl == "eager" and eager is None:
            raise RuntimeError(f"{type(attn_module).__name__} has no eager_attention_forward to fall back to")
        self.kernel = ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager)
        probe_config = copy.copy(self.original_config)
        probe_config._attn_implementation_internal = PROBE_IMPL
        attn_module.config = probe_config
        _probes[attn_module] = self
        self.armed = False
        self.rows = None
        self.all_queries = False
        self.clear()

    def clear(self):
        self.keys = None  # [B, n_kv, L, hd]
        self.query_rows = None  # [B, H, hd]
        self.queries = None  # [B, H, L, hd]
        self.scaling = None

    def record(self, query: torch.Tensor, key: torch.Tensor, scaling):
        self.keys = key
        self.scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
        if self.rows is not None:
            b = torch.arange(query.shape[0], device=query.device)
            self.query_rows = query[b, :, self.rows.to(query.device)]
        if self.all_queries:
            self.queries = query
        self.armed = False  # one prefill, one record

    def remove(self):
        if _probes.get(self.module) is self:
            self.module.config = self.original_config
            del _probes[self.module]
