"""Analytic FLOPs of the LLM part of a VLM, from its config.

Real FLOPs (2 per multiply-accumulate) with the model's own shapes: GQA
projections, a 3-matrix (SwiGLU) or 2-matrix FFN, the full attention matrix as
the kernels compute it (causal masking not discounted, as torch's FlopCounterMode
counts it), and the LM head on the positions whose logits are computed.

Also the FastV convention papers quote, per layer 4nd^2 + 2n^2d + 2ndm, which
counts multiply-accumulates with a 2-matrix FFN and no GQA; it is labelled as such
wherever it is stored. The strategy's own cost is not counted; the vision tower and projector
are counted separately (:class:`VisionShape`), for a whole-prefill figure that LLM-side pruning
leaves partly untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

# LLaMA, Qwen, Mistral... use a gated 3-matrix FFN whatever the activation; these do not.
_TWO_MATRIX_FFN = ("gpt2", "opt", "phi", "gpt_neox", "gptj", "bloom", "falcon")


@dataclass(frozen=True)
class LLMShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    ffn_matrices: int = 3

    @classmethod
    def from_config(cls, config) -> "LLMShape":
        """Shape of the language model; accepts a VLM config (uses its text_config) or an LLM config."""
        text = getattr(config, "text_config", None) or config
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        return cls(
            layers=text.num_hidden_layers,
            hidden=text.hidden_size,
            intermediate=getattr(text, "intermediate_size", None) or text.ffn_dim,
            heads=heads,
            kv_heads=getattr(text, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            vocab=text.vocab_size,
            ffn_matrices=2 if getattr(text, "model_type", "") in _TWO_MATRIX_FFN else 3,
        )

    def layer_flops(self, n_query: int, n_kv: int) -> int:
        """One decoder layer: n_query new tokens attending over n_kv keys."""
        d, hd = self.hidden, self.head_dim
        proj = 2 * n_query * d * (2 * self.heads * hd + 2 * self.kv_heads * hd)  # q, o and k, v
        attention = 2 * 2 * n_query * n_kv * self.heads * hd  # QK^T and attn @ V
        ffn = 2 * self.ffn_matrices * n_query * d * self.intermediate
        return proj + attention + ffn

    def head_flops(self, n_positions: int) -> int:
        return 2 * n_positions * self.hidden * self.vocab


def alive_per_layer(shape: LLMShape, n_total: int, n_visual: int, kept: int, prune_layer: int | None,
                    first_kept: int | None = None) -> list[int]:
    """Tokens each decoder layer processes at prefill. prune_layer None = no pruning, 0 = before the LLM.

    ``first_kept``: two-stage pruning, the visual tokens left before the LLM; layers below
    ``prune_layer`` then process those instead of all ``n_visual``.
    """
    if prune_layer is None:
        return [n_total] * shape.layers
    early = n_total if first_kept is None else n_total - n_visual + first_kept
    pruned = n_total - n_visual + kept
    return [early if i < prune_layer else pruned for i in range(shape.layers)]


def prefill_flops(shape: LLMShape, alive: list[int], logits_positions: int = 1) -> int:
    return sum(shape.layer_flops(n, n) for n in alive) + shape.head_flops(logits_positions)


def decode_flops(shape: LLMShape, alive: list[int], new_tokens: int) -> float:
    """Mean FLOPs per generated token after the first (the KV length grows by one each step)."""
    if new_tokens <= 1:
        return 0.0
    total = 0
    for step in range(1, new_tokens):
        total += sum(shape.layer_flops(1, n + step) for n in alive) + shape.head_flops(1)
    return total / (new_tokens - 1)


def kv_cache_bytes(shape: LLMShape, alive: list[int], bytes_per_value: int) -> int:
    return sum(2 * n * shape.kv_heads * shape.head_dim * bytes_per_value for n in alive)


def fastv_convention_macs(shape: LLMShape, alive: list[int]) -> int:
    """The per-layer 4nd^2 + 2n^2d + 2ndm of FastV-style papers (MACs, 2-matrix FFN, no GQA)."""
    d, m = shape.hidden, shape.intermediate
    return sum(4 * n * d * d + 2 * n * n * d + 2 * n * d * m for n in alive)


def layer_averaged_tokens(alive: list[int], n_text: int) -> float:
    """Visual tokens per layer averaged over layers (text tokens excluded)."""
    return sum(n - n_text for n in alive) / len(alive)


@dataclass(frozen=True)
class VisionShape:
    """The vision tower and projector of a VLM, counted like :class:`LLMShape` (FlopCounterMode's convention).

    A ViT: a patch embedding (a convolution of ``patch_inputs`` values per patch), ``layers`` blocks of
    full self-attention (q, k, v, o projections and the whole n x n attention of each image) and a
    2-matrix MLP, over the patches plus ``extra_tokens`` (CLIP's CLS); then a projector that maps every
    ``merge`` patches (Qwen2-VL's 2 x 2 merge; 1 for LLaVA) to one LLM token through the matrices
    ``projector`` = ((in, out), ...). Norms, activations and position embeddings are not counted.
    """

    layers: int
    hidden: int
    intermediate: int
    patch_inputs: int
    projector: tuple
    merge: int = 1
    extra_tokens: int = 0

    @classmethod
    def from_config(cls, config) -> "VisionShape | None":
        """The vision part of a VLM config: CLIP towers (LLaVA-1.5) and Qwen2-VL's; None for others."""
        v = getattr(config, "vision_config", None)
        kind = getattr(v, "model_type", None)
        if kind == "clip_vision_model":
            layer = getattr(config, "vision_feature_layer", -2)
            stacked = 1 if isinstance(layer, int) else len(layer)  # several feature layers are concatenated
            text = config.text_config.hidden_size
            return cls(layers=v.num_hidden_layers, hidden=v.hidden_size, intermediate=v.intermediate_size,
                       patch_inputs=v.num_channels * v.patch_size ** 2,
                       projector=((v.hidden_size * stacked, text), (text, text)), extra_tokens=1)
        if kind == "qwen2_vl_vision":
            merged = v.embed_dim * v.spatial_merge_size ** 2
            return cls(layers=v.depth, hidden=v.embed_dim, intermediate=int(v.embed_dim * v.mlp_ratio),
                       patch_inputs=v.in_channels * v.temporal_patch_size * v.patch_size ** 2,
                       projector=((merged, merged), (merged, v.hidden_size)), merge=v.spatial_merge_size ** 2)
        return None

    def flops(self, patches_per_image: list[int]) -> int:
        """Vision tower + projector FLOPs for images of these patch counts (attention is per image)."""
        d, total = self.hidden, sum(patches_per_image)
        tokens = total + self.extra_tokens * len(patches_per_image)
        embed = 2 * total * self.patch_inputs * d
        proj = 2 * tokens * 4 * d * d
        attention = sum(2 * 2 * (n + self.extra_tokens) ** 2 * d for n in patches_per_image)
        mlp = 2 * 2 * tokens * d * self.intermediate
        projector = sum(2 * (total // self.merge) * i * o for i, o in self.projector)
        return embed + self.layers * (proj + attention + mlp) + projector
