"""Drawing a ``shapes`` scene with PIL, deterministically and at any resolution.

Coordinates live in fractions of the image side, so the same scene renders at
96 px (a 12x12 patch grid) or 192 px (24x24). Digits use a built-in 5x7 dot
font rather than a system font, so the pixels do not depend on the machine.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from .shapes_scene import Item, Scene

RGB = {
    "red": (220, 30, 30),
    "green": (20, 150, 40),
    "blue": (30, 70, 230),
    "yellow": (240, 210, 0),
    "purple": (140, 40, 180),
    "orange": (255, 130, 0),
}

# 5x7 dot-matrix digits, one string of five columns per row.
FONT = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11110", "00001", "00001", "01110", "00001", "00001", "11110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}


def render(scene: Scene, size: int = 96) -> Image.Image:
    """The RGB picture of ``scene``, ``size`` x ``size`` pixels."""
    rng = random.Random(scene.bg)
    img = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(img)
    _clutter(draw, rng, size)
    for item in scene.items:
        if item.digit is not None:
            _digit(draw, item, size)
        else:
            _shape(draw, item, size, RGB[item.color])
    noise = np.random.default_rng(scene.bg).normal(0.0, 6.0, (size, size, 3))
    pixels = np.asarray(img, dtype=np.float64) + noise
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _background(rng: random.Random, size: int) -> np.ndarray:
    """A light, slightly tinted vertical gradient."""
    top = np.array([rng.uniform(175, 235) for _ in range(3)])
    bottom = np.array([rng.uniform(175, 235) for _ in range(3)])
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    rows = top * (1 - t) + bottom * t
    return np.broadcast_to(rows, (size, size, 3)).round().astype(np.uint8)


def _clutter(draw: ImageDraw.ImageDraw, rng: random.Random, size: int):
    """Grey lines and specks: texture the vision tower must learn to ignore, never an answer."""
    width = max(1, size // 96)
    for _ in range(rng.randint(4, 12)):
        g = int(rng.uniform(90, 200))
        xy = [rng.uniform(0, size) for _ in range(4)]
        draw.line(xy, fill=(g, g, g), width=width)
    for _ in range(rng.randint(5, 20)):
        g = int(rng.uniform(90, 200))
        x, y, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.5, 1.5) * width
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(g, g, g))


def item_mask(item: Item, size: int) -> np.ndarray:
    """[size, size] bool: the pixels ``item`` paints (its tag, for a digit)."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    if item.digit is not None:
        x0, y0, w, h = _tag_box(item, size)
        draw.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=255)
    else:
        _shape(draw, item, size, 255)
    return np.asarray(img) > 0


def _shape(draw: ImageDraw.ImageDraw, item: Item, size: int, fill):
    cx, cy, h = item.x * size, item.y * size, item.size * size / 2
    if item.shape == "circle":
        draw.ellipse((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif item.shape == "square":
        s = 0.85 * h  # a square of the same box looks bigger than the other shapes
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif item.shape == "triangle":
        draw.polygon([(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)], fill=fill)
    elif item.shape == "diamond":
        draw.polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)], fill=fill)
    elif item.shape == "cross":
        t = h / 3
        draw.rectangle((cx - h, cy - t, cx + h, cy + t), fill=fill)
        draw.rectangle((cx - t, cy - h, cx + t, cy + h), fill=fill)
    else:
        raise ValueError(f"unknown shape {item.shape!r}")


def _tag_box(item: Item, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of a digit's tag: the 5x7 glyph plus a one-dot margin."""
    dot = _dot(size)
    w, h = 7 * dot, 9 * dot
    return round(item.x * size - w / 2), round(item.y * size - h / 2), w, h


def _dot(size: int) -> int:
    return max(1, round(size / 32))  # 3 px at 96: strokes a patch of 8 px still resolves


def _digit(draw: ImageDraw.ImageDraw, item: Item, size: int):
    """A black 5x7 digit on a white tag; a dot is an integer number of pixels, so it stays crisp."""
    dot = _dot(size)
    x0, y0, w, h = _tag_box(item, size)
    draw.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), fill=(250, 250, 250))
    for r, line in enumerate(FONT[item.digit]):
        for c, bit in enumerate(line):
            if bit == "1":
                x, y = x0 + (c + 1) * dot, y0 + (r + 1) * dot
                draw.rectangle((x, y, x + dot - 1, y + dot - 1), fill=(0, 0, 0))
