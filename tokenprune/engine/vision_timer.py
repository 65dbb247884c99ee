"""Seconds the vision tower runs, for the records' ``vision_s``.

transformers 5.23's generate() may run the vision tower before the prefill forward (mm_encoder_outputs),
so time is accumulated whenever the tower runs and charged to the next prefill; the handle resets it
when a VLM forward ends.
"""
from __future__ import annotations

import time

from ..timing import synchronize


class VisionTimer:
    """Hooks on a VLM's vision modules that add each run's (device-synchronised) seconds to ``seconds``."""

    def __init__(self, vlm):
        self.vlm = vlm
        self.seconds = 0.0
        self._t0 = None

    def attach(self) -> list:
        """Register the hooks; returns their removable handles."""
        hooks = []
        for module in self.vlm.vision_modules:
            hooks.append(module.register_forward_pre_hook(self._start))
            hooks.append(module.register_forward_hook(self._stop))
        return hooks

    def _start(self, module, args):
        synchronize(self.vlm.device)
        self._t0 = time.perf_counter()

    def _stop(self, module, args, output):
        t0, self._t0 = self._t0, None
        if t0 is not None:
            synchronize(self.vlm.device)
            self.seconds += time.perf_counter() - t0
