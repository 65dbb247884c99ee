"""Running decoder layers 0..K-1 once for every run that prunes at layer K of the same prompt batch.

Layers below an llm-stage strategy's prune layer K see the whole, unpruned prompt, so every such
run of one batch computes the same states there (and so does the unpruned model). One run, the
*leader*, computes them under a :class:`PrefixRecorder`, which keeps, at the end of its prefill:

* the KV cache of layers < depth (the deepest K served), as the leader's cache holds it;
* for every K served, what layer K-1 returned (the residual stream entering layer K, before any
  adapter addition the LLM makes between layers, e.g. Qwen3-VL's DeepStack) and the post-RoPE
  queries and the scaling of layer K-1's attention (the engine's probe signals: keys are the
  cache's).

Every other run of the batch starts at layer K under a :class:`PrefixReplay`: during its prefill
each layer i < K runs a replay instead of its own forward (an instance attribute that shadows the
class's ``forward`` for that one call, then removes itself, so decode steps run every layer): it
writes the recorded keys and values of layer i into the run's own cache (``DynamicCache.update``
concatenates, so the recorded tensors are copied, never written to) and returns what layer K-1
returned; at layer K-1 it also hands the recorded query and keys to the run's attention probe, as
the probe would have recorded them. Layers >= K, the engine's hooks on them, and decoding then run
exactly as without sharing. The replay checks the batch shape and that the cache is empty, and
raises rather than continue on anything else.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field


import torch

from ..flops import kv_cache_bytes
from .probe import AttentionProbe, attached


class PrefixMismatch(RuntimeError):
    """A replay met a prefill other than the one recorded."""


@dataclass
class PrefixRecording:
    """What the leader's prefill left at the layers other runs start from.

    shape    (B, L) of the prefill
    keys     per layer i < depth: the cached keys [B, kv heads, L, head dim] (values likewise)
    outputs  K -> what layer K-1 returned
    queries  K -> layer K-1's post-RoPE queries [B, heads, L, head dim]; scaling K -> its softmax scale
    """

    shape: tuple[int, int]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    outputs: dict[int, object] = field(default_factory=dict)
    queries: dict[int, torch.Tensor] = field(default_factory=dict)
    scaling: dict[int, float] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.keys)

    def serves(self, k: int) -> bool:
        return k in self.outputs and k <= self.depth

    def nbytes(self) -> int:
        tensors = [*self.keys, *self.values, *self.queries.values(),
                   *(o for o in self.outputs.values() if isinstance(o, torch.Tensor))]
        return sum(t.numel() * t.element_size() for t in tensors)


def prefix_bytes(shape, element_size: int, batch: int, length: int, depths) -> int:
    """Estimated bytes of a recording serving prune layers ``depths`` for a [batch, length] prompt of an LLM
    of ``shape`` (tokenprune.flops.LLMShape): the KV cache of the layers below the deepest, plus per depth
    the residual stream entering it and its queries."""
    depths = set(depths)
    if not depths:
        return 0
    kv = kv_cache_bytes(shape, [batch * length] * max(depths), element_size)
    per_depth = batch * length * (shape.hidden + shape.heads * shape.head_dim)
    return kv + len(depths) * per_depth * element_size


class PrefixRecorder:
    """Around the leader's generate(): keep what layers < K left for every K in ``depths``.

    ``recording`` is set once the prefill reaches layer max(depths); it stays None when the cache
    is not a plain dynamic one (sliding windows keep other contents than what the layers computed).
    """

    def __init__(self, vlm, depths):
        self.vlm = vlm
        self.depths = sorted(set(depths))
        if not self.depths or self.depths[0] < 1 or self.depths[-1] >= len(vlm.decoder_layers):
            raise ValueError(f"prefix depths {self.depths} must lie in 1..{len(vlm.decoder_layers) - 1}")
        self.recording: PrefixRecording | None = None
        self.declined: str | None = None
        self._outputs: dict[int, object] = {}
        self._probes: dict[int, AttentionProbe] = {}
        self._own: list[AttentionProbe] = []
        self._lent: list[tuple[AttentionProbe, bool]] = []
        self._hooks = []

    def __enter__(self):
        layers = self.vlm.decoder_layers
        try:
            for k in self.depths:
                self._hooks.append(layers[k - 1].register_forward_hook(self._keep_output(k)))
                attn = self.vlm.attention_of(layers[k - 1])
                probe = attached(attn)  # the leader's own probe (its layer K-1), lent for this call
                if probe is not None:
                    self._lent.append((probe, probe.all_queries))
                else:
                    probe = AttentionProbe(attn)
                    self._own.append(probe)
                probe.all_queries = True
                probe.armed = True  # the leader's handle re-arms its own at the prefill; ours record once
                self._probes[k] = probe
            self._hooks.append(layers[self.depths[-1]].register_forward_pre_hook(
                self._finish, with_kwargs=True, prepend=True))
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self._detach()
        return False

    def _detach(self):
        """Hooks off, probes back: once the prefill reached the deepest layer, decode steps pay nothing."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        for probe in self._own:
            probe.remove()
        self._own.clear()
        for probe, all_queries in self._lent:
            probe.all_queries = all_queries
        self._lent.clear()
        self._probes.clear()
        self._outputs.clear()

    def _keep_output(self, k: int):
        def hook(module, args, output):
            self._outputs.setdefault(k, output)  # the first call is the prefill
        return hook

    def _finish(self, module, args, kwargs):
        try:
            self._record(args[0] if args else kwargs["hidden_states"], kwargs)
        finally:
            self._detach()  # torch iterates over a copy of the hooks: removing ours here is safe
        return None

    def _record(self, hidden, kwargs):
        """The recording of this prefill, or why there is none (``declined``)."""
        cache = kwargs.get("past_key_values")
        depth = self.depths[-1]
        length = hidden.shape[1]
        if cache is None or len(getattr(cache, "layers", ())) < depth:
            self.declined = "the prefill keeps no per-layer cache"
            return
        from transformers.cache_utils import DynamicLayer

        layers = cache.layers[:depth]
        if any(type(layer) is not DynamicLayer or layer.keys is None or layer.keys.shape[-2] != length
               for layer in layers):
            self.declined = "the cache is not a plain DynamicCache over the whole prompt"
            return
        if any(p.queries is None for p in self._probes.values()):
            self.declined = "layer K-1's attention did not report its queries"
            return
        self.recording = PrefixRecording(
            shape=(hidden.shape[0], length), keys=[layer.keys for layer in layers],
            values=[layer.values for layer in layers], outputs=dict(self._outputs),
            queries={k: p.queries for k, p in self._probes.items()},
            scaling={k: p.scaling for k, p in self._probes.items()})


class PrefixReplay:
    """Around one run's generate(): its prefill starts at layer ``k`` from ``recording``.

    ``replayed`` is True once layer k-1's replay ran.
    """

    def __init__(self, vlm, recording: PrefixRecording, k: int):
        if not recording.serves(k):
            raise ValueError(f"the recording serves prune layers {sorted(recording.outputs)}, not {k}")
        self.vlm = vlm
        self.recording = recording
        self.k = k
        self.replayed = False
        self._shadowed: dict[int, torch.nn.Module] = {}

    def __enter__(self):
        layers = self.vlm.decoder_layers
        try:
            for i in range(self.k):
                if "forward" in layers[i].__dict__:
                    raise RuntimeError(f"decoder layer {i} already has its forward replaced")
                layers[i].forward = functools.wraps(layers[i].forward)(self._replay(i))
                self._shadowed[i] = layers[i]
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for i in list(self._shadowed):
            self._restore(i)
        return False

    def _restore(self, i: int):
        layer = self._shadowed.pop(i, None)
        if layer is not None:
            layer.__dict__.pop("forward", None)

    def _replay(self, i: int):
        rec = self.recording

        def forward(*args, **kwargs):
            self._restore(i)  # one call: decode steps run the layer itself
            hidden = args[0] if args else kwargs.get("hidden_states")
            cache = kwargs.get("past_key_values")
            if hidden is None or tuple(hidden.shape[:2]) != rec.shape:
                raise PrefixMismatch(f"decoder layer {i}: the recorded prefix is for a [{rec.shape[0]}, "
                                     f"{rec.shape[1]}] prompt, this prefill is "
                                     f"{None if hidden is None else list(hidden.shape[:2])}")
            if cache is None or (i < len(getattr(cache, "layers", ())) and cache.get_seq_length(i) != 0):
                raise PrefixMismatch(f"decoder layer {i}: a replayed prefill needs an empty cache")
            cache.update(rec.keys[i], rec.values[i], i)
            if i == self.k - 1:
                self._feed_probe(i)
                self.replayed = True
            return rec.outputs[self.k]
        return forward

    def _feed_probe(self, i: int):
        """What the run's probe on layer K-1 would have recorded, had that attention run."""
        probe = attached(self.vlm.attention_of(self.vlm.decoder_layers[i]))
        if probe is None or not probe.armed:
            return
        if self.k not in self.recording.queries:
            raise PrefixMismatch(f"layer {i}'s queries were not recorded")
        probe.record(self.recording.queries[self.k], self.recording.keys[i], self.recording.scaling[self.k])
