"""The visual tokens of one sample as an adapter describes them to the engine."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch


@dataclass
class Visuals:
    """One sample's visual tokens.

    positions  [N] ascending sequence indices of the visual tokens (found from the input ids)
    coords     [N, 2] (row, col) or [N, 3] (t, row, col) on the LLM-side token grid
    grid       (T, H, W) extent of that grid
    segments   named index ranges into the N tokens, e.g. [("base", 0, 576), ("highres", 576, 2340)]
    """

    positions: torch.Tensor
    coords: torch.Tensor
    grid: tuple[int, int, int]
    segments: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.positions.numel())

    @classmethod
    def empty(cls, device=None) -> "Visuals":
        return cls(torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, 2, dtype=torch.long),
                   (0, 0, 0))

    def key(self) -> tuple:
        """Samples with equal keys can share one select() call (same N, coords and grid)."""
        return (self.n, self.grid, tuple(self.coords.flatten().tolist()))


def runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Maximal [start, stop) runs of True in a 1-D bool tensor."""
    idx = mask.nonzero().flatten().tolist()
    out = []
    for i in idx:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return [tuple(r) for r in out]


def raster(h: int, w: int, t: int = 1, t0: int = 0) -> torch.Tensor:
    """[t*h*w, 3] (t, row, col) coordinates in raster order, frames starting at ``t0`` (a fresh tensor)."""
    return _raster(h, w, t, t0).clone()


@functools.lru_cache(maxsize=64)
def _raster(h: int, w: int, t: int, t0: int) -> torch.Tensor:
    # every prefill asks for the same few grids: built once, copied per call
    tt, rr, cc = torch.meshgrid(torch.arange(t0, t0 + t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([tt.flatten(), rr.flatten(), cc.flatten()], dim=1)


def visuals_from_blocks(positions: torch.Tensor, coords3: list[torch.Tensor], segments=None) -> Visuals:
    """One sample's Visuals from its positions [N] and (t, row, col) coordinate blocks (concatenated in
    order, N rows in all); the grid is their extent, and a single frame is reported as (row, col)."""
    coords = torch.cat(coords3) if coords3 else torch.zeros(0, 3, dtype=torch.long)
    if coords.shape[0] != positions.numel():
        raise ValueError(f"{positions.numel()} visual tokens in the prompt but the geometry describes "
                         f"{coords.shape[0]}")
    if coords.shape[0] == 0:
        return Visuals.empty(positions.device)
    T, H, W = (coords.amax(dim=0) + 1).tolist()
    if T == 1:
        coords = coords[:, 1:]
    return Visuals(positions, coords.long(), (T, H, W), list(segments or []))
