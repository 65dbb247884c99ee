"""The bundled tiny models: LLaVA checkpoints trained on ``shapes`` and shipped inside the package.

``checkpoint_path(name)`` is a folder that ``LlavaForConditionalGeneration.from_pretrained``
and ``AutoProcessor.from_pretrained`` (or ``tokenprune.models.load("llava", path)``) read
like any hub checkpoint; ``python -m tokenprune.zoo.train`` rebuilds it (docs/zoo.md).
"""
from __future__ import annotations

from pathlib import Path

CHECKPOINTS = Path(__file__).parent / "checkpoints"
DEFAULT = "shapes-llava-144"


def available() -> list[str]:
    """Names of the checkpoints present in this installation."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())


def checkpoint_path(name: str = DEFAULT) -> Path:
    """The folder of bundled checkpoint ``name``; the error lists the ones there are."""
    path = CHECKPOINTS / name
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no bundled checkpoint {name!r}; available: {', '.join(available()) or '(none)'}")
    return path
