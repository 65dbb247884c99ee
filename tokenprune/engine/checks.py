"""What the engine refuses, and how it says so: at apply() (before any hook exists) and on each call.

Every message starts with :func:`who`, e.g. ``strategy 'dart' on model 'llava' (llava-hf/llava-1.5-7b-hf)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from transformers import DynamicCache

from ..errors import TokenpruneError
from ..two_stage import TwoStage
from .positions import POLICIES
from .prefill import KNOWN_EXTRAS

if TYPE_CHECKING:
    from ..models.contract import EngineAdapter


class PruneError(TokenpruneError, RuntimeError):
    """Pruning failed inside a model; the message names the strategy and the model."""


def who(strategy, vlm: EngineAdapter) -> str:
    return f"strategy {strategy.name!r} on model {vlm.label}"


def check_attach(vlm: EngineAdapter, strategy, points, *, positions: str, budget: int | None) -> None:
    """Refuse a strategy this model, budget and position policy cannot run.

    ``points`` = (the point before the LLM, the point at layer K) as stages.prune_points builds them.
    The adapter's own ``check_strategy`` runs last; what it raises becomes a PruneError.
    """
    before_lm, at_layer = points
    n_layers = len(vlm.decoder_layers)
    if getattr(vlm.model, "_tokenprune_handle", None) is not None:
        raise PruneError(f"{who(strategy, vlm)}: the model already has a strategy attached; remove() it first")
    layer = strategy.prune_layer
    if at_layer is not None and not 1 <= layer < n_layers:
        raise PruneError(f"{who(strategy, vlm)}: layer K={layer} must be between 1 and {n_layers - 1} "
                         f"(the LLM has {n_layers} decoder layers)")
    for point in points:
        if point is not None:
            _check_point(vlm, strategy, point)
    if positions not in POLICIES:
        raise PruneError(f"{who(strategy, vlm)}: positions must be 'original' or 'reindex', got {positions!r}")
    if isinstance(strategy, TwoStage):
        if positions != "original":
            raise PruneError(f"{who(strategy, vlm)}: a two-stage strategy keeps original position ids; "
                             f"positions={positions!r} is not supported")
        if not vlm.supports_two_stage:
            raise PruneError(f"{who(strategy, vlm)}: two-stage pruning (pre_llm, then llm at layer K) is not "
                             f"supported on model adapter {vlm.name!r}")
    if strategy.stage == "input":
        if not vlm.supports_resize:
            raise PruneError(f"{who(strategy, vlm)}: this strategy resizes the input images, which model adapter "
                             f"{vlm.name!r} cannot do (it does not set supports_resize)")
        if budget is None:
            raise PruneError(f"{who(strategy, vlm)}: an input-stage strategy plans the image size from a fixed "
                             "budget; give budget, not keep_ratio")
    named = who(strategy, vlm)
    try:
        vlm.check_strategy(strategy, named)
    except PruneError:
        raise
    except Exception as exc:  # the adapter's refusal, whatever its type, surfaces like every other one
        raise PruneError(str(exc) if str(exc).startswith(named) else f"{named}: {exc}") from exc


def _check_point(vlm, strategy, point) -> None:
    """The signals and extras one prune point asks for can be computed where it runs."""
    s = point.strategy
    part = "" if s is strategy else f" (its {point.stage} part {s.name!r})"
    if point.stage == "pre_llm" and "attn" in s.requires:
        raise PruneError(f"{who(strategy, vlm)}{part}: 'attn' needs an LLM layer; a pre_llm strategy cannot "
                         "require it")
    extras = set(point.extras)
    unknown = extras - set(KNOWN_EXTRAS)
    if unknown:
        raise PruneError(f"{who(strategy, vlm)}{part}: the engine cannot provide ctx.extras {sorted(unknown)}; "
                         f"it fills {', '.join(KNOWN_EXTRAS)}")
    if "attn_all_queries" in extras and point.stage != "llm":
        raise PruneError(f"{who(strategy, vlm)}{part}: ctx.extras['attn_all_queries'] needs an llm-stage strategy")


def check_prefill(vlm, strategy, ids, kwargs) -> None:
    """A prefill call (empty cache) the engine can prune: input ids, a DynamicCache, a 2-D padding mask."""
    if ids is None:
        if vlm.has_media(kwargs):
            raise PruneError(f"{who(strategy, vlm)}: the engine locates visual tokens from input_ids; "
                             "call the model with input_ids, not inputs_embeds")
        return
    cache = kwargs.get("past_key_values")
    if cache is not None and not isinstance(cache, DynamicCache):
        raise PruneError(f"{who(strategy, vlm)}: layers keep different lengths after pruning, which needs a "
                         f"DynamicCache; got {type(cache).__name__} (do not set cache_implementation)")
    padding = kwargs.get("attention_mask")
    if padding is not None and padding.dim() != 2:
        raise PruneError(f"{who(strategy, vlm)}: only 2-D attention masks are supported, got {list(padding.shape)}")


def check_decode(vlm, strategy, kwargs, lm_layout) -> None:
    """A decode step over a cache this handle pruned: no new media; explicit ids for M-RoPE after pre_llm."""
    if vlm.has_media(kwargs):
        raise PruneError(f"{who(strategy, vlm)}: visual tokens arrived after the prefill (chunked prefill or a "
                         "cached continuation with new images); prune with a fresh cache instead")
    if (lm_layout is not None and kwargs.get("position_ids") is None and getattr(vlm, "mrope", False)
            and not lm_layout.is_identity()):
        raise PruneError(f"{who(strategy, vlm)}: decoding an M-RoPE model after pre-LLM pruning needs explicit "
                         "position_ids (generate() passes them)")
