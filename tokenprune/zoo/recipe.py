"""The recipes of the bundled models: architecture and training schedule, one frozen record each.

A recipe is everything ``python -m tokenprune.zoo.train`` needs to rebuild a
checkpoint from its seed; changing a number here and retraining is how a
checkpoint is changed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Recipe:
    name: str
    # vision tower (CLIP ViT): image_size / patch_size is the side of the visual-token grid
    image_size: int = 96
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    vision_mlp: int = 256
    # language model (Llama)
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_mlp: int = 384
    max_positions: int = 1024
    # training
    seed: int = 0
    vision_steps: int = 200  # stage 1: the vision tower alone, on dense patch labels
    vision_batch: int = 32
    steps: int = 1200  # stage 2: the whole model
    batch: int = 8  # scenes per step
    questions: int = 24  # questions per scene, one sequence (one image encode serves them all)
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    aux_weight: float = 1.0  # dense per-patch labels on the vision tower (a stand-in for CLIP pre-training)
    curriculum: float = 0.15  # fraction of steps on easy types before all types are mixed in
    threads: int = 1  # on a shared 2-core box one thread ran 6-10x faster than two (no OpenMP spin)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def visual_tokens(self) -> int:
        return self.grid**2

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "Recipe":
        return replace(self, **changes)


RECIPES = {
    "shapes-llava-144": Recipe("shapes-llava-144"),
    "shapes-llava-576": Recipe("shapes-llava-576", image_size=192, steps=2000, batch=8),
}
