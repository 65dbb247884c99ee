"""Running the vision tower and projector once for every run that sees the same inputs.

A VLM's inner model encodes its media with ``get_image_features`` / ``get_video_features``
(transformers 5.17 calls them inside its forward; 5.23's ``generate()`` calls them before the
prefill). While a :class:`VisionReplay` is on, the first call whose tensors are all tensors of the
shared inputs runs as usual and a copy of its output is kept; every later call with those same
tensor objects gets a fresh copy of that output instead of running the tower again. A call with any
other tensor (an input-stage strategy's resized images) runs untouched and is not kept.

The two methods are overridden by instance attributes of the inner model for the replay's lifetime
and removed on exit, whatever happens inside.
"""
from __future__ import annotations

import functools

import torch

METHODS = ("get_image_features", "get_video_features")
# Per-layer stacks and the tower's last states: no model forward reads them (they read pooler_output and
# Qwen3-VL's deepstack_features), and the stacks would multiply what is held per batch by the tower's depth.
DROPPED = ("hidden_states", "attentions", "last_hidden_state")


def _kept(output):
    """What is held for later calls: the output without the fields no forward reads."""
    if isinstance(output, dict):  # transformers ModelOutput (an OrderedDict)
        return type(output)(**{k: v for k, v in output.items() if k not in DROPPED})
    return output


def _fresh(kept):
    """A new output object per replay: generate() reassigns its fields (beam expansion), never the tensors."""
    if isinstance(kept, dict):
        return type(kept)(**{k: list(v) if isinstance(v, list) else v for k, v in kept.items()})
    return kept


class VisionReplay:
    """Keep the inner model's media encodings of ``inputs`` and hand them back on later calls.

    ``runs`` / ``replays`` count the calls that ran the tower and the ones answered from the copy.
    """

    def __init__(self, vlm, inputs: dict):
        self.module = vlm.vlm_module
        self.shared = {id(v): v for v in inputs.values() if isinstance(v, torch.Tensor)}
        self.outputs: dict[tuple, object] = {}
        self.runs = self.replays = 0
        self._installed: list[str] = []

    def __enter__(self):
        try:
            for name in METHODS:
                original = getattr(self.module, name, None)
                if original is None:
                    continue
                if name in self.module.__dict__:
                    raise RuntimeError(f"{type(self.module).__name__}.{name} is already overridden on this model "
                                       "(a vision replay is already on)")
                setattr(self.module, name, self._replaying(name, original))
                self._installed.append(name)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for name in self._installed:
            self.module.__dict__.pop(name, None)
        self._installed.clear()
        self.outputs.clear()
        return False

    def nbytes(self) -> int:
        """Bytes of the tensors held (each counted once)."""
        seen, total = set(), 0
        for out in self.outputs.values():
            for t in _tensors(out):
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
        return total

    def _key(self, name: str, args, kwargs) -> tuple | None:
        """The call's identity when every tensor it gets belongs to the shared inputs, else None."""
        items = [(i, v) for i, v in enumerate(args)] + sorted(kwargs.items())
        key, tensors = [name], 0
        for where, value in items:
            if isinstance(value, torch.Tensor):
                if self.shared.get(id(value)) is not value:
                    return None
                key.append((where, "tensor", id(value)))
                tensors += 1
            else:
                key.append((where, repr(value)))
        return tuple(key) if tensors else None

    def _replaying(self, name: str, original):
        @functools.wraps(original)  # generate() reads the signature to pick the arguments it passes
        def call(*args, **kwargs):
            key = self._key(name, args, kwargs)
            if key is None:
                return original(*args, **kwargs)
            if key in self.outputs:
                self.replays += 1
                return _fresh(self.outputs[key])
            output = original(*args, **kwargs)
            self.outputs[key] = _kept(output)
            self.runs += 1
            return output
        return call


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def vision_bytes(config, element_size: int, n_visual: int) -> int:
    """Estimated bytes a replay holds for ``n_visual`` visual tokens of a VLM with this ``config``: the
    projector's outputs in the LLM width, plus one feature set per DeepStack layer (Qwen3-VL)."""
    text = getattr(config, "text_config", None) or config
    deepstack = len(getattr(getattr(config, "vision_config", None), "deepstack_visual_indexes", None) or ())
    return n_visual * text.hidden_size * (1 + deepstack) * element_size
