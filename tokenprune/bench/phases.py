"""Where a run's time goes: input building, the vision tower, decoder layers at prefill (below and from a
split layer) and while decoding, timed with removable hooks on one loaded model.

Each phase is wall time between a module's pre- and post-hook (device-synchronised), summed over
calls; what no phase covers (generate()'s own work, the engine's selection, scoring, writing
records) is the rest of the run. A layer whose forward is replayed (sample-major execution) is
timed as what it costs then.
"""
from __future__ import annotations

import time

from ..timing import synchronize

PHASES = ("inputs", "vision", "prefill_below", "prefill_from", "decode")


class PhaseClock:
    """Seconds per phase on ``vlm`` while attached; ``split``: the first layer counted in ``prefill_from``."""

    def __init__(self, vlm, split: int):
        self.vlm = vlm
        self.split = split
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._hooks = []
        self._started: dict[int, tuple[str, float]] = {}

    def __enter__(self):
        vlm = self.vlm
        for module in vlm.vision_modules:
            self._time(module, lambda args, kwargs: "vision")
        for i, layer in enumerate(vlm.decoder_layers):
            self._time(layer, self._layer_phase(i))
        build = vlm.build_inputs  # a bound method; shadowed by a timed one on this instance

        def timed_build(samples):
            start = time.perf_counter()
            try:
                return build(samples)
            finally:
                self.seconds["inputs"] += time.perf_counter() - start
        vlm.build_inputs = timed_build
        return self

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self.vlm.__dict__.pop("build_inputs", None)
        return False

    def _layer_phase(self, index: int):
        def phase(args, kwargs):
            hidden = args[0] if args else kwargs.get("hidden_states")
            if hidden is not None and hidden.shape[1] == 1:
                return "decode"
            return "prefill_below" if index < self.split else "prefill_from"
        return phase

    def _time(self, module, phase):
        def pre(mod, args, kwargs):
            synchronize(self.vlm.device)
            self._started[id(mod)] = (phase(args, kwargs), time.perf_counter())

        def post(mod, args, kwargs, output):
            started = self._started.pop(id(mod), None)
            if started is not None:
                synchronize(self.vlm.device)
                self.seconds[started[0]] += time.perf_counter() - started[1]

        self._hooks.append(module.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
        self._hooks.append(module.register_forward_hook(post, with_kwargs=True, always_call=True))
