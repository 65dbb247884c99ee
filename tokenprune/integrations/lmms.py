"""Any tokenprune model + strategy as an lmms-eval model (the ``tokenprune[lmms]`` extra).

    pip install "tokenprune[lmms]"
    lmms-eval --model tokenprune \\
        --model_args adapter=llava,checkpoint=llava-hf/llava-1.5-7b-hf,strategy=fastv,budget=64 \\
        --tasks pope,mme --batch_size 1

lmms-eval finds the model through the ``lmms_eval.models`` entry point, which
points at :func:`manifests`. lmms-eval is imported only when lmms-eval itself
asks for the class, so importing this module never needs it. Run one lmms-eval
process per configuration: some lmms-eval scorers keep state between runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

MODEL_ID = "tokenprune"
CLASS_PATH = f"{__name__}.TokenpruneLMMS"
_NO_PRUNING = {None, "", "none", "vanilla"}


def manifests():
    """The ``lmms_eval.models`` entry point: how lmms-eval resolves ``--model tokenprune``."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)]


def _coerce(value: Any) -> Any:
    """``--model_args`` values arrive as strings (or already parsed): ints, floats, bools, None."""
    if not isinstance(value, str):
        return value
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def cut_at_stops(text: str, until) -> str:
    """lmms-eval's ``until``: the text before the first stop string."""
    stops = [until] if isinstance(until, str) else list(until or [])
    for stop in stops:
        if stop:
            text = text.split(stop)[0]
    return text


class PrunedGenerator:
    """The lmms-eval-free half of the bridge: loads the model, keeps the
    strategy attached, turns (prompt, visuals) into text."""

    def __init__(self, adapter: str, checkpoint: str, strategy: str | None = None, budget: int | None = None,
                 keep_ratio: float | None = None, dtype: str = "float16", attn_implementation: str = "sdpa",
                 device: str = "cuda", num_frames: int = 32, seed: int = 0, positions: str = "original",
                 **strategy_params):
        import tokenprune
        from tokenprune import models
        from tokenprune.runner.execute import resolve_checkpoint

        self.num_frames = int(num_frames)
        # zoo:<name> (a bundled checkpoint) works here as in a grid
        self.vlm = models.load(adapter, resolve_checkpoint(checkpoint), dtype=dtype,
                               attn_implementation=attn_implementation, device=device)
        self.strategy = strategy
        self.handle = None
        if strategy not in _NO_PRUNING:
            params = {k: _coerce(v) for k, v in strategy_params.items()}
            self.handle = tokenprune.apply(self.vlm, strategy, _coerce(budget), keep_ratio=_coerce(keep_ratio),
                                           positions=positions, seed=int(seed), **params)
        elif strategy_params:
            raise TypeError(f"tokenprune lmms-eval model: unknown model_args {', '.join(sorted(strategy_params))}")

    def media(self, visuals: list) -> tuple[list, list | None]:
        """(images, frames): PIL images pass through; a video path becomes uniformly sampled frames."""
        from tokenprune.benchmarks._video import load_frames

        images, frames = [], None
        for visual in visuals or []:
            if hasattr(visual, "convert"):
                images.append(visual.convert("RGB"))
            elif isinstance(visual, (str, Path)):
                frames = (frames or []) + load_frames("lmms-eval", Path(visual), self.num_frames)[0]
            else:
                raise TypeError(f"tokenprune lmms-eval model: unsupported visual {type(visual).__name__}")
        return images, frames

    def generate(self, prompt: str, visuals: list, gen_kwargs: dict, sample_id: str = "0") -> str:
        from tokenprune.benchmarks.base import Sample

        images, frames = self.media(visuals)
        sample = Sample(id=str(sample_id), prompt=prompt, references=None, images=images, frames=frames)
        inputs = self.vlm.build_inputs([sample])
        # Greedy decoding, as every task we bridge asks (temperature 0, no sampling).
        result = self.vlm.generate(inputs, max_new_tokens=int(gen_kwargs.get("max_new_tokens", 1024)))
        if self.handle is not None:
            self.handle.clear()  # per-sample records are not needed here; keep memory flat
        return cut_at_stops(result.texts[0], gen_kwargs.get("until"))


def _build_class():
    from lmms_eval.api.model import lmms

    class TokenpruneLMMS(lmms):
        """lmms-eval "simple" model: a tokenprune adapter with a pruning strategy attached."""

        is_simple = True

        def __init__(self, adapter: str = "llava", checkpoint: str = "llava-hf/llava-1.5-7b-hf",
                     batch_size: int | str = 1, **kwargs):
            super().__init__()
            if int(batch_size) != 1:
                raise ValueError("tokenprune lmms-eval model: use --batch_size 1")
            self.generator = PrunedGenerator(adapter, checkpoint, **kwargs)

        def generate_until(self, requests) -> list[str]:
            outputs = []
            for request in requests:
                context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                visuals = doc_to_visual(self.task_dict[task][split][doc_id])
                outputs.append(self.generator.generate(context, visuals, dict(gen_kwargs or {}), f"{task}:{doc_id}"))
            return outputs

        def loglikelihood(self, requests):
            raise NotImplementedError("tokenprune lmms-eval model: only generation tasks are supported")

        def generate_until_multi_round(self, requests):
            raise NotImplementedError("tokenprune lmms-eval model: multi-round generation is not supported")

    return TokenpruneLMMS


def __getattr__(name: str):
    # lmms-eval imports this module and reads the class by name; it is built on
    # first access so the module imports without lmms-eval installed.
    if name == "TokenpruneLMMS":
        cls = _build_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
