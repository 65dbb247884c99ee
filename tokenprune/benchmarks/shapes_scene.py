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
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
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

SHAPE_SIZE = (0.14, 0.26)  # side of a shape's bounding box, as a fraction of the image side
TAG_SIZE = 0.19  # the digit tag's height (bounds the jitter; the renderer draws it a little smaller)


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
        return f"{ROWS[self.row]} {COLS[self.col]}"


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
    present = sorted({(it.color, it.shape) for it in scene.shapes})
    want = want or rng.choice(ANSWERS["exist"])
    if want == "yes":
        if not present:
            return None
        color, shape = rng.choice(present)
    else:
        # POPE's adversarial flavour: the absent pair shares its colour or its shape with the scene
        colors = {c for c, _ in present}
        kinds = {s for _, s in present}
        absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
        near = [(c, s) for c, s in absent if c in colors or s in kinds]
        color, shape = rng.choice(near or absent)
    return QA("exist", f"is there a {color} {shape} ?", want)


def ask_color(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    pool = [it for it in scene.shapes if want in (None, it.color)]
    if not pool:
        return None
    it = rng.choice(pool)
    return QA("color", f"what color is at the {it.region} ?", it.color)


def ask_shape(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    pool = [it for it in scene.shapes if want in (None, it.shape)]
    if not pool:
        return None
    it = rng.choice(pool)
    return QA("shape", f"what shape is at the {it.region} ?", it.shape)


def ask_ocr(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    pool = [it for it in scene.digits if want in (None, it.digit)]
    if not pool:
        return None
    it = rng.choice(pool)
    return QA("ocr", f"what digit is at the {it.region} ?", it.digit)


def ask_count(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    options = []
    for color in COLORS:
        n = sum(it.color == color for it in scene.shapes)
        options.append((f"how many {color} shapes ?", str(n)))
    for shape in SHAPES:
        n = sum(it.shape == shape for it in scene.shapes)
        options.append((f"how many {PLURALS[shape]} ?", str(n)))
    options = [(q, a) for q, a in options if a in COUNTS]
    if want is None:  # balance answers rather than questions: absent attributes would make "0" dominate
        want = rng.choice(sorted({a for _, a in options}))
    pool = [(q, a) for q, a in options if a == want]
    if not pool:
        return None
    q, a = rng.choice(pool)
    return QA("count", q, a)


def _holds(rel: str, a: Item, b: Item) -> bool | None:
    """Whether ``a`` is ``rel`` ``b`` by their cells; None when the cells do not decide it."""
    if rel in ("left of", "right of"):
        if a.col == b.col:
            return None
        return (a.col < b.col) == (rel == "left of")
    if a.row == b.row:
        return None
    return (a.row < b.row) == (rel == "above")


def ask_relation(scene: Scene, rng: random.Random, want: str | None) -> QA | None:
    names = [(it.color, it.shape) for it in scene.shapes]
    unique = [it for it in scene.shapes if names.count((it.color, it.shape)) == 1]
    options = []
    for a in unique:
        for b in unique:
            for rel in RELATIONS:
                holds = None if a is b else _holds(rel, a, b)
                if holds is not None:
                    options.append((a, rel, b, "yes" if holds else "no"))
    pool = [o for o in options if want in (None, o[3])]
    if not pool:
        return None
    a, rel, b, ans = rng.choice(pool)
    return QA("relation", f"is the {a.color} {a.shape} {rel} the {b.color} {b.shape} ?", ans)


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
    words = {"is", "there", "a", "what", "color", "the", "shape", "at", "digit", "how", "many",
             "shapes", "above", "below", "left", "right", "of", "?"}
    words.update(COLORS, SHAPES, PLURALS.values(), DIGITS, ROWS, COLS, COUNTS, ("yes", "no"))
    return sorted(words)
