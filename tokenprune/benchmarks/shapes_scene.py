"""Scenes and questions of the synthetic ``shapes`` benchmark, as plain data.

A scene is a 3x3 layout: each of the nine cells holds at most one item, either
a coloured shape or a small black digit on a white tag, over a cluttered
background. Questions name cells ("top left") or attributes, and every answer
is one word, so a pruning strategy that drops the tokens of the cell a question
is about loses the answer. Everything is drawn from a ``random.Random`` so a
seed fixes the scenes, the questions and (via ``Scene.bg``) the pixels.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
           "cross": "crosses"}
DIGITS = tuple("0123456789")
# One word per cell of the 3x3 layout, row-major: a region is one token, so a question
# points at it with a single word (and a model looks it up with a single match).
REGIONS = ("northwest", "north", "northeast", "west", "center", "east", "southwest", "south", "southeast")
COUNTS = ("0", "1", "2", "3", "4")
RELATIONS = ("left of", "right of", "above", "below")

TYPES = ("exist", "color", "shape", "count", "ocr", "relation")
ANSWERS = {  # the answer set of each type; eval questions cycle through it so no answer dominates
    "exist": ("yes", "no"),
    "color": COLORS,
    "shape": SHAPES,
    "count": COUNTS,
    "ocr": DIGITS,
    "relation": ("yes", "no"),
}

SHAPE_SIZE = (0.16, 0.28)  # side of a shape's bounding box, as a fraction of the image side
TAG_SIZE = 0.29  # the digit tag's height (bounds the jitter; the renderer draws it 27 px high at 96 px)


@dataclass(frozen=True)
class Item:
    cell: int  # 0..8, row-major over the 3x3 layout
    x: float  # centre, as a fraction of the image width
    y: float
    size: float  # bounding-box side, fraction of the image side
    color: str | None = None  # shapes only
    shape: str | None = None  # shapes only
    digit: str | None = None  # digit tags only

    @property
    def row(self) -> int:
        return self.cell // 3

    @property
    def col(self) -> int:
        return self.cell % 3

    @property
    def region(self) -> str:
        return REGIONS[self.cell]


@dataclass(frozen=True)
class Scene:
    items: tuple[Item, ...]
    bg: int  # seed of the background clutter and pixel noise

    @property
    def shapes(self) -> list[Item]:
        return [it for it in self.items if it.shape is not None]

    @property
    def digits(self) -> list[Item]:
        return [it for it in self.items if it.digit is not None]


@dataclass(frozen=True)
class QA:
    type: str
    question: str
    answer: str
    cells: tuple[int, ...] = ()  # the cells whose items the answer rests on (empty for absent things)


def _place(rng: random.Random, cell: int, size: float) -> tuple[float, float]:
    """A centre inside ``cell`` that keeps an item of ``size`` within the cell."""
    slack = 1 / 3 - size - 0.02
    x = (cell % 3) / 3 + 0.01 + size / 2 + rng.random() * slack
    y = (cell // 3) / 3 + 0.01 + size / 2 + rng.random() * slack
    return x, y


def sample_scene(rng: random.Random) -> Scene:
    """3-7 items in distinct cells; a small palette per scene makes repeated colours (counting) common."""
    n = rng.randint(3, 7)
    cells = sorted(rng.sample(range(9), n))
    palette = rng.sample(COLORS, rng.randint(2, 4))
    kinds = rng.sample(SHAPES, rng.randint(2, 4))
    n_digits = min(n - 1, rng.choice((0, 1, 1, 2, 2, 3)))
    digit_cells = set(rng.sample(cells, n_digits))
    items = []
    for cell in cells:
        if cell in digit_cells:
            x, y = _place(rng, cell, TAG_SIZE)
            items.append(Item(cell, x, y, TAG_SIZE, digit=rng.choice(DIGITS)))
        else:
            size = SHAPE_SIZE[0] + rng.random() * (SHAPE_SIZE[1] - SHAPE_SIZE[0])
            x, y = _place(rng, cell, size)
            items.append(Item(cell, x, y, size, color=rng.choice(palette), shape=rng.choice(kinds)))
    return Scene(tuple(items), bg=rng.getrandbits(31))


# Question makers: each returns a QA about ``scene`` whose answer is ``want`` when it can
# (``want=None``: any answer), or None when the scene cannot host that question.

def ask_exist(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    """POPE-like, over object categories: ``is there a circle ?`` or ``is there a red shape ?``.

    Absent categories come from the scene's own kind of confusion: an absent
    shape or an absent colour, asked about scenes full of the others.
    """
    want = want or rng.choice(ANSWERS["exist"])
    by_shape = rng.random() < 0.5
    values = SHAPES if by_shape else COLORS
    present = {it.shape if by_shape else it.color for it in scene.shapes}
    pool = sorted(present) if want == "yes" else [v for v in values if v not in present]
    if not pool:
        return None
    value = rng.choice(pool)
    cells = tuple(it.cell for it in scene.shapes if value in (it.shape, it.color))
    article = "an" if value[0] in "aeiou" else "a"
    question = f"is there {article} {value} ?" if by_shape else f"is there {article} {value} shape ?"
    return QA("exist", question, want, cells)


def ask_color(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    pool = [it for it in scene.shapes if want in (None, it.color)]
    if not pool:
        return None
    it = rng.choice(pool)
    return QA("color", f"what color is in the {it.region} ?", it.color, (it.cell,))


def ask_shape(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    pool = [it for it in scene.shapes if want in (None, it.shape)]
    if not pool:
        return None
    it = rng.choice(pool)
    return QA("shape", f"what shape is in the {it.region} ?", it.shape, (it.cell,))


def ask_ocr(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    pool = [it for it in scene.digits if want in (None, it.digit)]
    if not pool:
        return None
    it = rng.choice(pool)
    return QA("ocr", f"what digit is in the {it.region} ?", it.digit, (it.cell,))


def ask_count(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    options = []
    for color in COLORS:
        cells = tuple(it.cell for it in scene.shapes if it.color == color)
        options.append((f"how many {color} shapes ?", str(len(cells)), cells))
    for shape in SHAPES:
        cells = tuple(it.cell for it in scene.shapes if it.shape == shape)
        options.append((f"how many {PLURALS[shape]} ?", str(len(cells)), cells))
    options = [o for o in options if o[1] in COUNTS]
    if want is None:  # balance answers rather than questions: absent attributes would make "0" dominate
        want = rng.choice(sorted({o[1] for o in options}))
    pool = [o for o in options if o[1] == want]
    if not pool:
        return None
    return QA("count", *rng.choice(pool))


def _holds(rel: str, a: Item, b: Item) -> bool | None:
    """Whether ``a`` is ``rel`` ``b`` by their cells; None when the cells do not decide it."""
    if rel in ("left of", "right of"):
        if a.col == b.col:
            return None
        return (a.col < b.col) == (rel == "left of")
    if a.row == b.row:
        return None
    return (a.row < b.row) == (rel == "above")


def names(scene: Scene) -> dict[str, Item]:
    """The one-attribute names that single out one shape of the scene: ``circle`` or ``red shape``."""
    out = {}
    for it in scene.shapes:
        if sum(o.shape == it.shape for o in scene.shapes) == 1:
            out[it.shape] = it
        if sum(o.color == it.color for o in scene.shapes) == 1:
            out[f"{it.color} shape"] = it
    return out


def ask_relation(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    """``is the circle above the red shape ?``: two shapes, each named by an attribute it alone has."""
    named = sorted(names(scene).items())
    options = []
    for name_a, a in named:
        for name_b, b in named:
            for rel in RELATIONS:
                holds = None if a is b else _holds(rel, a, b)
                if holds is not None:
                    options.append((name_a, a, rel, name_b, b, "yes" if holds else "no"))
    pool = [o for o in options if want in (None, o[5])]
    if not pool:
        return None
    name_a, a, rel, name_b, b, ans = rng.choice(pool)
    return QA("relation", f"is the {name_a} {rel} the {name_b} ?", ans, (a.cell, b.cell))


ASK: dict[str, Callable[[Scene, random.Random, str | None], QA | None]] = {
    "exist": ask_exist,
    "color": ask_color,
    "shape": ask_shape,
    "count": ask_count,
    "ocr": ask_ocr,
    "relation": ask_relation,
}


def scene_with_question(rng: random.Random, qtype: str, want: str | None = None,
                        tries: int = 10_000) -> tuple[Scene, QA]:
    """Draw scenes until one hosts a ``qtype`` question answered ``want``."""
    for _ in range(tries):
        scene = sample_scene(rng)
        qa = ASK[qtype](scene, rng, want)
        if qa is not None:
            return scene, qa
    raise RuntimeError(f"no scene hosts a {qtype!r} question answered {want!r} in {tries} tries")


def vocabulary() -> list[str]:
    """Every word a question or an answer of this benchmark can use, sorted."""
    words = {"is", "there", "a", "an", "what", "color", "the", "shape", "in", "digit", "how", "many",
             "shapes", "above", "below", "left", "right", "of", "?"}
    words.update(COLORS, SHAPES, PLURALS.values(), DIGITS, REGIONS, COUNTS, ("yes", "no"))
    return sorted(words)
