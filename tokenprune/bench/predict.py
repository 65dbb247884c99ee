"""What a pruned prefill should cost, to set beside what `tokenprune bench e2e` measures.

Like for like: the measured prefill runs the vision tower, the projector and the LLM, so

* FLOPs:      flops_speedup = (V + F) / (V' + F'), V the vision tower and projector FLOPs
              (flops.VisionShape; V' differs from V only for input-stage strategies, which shrink the
              image), F and F' the LLM prefill FLOPs unpruned and pruned (llm_flops_speedup = F / F').
* with select: expected_speedup = vanilla_ms / (vanilla_ms / flops_speedup + select_ms).
* no engine:  the same model, measured, on the token counts the case's LLM layers see, with no engine
              attached. With the vanilla prefill's time split into the LLM's share l and the vision
              tower's share v (timed inside the vanilla runs) and r(n) = T(n) / T(full), the LLM alone
              on n prompt tokens over the same on all of them (timed back to back):
              no_engine_speedup = 1 / (1 - l - v + v * vision_ms' / vision_ms + l * sum_i r(n_i) / L),
              n_i the tokens layer i sees. It takes the machine's own throughput at each length (short
              sequences run fewer FLOPs per second) out of the comparison, leaving the engine's own cost
              (plus selection). All of it is ratios taken within rounds, so drifts of load cancel.
"""
from __future__ import annotations

from .. import flops

LEGEND = """\
speedup: median over rounds of (paired vanilla prefill / this prefill). flops_speedup: predicted
whole-prefill speed-up (V + F) / (V' + F'), V = vision tower + projector FLOPs, F = LLM prefill FLOPs
(flops_scope says whether V is counted; llm_flops_speedup = F / F'). expected_speedup =
vanilla_ms / (vanilla_ms / flops_speedup + select_ms): the prediction with the strategy's own selection
time. no_engine_speedup: the same model measured without the engine on the token counts this case's
LLM layers see (the LLM alone timed at each length against the full one, weighted by the LLM's share of
the vanilla prefill; vision_ms measured). vs_X = speedup / X_speedup.
layer: where the LLM first sees fewer tokens (0 = before it); kept: tokens kept from there on.
"""


class Prediction:
    """References for the cases of one bench sample (``total`` prompt tokens, ``visual`` of them visual)."""

    def __init__(self, vlm, total: int, visual: int):
        config = vlm.model.config
        self.llm = flops.LLMShape.from_config(config)
        self.vision = flops.VisionShape.from_config(config)
        self.merge = self.vision.merge if self.vision else 1
        self.total = total
        self.full_llm = flops.prefill_flops(self.llm, self._alive(total, visual, visual, None, None))
        self.full_vision = self._vision(visual)

    def _vision(self, visual: int) -> int:
        return self.vision.flops([visual * self.merge]) if self.vision else 0

    def _alive(self, total, visual, kept, layer, first_kept) -> list[int]:
        return flops.alive_per_layer(self.llm, total, visual, kept, layer, first_kept)

    @property
    def scope(self) -> str:
        return "vision+llm" if self.vision else "llm"

    @property
    def vision_share(self) -> float:
        return self.full_vision / (self.full_vision + self.full_llm)

    def alive(self, case) -> list[int]:
        """Tokens each LLM layer processes in a case's prefill, from the counts its first record holds."""
        rec = case.record or {}
        stage1 = (rec.get("info") or {}).get("stage1_count")
        return self._alive(case.total, case.visual, rec.get("count", case.budget), case.layer, stage1)

    def references(self, case, vanilla: dict, measured: dict, shares: dict, alone: dict) -> dict:
        """flops_speedup, llm_flops_speedup, expected_speedup and no_engine_speedup of a case (None where
        a measurement is missing). ``vanilla`` / ``measured``: median timings (ms) of vanilla and the case;
        ``shares``: the vision tower's and the LLM's shares of the vanilla prefill; ``alone``: r(n) per
        token count."""
        alive = self.alive(case)
        llm = flops.prefill_flops(self.llm, alive)
        predicted = (self.full_vision + self.full_llm) / (self._vision(case.visual) + llm)
        out = {"flops_speedup": predicted, "llm_flops_speedup": self.full_llm / llm, "expected_speedup": None,
               "no_engine_speedup": None}
        base = vanilla["prefill_ms"]
        if "select_ms" in measured:
            out["expected_speedup"] = base / (base / predicted + measured["select_ms"])
        if all(n in alone for n in alive):
            v, lm = shares["vision"], shares["llm"]
            vision = v * measured["vision_ms"] / vanilla["vision_ms"] if case.strategy.stage == "input" else v
            out["no_engine_speedup"] = 1 / (1 - lm - v + vision + lm * sum(alone[n] for n in alive) / len(alive))
        return out
