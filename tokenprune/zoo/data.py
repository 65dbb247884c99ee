"""Training batches: one scene per sequence, many questions per scene.

A sequence is the LLaVA-1.5 prompt ``<s> USER: <image>x N`` followed by one
block ``question ASSISTANT: answer </s>`` per question. A block-diagonal
attention mask and restarted position ids make every block see exactly what a
lone question sees at evaluation (tests check this against the processor),
while the image is encoded once for all of them; the loss covers only the
answers and their end-of-turn tokens.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from ..benchmarks.shapes_render import render
from ..benchmarks.shapes_scene import ANSWERS, ASK, COLORS, DIGITS, QA, SHAPES, TYPES, Scene, sample_scene

IGNORE = -100
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_pixels(images) -> torch.Tensor:
    """PIL images already at the model's size -> normalised [B, 3, H, W], as the processor computes it."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]) / 255.0
    arr = (arr - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def patch_labels(scene: Scene, grid: int) -> torch.Tensor:
    """[grid*grid, 3] class ids (colour, shape, digit; 0 = none) of the item covering each patch centre.

    The auxiliary target of the vision tower: it makes every patch say what it
    shows, which is what CLIP pre-training gives a real LLaVA for free.
    """
    labels = torch.zeros(grid * grid, 3, dtype=torch.long)
    for item in scene.items:
        half = item.size / 2
        for r in range(grid):
            cy = (r + 0.5) / grid
            if abs(cy - item.y) > half:
                continue
            for c in range(grid):
                cx = (c + 0.5) / grid
                if abs(cx - item.x) > half:
                    continue
                if item.digit is not None:
                    labels[r * grid + c, 2] = 1 + DIGITS.index(item.digit)
                else:
                    labels[r * grid + c, 0] = 1 + COLORS.index(item.color)
                    labels[r * grid + c, 1] = 1 + SHAPES.index(item.shape)
    return labels


AUX_CLASSES = (1 + len(COLORS), 1 + len(SHAPES), 1 + len(DIGITS))


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L], right-padded
    attention_mask: torch.Tensor  # [B, 1, L, L] bool: each question sees the image prefix and itself
    position_ids: torch.Tensor  # [B, L]: every question starts where a lone question would
    labels: torch.Tensor  # IGNORE except answer and end-of-turn tokens
    answer_types: torch.Tensor  # [B, L] index into TYPES at answer positions, -1 elsewhere
    pixel_values: torch.Tensor
    patch_labels: torch.Tensor  # [B, N, 3]


class Encoder:
    """Token ids of prompts, straight from the word-level vocabulary (no string round-trips)."""

    def __init__(self, tokenizer, visual_tokens: int):
        ids = tokenizer.convert_tokens_to_ids
        self.tokenizer = tokenizer
        self.bos, self.eos, self.pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        self.prefix = [self.bos, ids("user"), ids(":")] + [ids("<image>")] * visual_tokens
        self.assistant = [ids("assistant"), ids(":")]
        self._cache: dict[str, list[int]] = {}

    def words(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def single(self, qa: QA) -> list[int]:
        """The prompt of one question, as the processor builds it from the chat template."""
        return self.prefix + self.words(qa.question) + self.assistant

    def packed(self, qas: list[QA]) -> dict[str, list[int]]:
        """The image prefix once, then one block per question ``q ASSISTANT: a </s>``.

        Blocks see the prefix and themselves only (``group``) and restart their
        positions after the prefix, so each question is trained exactly as it is
        asked alone at evaluation, while the image is encoded once for all.
        """
        n = len(self.prefix)
        row = {"ids": list(self.prefix), "labels": [IGNORE] * n, "types": [-1] * n,
               "positions": list(range(n)), "group": [0] * n}
        for k, qa in enumerate(qas, start=1):
            prompt = self.words(qa.question) + self.assistant
            answer = self.words(qa.answer) + [self.eos]
            m = len(prompt) + len(answer)
            row["ids"] += prompt + answer
            row["labels"] += [IGNORE] * len(prompt) + answer
            row["types"] += [-1] * len(prompt) + [TYPES.index(qa.type)] + [-1] * (len(answer) - 1)
            row["positions"] += list(range(n, n + m))
            row["group"] += [k] * m
        return row


def block_mask(group: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool from group ids (0 = shared prefix, k = question k, -1 = padding): causal,
    and a query sees a key only in the prefix or in its own group (padding sees the prefix, never NaN)."""
    L = group.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    same = group[:, :, None] == group[:, None, :]
    shared = (group == 0)[:, None, :]
    return ((same | shared) & causal)[:, None]


def ask_many(scene: Scene, rng: random.Random, n: int, weights: dict[str, float]) -> list[QA]:
    """Up to ``n`` distinct questions about ``scene``, types drawn by ``weights``, answers drawn uniformly."""
    kinds, w = zip(*weights.items())
    qas, seen = [], set()
    for _ in range(3 * n):
        if len(qas) == n:
            break
        qtype = rng.choices(kinds, w)[0]
        qa = ASK[qtype](scene, rng, rng.choice(ANSWERS[qtype])) or ASK[qtype](scene, rng, None)
        if qa is not None and qa.question not in seen:
            seen.add(qa.question)
            qas.append(qa)
    return qas


def scene_batch(rng: random.Random, size: int, image_size: int, grid: int):
    """Scenes with their pixels and dense patch labels (all the vision tower needs)."""
    scenes = [sample_scene(rng) for _ in range(size)]
    pixels = to_pixels([render(s, image_size) for s in scenes])
    return scenes, pixels, torch.stack([patch_labels(s, grid) for s in scenes])


def make_batch(rng: random.Random, encoder: Encoder, size: int, questions: int, image_size: int,
               weights: dict[str, float]) -> Batch:
    grid = round((len(encoder.prefix) - 3) ** 0.5)
    scenes, pixels, labels = scene_batch(rng, size, image_size, grid)
    rows = [encoder.packed(ask_many(s, rng, questions, weights)) for s in scenes]
    length = max(len(r["ids"]) for r in rows)
    fill = {"ids": encoder.pad, "labels": IGNORE, "types": -1, "positions": 0, "group": -1}
    cols = {k: torch.full((size, length), v, dtype=torch.long) for k, v in fill.items()}
    for b, row in enumerate(rows):
        for k, values in row.items():
            cols[k][b, :len(values)] = torch.tensor(values)
    return Batch(
        input_ids=cols["ids"], attention_mask=block_mask(cols["group"]), position_ids=cols["positions"],
        labels=cols["labels"], answer_types=cols["types"], pixel_values=pixels, patch_labels=labels,
    )
