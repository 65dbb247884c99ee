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

from ..benchmarks.shapes_render import item_mask, render
from ..benchmarks.shapes_scene import (
    ANSWERS, ASK, COLORS, DIGITS, PLURALS, QA, REGIONS, SHAPES, TYPES, Item, Scene, sample_scene,
)

IGNORE = -100
# The words a question's answer hinges on: where to look and what to look for.
CONTENT_WORDS = list(REGIONS + COLORS + SHAPES + tuple(PLURALS.values()))
RELATION_WORDS = ("left", "right", "of", "above", "below")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_pixels(images) -> torch.Tensor:
    """PIL images already at the model's size -> normalised [B, 3, H, W], as the processor computes it."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]) / 255.0
    arr = (arr - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


PATCH = 8  # labels are computed at 8 px per patch whatever the grid; only coverage fractions matter


def item_patches(item: Item, grid: int, cover: float = 0.3) -> list[int]:
    """Raster indices of the patches at least ``cover`` painted by the item (at least its fullest one)."""
    mask = item_mask(item, grid * PATCH).reshape(grid, PATCH, grid, PATCH).mean(axis=(1, 3)).flatten()
    hits = np.flatnonzero(mask >= cover)
    return hits.tolist() if len(hits) else [int(mask.argmax())]


def anchor(item: Item, grid: int) -> int:
    """Raster index of the patch holding the item's centre: one token per item, what counting attends to."""
    return min(grid - 1, int(item.y * grid)) * grid + min(grid - 1, int(item.x * grid))


def patch_labels(scene: Scene, grid: int) -> torch.Tensor:
    """[grid*grid, 4] class ids (colour, shape, digit; 0 = none; then 1 at each item's centre patch).

    The auxiliary target of the vision tower: it makes every patch say what it
    shows, which is what CLIP pre-training gives a real LLaVA for free, and
    marks one patch per item (its centre), so items can be counted by attention.
    """
    labels = torch.zeros(grid * grid, 4, dtype=torch.long)
    for item in scene.items:
        for i in item_patches(item, grid):
            if item.digit is not None:
                labels[i, 2] = 1 + DIGITS.index(item.digit)
            else:
                labels[i, 0] = 1 + COLORS.index(item.color)
                labels[i, 1] = 1 + SHAPES.index(item.shape)
        labels[anchor(item, grid), 3] = 1
    return labels


# Attention targets over the prompt prefix ``<s> USER :`` + visual tokens; key 0 (``<s>``) is the
# sink, "nothing here" (see ``look`` and ``ground``).
SINK = 0
PREFIX = 3  # <s> USER : before the first visual token
COUNT_SINK = 3.0  # in ``ground``'s first head: n matching centres get 1/(n + c) each, the sink c/(n + c)
ATTRIBUTES = {**{c: c for c in COLORS}, **{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}


def look(scene: Scene, qa: QA, grid: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Where heads 0 and 1 of the route layer look from the question's last prompt token.

    A named cell (colour, shape, digit at a cell): both heads on its item's
    patches. A relation: head 0 on the first object, head 1 on the second, so
    the layers above compare their cells; the question's last token finds them
    by where its attribute words found them at layer 0 (``ground``), a lookup by
    position, like a named cell. None for existence and counting, which
    ``ground`` serves alone.
    """
    if qa.type not in ("color", "shape", "ocr", "relation"):
        return None
    at = {it.cell: it for it in scene.items}

    def over(cells) -> torch.Tensor:
        t = torch.zeros(PREFIX + grid * grid)
        patches = sorted({i for c in cells for i in item_patches(at[c], grid)})
        t[[PREFIX + i for i in patches]] = 1.0 / len(patches)
        return t

    if qa.type == "relation":
        return over(qa.cells[:1]), over(qa.cells[1:])
    t = over(qa.cells)
    return t, t.clone()


def ground(scene: Scene, word: str, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where heads 0 and 1 of layer 0 look from an attribute word (``red``, ``circle``, ``circles``).

    A word finds the shapes it names, whatever the question: head 0 puts
    1 / (n + c) on the centre patch of each of the n matching shapes and c / (n + c)
    on the sink, so the mass off the sink, n / (n + c), says how many there are
    (counting, existence); head 1 spreads over their patches, or all on the sink
    when there are none, so it says where they are (relations). The word's own
    token then carries what the image holds of it, for the question's last
    token to gather at layer 1. Attention from the word itself is what makes
    this learnable: at layer 0 its query is its embedding, and the Speaker
    aligned each patch with the embeddings of the words for it.
    """
    value = ATTRIBUTES[word]
    hits = [it for it in scene.shapes if value in (it.color, it.shape)]
    count = torch.zeros(PREFIX + grid * grid)
    count[SINK] = COUNT_SINK
    for it in hits:
        count[PREFIX + anchor(it, grid)] += 1.0
    where = torch.zeros(PREFIX + grid * grid)
    patches = sorted({i for it in hits for i in item_patches(it, grid)})
    if patches:
        where[[PREFIX + i for i in patches]] = 1.0 / len(patches)
    else:
        where[SINK] = 1.0
    return count / count.sum(), where


GATHER_HEADS = ((0, 3), (0, 2), (1, 0), (1, 1))  # (layer, head) of the heads that read question words


def focus(qa: QA) -> tuple[list[int], ...]:
    """Word indices of the question that each of ``GATHER_HEADS`` reads from its last prompt token.

    Layer 0 head 3: every content word; layer 0 head 2: the relation words.
    Layer 1 heads 0 and 1 (whose query knows the question's form): for
    ``is the <A> <rel> the <B> ?`` head 0 reads the first object's attribute word
    and head 1 the second's; for other questions both read every content word.
    """
    words = qa.question.split()
    content = [i for i, w in enumerate(words) if w in CONTENT_WORDS]
    if qa.type == "relation":
        second = len(words) - 1 - words[::-1].index("the")
        rel = [i for i in range(3, second) if words[i] in RELATION_WORDS]
        return content, rel, [2], [second + 1]
    return content, [], content, content


AUX_CLASSES = (1 + len(COLORS), 1 + len(SHAPES), 1 + len(DIGITS), 2)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L], right-padded
    attention_mask: torch.Tensor  # [B, 1, L, L] bool: each question sees the image prefix and itself
    position_ids: torch.Tensor  # [B, L]: every question starts where a lone question would
    labels: torch.Tensor  # IGNORE except answer and end-of-turn tokens
    answer_types: torch.Tensor  # [B, L] index into TYPES at answer positions, -1 elsewhere
    pixel_values: torch.Tensor | None  # None in the text warm-up
    patch_labels: torch.Tensor | None
    routes: list  # route layer, heads 0 and 1: (at [M, 2] (row, position) of the "ASSISTANT:" colon of each
    #               question about a named cell or a relation, target [M, PREFIX+N])
    finds: list  # layer 0, heads 0 and 1: (at [W, 2] of each attribute word of a question, target [W, PREFIX+N])
    gathers: list  # per GATHER_HEADS: (at [Q, 2], target [Q, L] over the question's words, keys [Q, L] its prompt)


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

    def packed(self, qas: list[QA], image: bool = True) -> dict[str, list[int]]:
        """The image prefix once, then one block per question ``q ASSISTANT: a </s>``.

        Blocks see the prefix and themselves only (``group``) and restart their
        positions after the prefix, so each question is trained exactly as it is
        asked alone at evaluation, while the image is encoded once for all.
        ``image=False`` leaves the image tokens out (positions unchanged): the
        text warm-up, where the model learns to read questions undistracted.
        """
        n = len(self.prefix)
        head = self.prefix if image else self.prefix[:3]
        row = {"ids": list(head), "labels": [IGNORE] * len(head), "types": [-1] * len(head),
               "positions": list(range(len(head))), "group": [0] * len(head)}
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
               weights: dict[str, float], image: bool = True) -> Batch:
    grid = round((len(encoder.prefix) - 3) ** 0.5)
    if image:
        scenes, pixels, labels = scene_batch(rng, size, image_size, grid)
    else:  # text warm-up: scenes only to ask about, nothing rendered
        scenes, pixels, labels = [sample_scene(rng) for _ in range(size)], None, None
    asked = [ask_many(s, rng, questions, weights) for s in scenes]
    rows = [encoder.packed(qas, image) for qas in asked]
    length = max(len(r["ids"]) for r in rows)
    fill = {"ids": encoder.pad, "labels": IGNORE, "types": -1, "positions": 0, "group": -1}
    cols = {k: torch.full((size, length), v, dtype=torch.long) for k, v in fill.items()}
    for b, row in enumerate(rows):
        for k, values in row.items():
            cols[k][b, :len(values)] = torch.tensor(values)
    routes = [([], []), ([], [])]
    finds = [([], []), ([], [])]
    gathers = [([], [], []) for _ in GATHER_HEADS]
    for b, qas in enumerate(asked):
        answers = (cols["types"][b] >= 0).nonzero().flatten().tolist()
        for qa, pos in zip(qas, answers):
            colon = pos - 1
            keys = (cols["group"][b] == cols["group"][b, colon]) & (torch.arange(length) <= colon)
            first = int(keys.nonzero()[0])  # the question's first word
            if image:
                for h, target in enumerate(look(scenes[b], qa, grid) or ()):
                    routes[h][0].append((b, colon))
                    routes[h][1].append(target)
                for i, word in enumerate(qa.question.split()):
                    if word in ATTRIBUTES:
                        for h, t in enumerate(ground(scenes[b], word, grid)):
                            finds[h][0].append((b, first + i))
                            finds[h][1].append(t)
            for h, idx in enumerate(focus(qa)):
                if idx:
                    target = torch.zeros(length)
                    target[[first + i for i in idx]] = 1.0 / len(idx)
                    gathers[h][0].append((b, colon))
                    gathers[h][1].append(target)
                    gathers[h][2].append(keys)

    def pack(at, *rest, width):
        at = torch.tensor(at, dtype=torch.long).view(-1, 2)
        return (at, *(torch.stack(r) if r else torch.zeros(0, width) for r in rest))

    return Batch(
        input_ids=cols["ids"], attention_mask=block_mask(cols["group"]), position_ids=cols["positions"],
        labels=cols["labels"], answer_types=cols["types"], pixel_values=pixels, patch_labels=labels,
        routes=[pack(at, t, width=PREFIX + grid * grid) for at, t in routes],
        finds=[pack(at, t, width=PREFIX + grid * grid) for at, t in finds],
        gathers=[(at, t, k.bool()) for at, t, k in (pack(*g, width=length) for g in gathers)],
    )
