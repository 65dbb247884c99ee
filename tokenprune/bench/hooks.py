"""`tokenprune bench hooks`: what the engine's hooks cost, call by call, on a real model.

Timed from outside the engine: a forward pre-hook put in front of the engine's hooks on a module
and one put after them bracket exactly the engine's work on that call (the same for the
VLM's forward hook). Three views:

* in place: CPU time (thread clock: other processes' load does not count) and torch operator
  count of the engine's hooks per prefill and per decode step of real generate() calls, by
  module, the strategy's own select() time taken out;
* hot loop: one hook called over and over with the arguments a real call gave it (a decoder
  layer >= K at prefill, where its rewrite is already memoised, and while decoding), in
  microseconds per call;
* torch's own price for a module having hooks at all (a pre-hook that returns None).
"""
from __future__ import annotations

import functools
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..engine import apply
from ..engine.state import seen

clock = time.thread_time

LEGEND = """\
us: microseconds of CPU time (this thread's clock, so other processes' load does not count).
in place: the engine's hooks during real generate() calls (one sample), per prefill (the strategy's
select(), its contract checks included, taken out and shown apart) and per decode step; torch_ops: torch
operators they dispatch. hot loop: one hook called over and over with the arguments a real call gave
it, and what torch itself adds to a call of a module that has a pre-hook.
"""


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


class Brackets:
    """Hooks before and after the engine's on every module it hooks: its CPU time and operators per call,
    by (module, "prefill" | "decode")."""

    def __init__(self, handle, count_ops: bool):
        self.handle, self.count_ops = handle, count_ops  # counting slows the operators: a separate pass
        self.spent: dict[tuple[str, str], float] = {}
        self.ops: dict[tuple[str, str], int] = {}
        self.calls: dict[tuple[str, str], int] = {}
        self._open = None
        vlm = handle.vlm
        where = [("vlm", vlm.vlm_module), ("llm", vlm.language_model)]
        where += [(f"layer {i}", layer) for i, layer in enumerate(vlm.decoder_layers) if _engine_hooks(layer)]
        self._hooks = []
        for name, module in where:
            self._hooks.append(module.register_forward_pre_hook(self._start(name), prepend=True, with_kwargs=True))
            self._hooks.append(module.register_forward_pre_hook(self._stop, with_kwargs=True))
        self._hooks.append(vlm.vlm_module.register_forward_hook(self._start("vlm end"), prepend=True))
        self._hooks.append(vlm.vlm_module.register_forward_hook(self._stop))

    def _start(self, name):
        def hook(module, args, kwargs_or_output):
            if name == "vlm":  # a call starts: a prefill when its cache is empty
                prefill = seen(kwargs_or_output.get("past_key_values")) == 0
            else:
                p = self.handle._pass
                prefill = p is not None and p.phase == "prefill"
            mode = _Ops() if self.count_ops else None
            if mode is not None:
                mode.__enter__()
            self._open = ((name, "prefill" if prefill else "decode"), mode, clock())
        return hook

    def _stop(self, *_):
        if self._open is None:
            return
        key, mode, t0 = self._open
        spent = clock() - t0
        self._open = None
        self.calls[key] = self.calls.get(key, 0) + 1
        if mode is not None:
            mode.__exit__(None, None, None)
            self.ops[key] = self.ops.get(key, 0) + mode.count
        else:
            self.spent[key] = self.spent.get(key, 0.0) + spent

    @functools.cached_property
    def empty_us(self) -> float:
        """The empty bracket, measured once: prefill and decode figures take out the same baseline."""
        return _empty_bracket()

    def per_call(self, phase: str, calls: int) -> float:
        """Microseconds (or, counting, torch operators) of the engine's hooks per prefill or decode step;
        the brackets' own cost (a clock read, a hook call; measured empty) is taken out."""
        if self.count_ops:
            return sum(v for k, v in self.ops.items() if k[1] == phase) / calls
        return sum(v * 1e6 - self.empty_us * self.calls[k] for k, v in self.spent.items() if k[1] == phase) / calls

    def remove(self):
        for h in self._hooks:
            h.remove()


def _empty_bracket() -> float:
    """Microseconds a bracket measures with nothing between its two hooks."""
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x

    m, x = Plain(), torch.zeros(1)
    spent = []
    m.register_forward_pre_hook(lambda mod, args: spent.append(clock()), prepend=True)
    m.register_forward_pre_hook(lambda mod, args: spent.append(clock()))
    _hot(lambda: m(x), n=1000)
    return statistics.median(b - a for a, b in zip(spent[::2], spent[1::2])) * 1e6


def _engine_hooks(module) -> list:
    return [h for h in module._forward_pre_hooks.values() if getattr(h, "__module__", "").startswith("tokenprune.")]


def _hot(fn, n: int = 3000) -> float:
    """Microseconds per call of ``fn`` in a hot loop (median of five batches)."""
    for _ in range(100):
        fn()
    out = []
    for _ in range(5):
        t0 = clock()
        for _ in range(n):
            fn()
        out.append((clock() - t0) / n * 1e6)
    return statistics.median(out)


def _dispatch_price() -> float:
    """Microseconds torch adds to a module call when the module has a forward pre-hook (returning None)."""
    class Plain(torch.nn.Module):
        def forward(self, x, mask=None):
            return x

    m, x = Plain(), torch.zeros(1)
    bare = _hot(lambda: m(x, mask=None))
    m.register_forward_pre_hook(lambda mod, args, kwargs: None, with_kwargs=True)
    return _hot(lambda: m(x, mask=None)) - bare


class _SelectClock:
    """Thread-clock time of the strategies' select() calls (the engine's prune points), to take out."""

    def __init__(self, handle):
        self.seconds = 0.0
        self._wrapped = [point.strategy for point in (handle._before_lm, handle._at_layer) if point is not None]
        for strategy in self._wrapped:
            strategy.select = self._timed(strategy.select)  # an instance attribute shadows the method

    def _timed(self, select):
        def timed(*args, **kwargs):
            t0 = clock()
            try:
                return select(*args, **kwargs)
            finally:
                self.seconds += clock() - t0
        return timed

    def remove(self):
        for strategy in self._wrapped:
            del strategy.select


def run(vlm, strategy, budget: int, inputs, rounds: int = 20, new_tokens: int = 8) -> list[dict]:
    """Rows: in-place costs per prefill and per decode step, hot-loop costs of one layer hook."""
    rows = []
    with apply(vlm, strategy, budget=budget) as handle:
        vlm.generate(inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # warm-up
        measured = {}
        for count_ops in (False, True):
            brackets, select = Brackets(handle, count_ops), _SelectClock(handle)
            try:
                for _ in range(rounds):
                    vlm.generate(inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
            finally:
                brackets.remove()
                select.remove()
            measured[count_ops] = brackets
            if not count_ops:
                select_us = select.seconds / rounds * 1e6
        timed, counted = measured[False], measured[True]
        steps = rounds * (new_tokens - 1)
        rows.append({"view": "in place", "what": "engine hooks per prefill, select() taken out",
                     "us": timed.per_call("prefill", rounds) - select_us, "torch_ops": counted.per_call("prefill", rounds)})
        rows.append({"view": "in place", "what": "the strategy's select() per prefill", "us": select_us})
        rows.append({"view": "in place", "what": "engine hooks per decode step", "us": timed.per_call("decode", steps),
                     "torch_ops": counted.per_call("decode", steps)})
        rows.extend(_hot_rows(vlm, handle, inputs))
    rows.append({"view": "hot loop", "what": "torch's price for a module with a pre-hook", "us": _dispatch_price()})
    return rows


def _hot_rows(vlm, handle, inputs) -> list[dict]:
    """The engine's hook on the layer after K, called with the arguments real calls gave it."""
    layers = vlm.decoder_layers
    if handle._at_layer is None or handle.layer + 1 >= len(layers):
        return []
    index = handle.layer + 1
    seen = {}

    def spy(module, args, kwargs):
        p = handle._pass
        seen.setdefault(p.phase if p is not None else None, (module, args, dict(kwargs)))

    engine_hook = _engine_hooks(layers[index])[0]
    probe = layers[index].register_forward_pre_hook(spy, with_kwargs=True, prepend=True)
    try:
        vlm.generate(inputs, max_new_tokens=3, min_new_tokens=3)
    finally:
        probe.remove()
    rows = []
    p = handle._pass
    for phase in ("prefill", "decode"):
        if phase not in seen:
            continue
        module, args, kwargs = seen[phase]
        p.phase = phase  # the pass as it was at that call; the memo of the last call is reused (a hit)
        us = _hot(lambda: engine_hook(module, args, dict(kwargs)))
        rows.append({"view": "hot loop", "what": f"layer {index} hook at {phase}", "us": us})
    p.phase = "decode"
    return rows
