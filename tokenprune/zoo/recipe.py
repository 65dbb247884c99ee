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
    # RoPE base: at 1e6 most frequency pairs turn little over a prompt (~200 tokens), so a question word
    # can match the content of any visual token whatever its distance
    rope_theta: float = 1e6
    # training
    seed: int = 0
    vision_steps: int = 500  # stage 1: the vision tower alone, on dense patch labels
    vision_batch: int = 32
    text_steps: int = 60  # stage 2: the language model alone, questions without the image
    text_batch: int = 16
    steps: int = 2400  # stage 3: the whole model (relations were learned near step 900-1300 in our runs)
    batch: int = 8  # scenes per step
    questions: int = 24  # questions per scene, one sequence (one image encode serves them all)
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    aux_weight: float = 1.0  # dense per-patch labels on the vision tower (a stand-in for CLIP pre-training)
    speak_weight: float = 1.0  # projector output read through the word embeddings (see train.Speaker)
    route_weight: float = 1.0  # attention supervision of one head (see train.RouteTap)
    route_layer: int = 2
    curriculum: float = 0.15  # fraction of steps on easy types before all types are mixed in
    threads: int = 1  # on a shared 2-core box one thread ran 6-10x faster than two (no OpenMP spin)

    def __post_init__(self):
        if not 0 <= self.route_layer < self.text_layers:
            raise ValueError(f"recipe {self.name!r}: route_layer {self.route_layer} is not a layer of "
                             f"the {self.text_layers}-layer language model")
        if self.image_size % self.patch_size:
            raise ValueError(f"recipe {self.name!r}: image_size must be a multiple of patch_size")

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
