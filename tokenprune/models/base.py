"""The runner side of a model adapter: loading, input building and timed generation.

:class:`VLM` extends the engine side (:class:`tokenprune.models.contract.EngineAdapter`: where the
LLM, its layers and the visual tokens are) with what the runner and the benchmarks use: loading
with ``from_pretrained``, building left-padded inputs from benchmark samples with the model's own
prompt template (``build_inputs``), counting visual tokens, and timed generation. docs/adapters.md
describes both sides.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import transformers
from transformers.generation.streamers import BaseStreamer

from ..timing import synchronize
from .contract import EngineAdapter

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class GenerationResult:
    """Decoded new text per sample, new-token counts, timings and the raw sequences."""

    texts: list[str]
    new_tokens: list[int]
    timings: dict
    sequences: torch.Tensor | None = field(default=None, repr=False)


class _FirstToken(BaseStreamer):
    """Notes the time generate() hands over its first new token (time to first token)."""

    def __init__(self, device):
        self.device = device
        self.calls = 0
        self.first = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:  # call 1 is the prompt itself
            synchronize(self.device)
            self.first = time.perf_counter()

    def end(self):
        pass


def resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


class VLM(EngineAdapter):
    """A loaded model of one family: the engine side (EngineAdapter) plus loading, inputs and generation.

    Subclasses set ``name`` and ``model_classes`` and implement ``visuals`` and ``build_inputs``.
    Attributes: ``model`` (the transformers model), ``processor``, ``name`` (adapter), ``checkpoint``,
    ``device``, ``dtype``.
    """

    model_classes: ClassVar[tuple[str, ...]] = ()  # transformers class names, most specific first

    def __init__(self, model, processor=None, checkpoint: str | None = None):
        super().__init__(model, checkpoint)
        self.processor = processor

    @property
    def input_builder(self) -> str:
        """Who built this model's inputs: "official" (its transformers processor, what the base
        ``load_processor`` loads) or "tokenprune" (a builder of tokenprune.models, where the official
        processor cannot run); see tokenprune.models.official_inputs."""
        return getattr(self.processor, "input_builder", "official")

    # ------------------------------------------------------------------ loading
    @classmethod
    def matches(cls, model, exact: bool = True) -> bool:
        """Whether this adapter drives ``model`` (its class, or with ``exact=False`` a subclass of it)."""
        names = [type(model).__name__] if exact else [c.__name__ for c in type(model).__mro__]
        return any(n in cls.model_classes for n in names)

    @classmethod
    def model_class(cls):
        return getattr(transformers, cls.model_classes[0])

    @classmethod
    def from_pretrained(cls, checkpoint: str, *, dtype="float32", attn_implementation: str = "sdpa",
                        device: str = "cpu", **model_kwargs) -> "VLM":
        model = cls.model_class().from_pretrained(
            checkpoint, dtype=resolve_dtype(dtype), attn_implementation=attn_implementation, **model_kwargs)
        model.to(device).eval()
        return cls(model, cls.load_processor(checkpoint), checkpoint)

    @classmethod
    def max_visual_tokens(cls, config, preprocessor: dict) -> tuple[int, bool] | None:
        """What one image becomes, from the checkpoint's configs alone (the run's pre-flight reads no weights):
        (the most visual tokens, True when every image becomes exactly that many), or None when this
        adapter cannot tell. ``preprocessor``: the checkpoint's preprocessor_config.json ({} when absent)."""
        return None

    @classmethod
    def load_processor(cls, checkpoint: str):
        processor = transformers.AutoProcessor.from_pretrained(checkpoint)
        getattr(processor, "tokenizer", processor).padding_side = "left"
        return processor

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def visual_token_ids(self) -> tuple[int, ...]:
        """The placeholder token ids of images and video in the prompt (from the model config)."""
        cfg = self.model.config
        ids = [getattr(cfg, a, None) for a in ("image_token_id", "image_token_index", "video_token_id",
                                                "video_token_index")]
        return tuple(dict.fromkeys(i for i in ids if i is not None))

    def count_visual(self, input_ids: torch.Tensor) -> int:
        return int(torch.isin(input_ids, torch.tensor(self.visual_token_ids, device=input_ids.device)).sum())

    # ------------------------------------------------------------------ inputs and generation
    def build_inputs(self, samples) -> dict:  # pragma: no cover - abstract
        """The model's keyword arguments (a dict or BatchFeature of tensors: ``input_ids``, left-padded
        ``attention_mask``, pixel inputs) for a batch of benchmark ``Sample`` s, each prompt rendered with
        the model's chat template. With ``supports_resize``: while ``resize_plan`` is set, render every
        image at the plan's token grid and set ``native_visual``."""
        raise NotImplementedError(f"model adapter {self.name!r} does not implement build_inputs()")

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    def prepare_generation(self):
        """Forget per-call model state before an independent generate() call."""

    @torch.inference_mode()
    def generate(self, inputs, max_new_tokens: int = 16, **generation_kwargs) -> GenerationResult:
        """Greedy by default; timings: prefill_s (time to first token), decode_s_per_token, total_s."""
        self.prepare_generation()
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in dict(inputs).items()}
        generation_kwargs.setdefault("do_sample", False)
        tok = self.tokenizer
        if tok is not None and tok.pad_token_id is not None:
            generation_kwargs.setdefault("pad_token_id", tok.pad_token_id)
        # the first-token clock rides on generate()'s streamer hook, which beam search does not offer
        streamer = _FirstToken(self.device) if generation_kwargs.get("num_beams", 1) == 1 else None
        synchronize(self.device)
        start = time.perf_counter()
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=streamer, **generation_kwargs)
        synchronize(self.device)
        total = time.perf_counter() - start
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        new = sequences[:, inputs["input_ids"].shape[1]:]
        counts = self._new_token_counts(new)
        first = streamer.first if streamer is not None else None
        prefill = None if first is None else first - start
        steps = max(counts) if counts else 0
        timings = {"prefill_s": prefill, "total_s": total,
                   "decode_s_per_token": None if prefill is None else
                   (total - prefill) / (steps - 1) if steps > 1 else 0.0}
        texts = tok.batch_decode(new, skip_special_tokens=True) if tok is not None else [""] * len(counts)
        return GenerationResult(texts=[t.strip() for t in texts], new_tokens=counts, timings=timings,
                                sequences=sequences)

    def _new_token_counts(self, new: torch.Tensor) -> list[int]:
        """Generated tokens per sample, up to and including the first EOS (padding after it excluded)."""
        eos = self.model.generation_config.eos_token_id
        eos = set([eos] if isinstance(eos, int) else (eos or []))
        counts = []
        for row in new.tolist():
            n = len(row)
            for i, t in enumerate(row):
                if t in eos:
                    n = i + 1
                    break
            counts.append(n)
        return counts

    def __repr__(self):
        return f"<VLM {self.name} {self.checkpoint} on {self.device}, {self.dtype}>"
