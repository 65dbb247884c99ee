"""VLM adapters, one module per family; registered through ``register_models`` like any plugin.

``contract.EngineAdapter`` is what the pruning engine reads; ``base.VLM`` adds loading, inputs and
timed generation (docs/adapters.md).

    vlm = tokenprune.models.load("llava", "llava-hf/llava-1.5-7b-hf", dtype="float16", device="cuda")
    inputs = vlm.build_inputs(samples)
    result = vlm.generate(inputs, max_new_tokens=16)
"""
from __future__ import annotations

from ..errors import PluginError, UnknownNameError
from ..hookspecs import hookimpl

_BUILTIN = (
    ("llava", "LlavaAdapter"),
    ("llava_next", "LlavaNextAdapter"),
    ("llava_onevision", "LlavaOnevisionAdapter"),
    ("qwen_vl", "Qwen2VLAdapter"),
    ("qwen_vl", "Qwen25VLAdapter"),
    ("qwen3_vl", "Qwen3VLAdapter"),
)


def builtin_adapters() -> list[type]:
    import importlib

    return [getattr(importlib.import_module(f"{__name__}.{mod}"), cls) for mod, cls in _BUILTIN]


@hookimpl
def register_models(register):
    for cls in builtin_adapters():
        register(cls)


def adapter_class(name: str):
    """The adapter class registered as ``name``."""
    from .. import registry
    from .base import VLM

    cls = registry.lookup("models", name)
    if not registry.is_class_of(cls, VLM):
        raise PluginError(f"model adapter {name!r} is registered but is not a tokenprune.models.base.VLM subclass")
    return cls


def load(adapter_name: str, checkpoint: str, *, dtype="float32", attn_implementation: str = "sdpa",
         device: str = "cpu", **model_kwargs):
    """Load ``checkpoint`` (hub id or local path) with the adapter ``adapter_name`` and its processor."""
    return adapter_class(adapter_name).from_pretrained(
        checkpoint, dtype=dtype, attn_implementation=attn_implementation, device=device, **model_kwargs)


def as_vlm(model):
    """The engine's view of ``model``: a model adapter (any ``EngineAdapter``, returned as is), or the
    registered adapter wrapping a transformers model."""
    from .. import registry
    from .base import VLM
    from .contract import EngineAdapter

    if isinstance(model, EngineAdapter):
        return model
    adapters = [e.obj for e in registry.entries("models").values() if registry.is_class_of(e.obj, VLM)]
    for exact in (True, False):  # the adapter of the model's own class first, then one of a base class
        for cls in adapters:
            if cls.matches(model, exact=exact):
                return cls(model)
    names = ", ".join(f"{e.name} ({', '.join(e.obj.model_classes)})" for e in registry.entries("models").values()
                      if registry.is_class_of(e.obj, VLM))
    raise UnknownNameError(f"no registered model adapter drives {type(model).__name__}; adapters: {names}")
