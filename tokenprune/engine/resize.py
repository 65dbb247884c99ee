"""What an input-stage strategy asks of the model adapter: render images at a smaller token grid."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ResizePlan:
    """Native (rows, cols) token grid of an image -> the (rows, cols) to render it at."""

    grid: Callable[[tuple[int, int]], tuple[int, int]]
    resample: str = "bicubic"  # PIL filter name

    @property
    def pil_filter(self):
        from PIL import Image

        return getattr(Image.Resampling, self.resample.upper())
