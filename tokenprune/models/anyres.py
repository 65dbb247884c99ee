"""Token geometry of LLaVA-NeXT / LLaVA-OneVision "anyres" images.

An image with high-resolution crops becomes: the base image (side x side
tokens, raster order), then the crops stitched into one grid, unpadded (and, for
OneVision, possibly downsampled), each row followed by a newline token. An
image without crops is its base grid plus one newline token.

Rather than re-deriving the model's unpad/resample arithmetic, the layout is
read off the model's own packing: either from the packed features generate()
already computed (newline rows equal ``image_newline``), or by running the
model's ``pack_image_features`` on one-channel marker features (0 = patch,
1 = newline).

Coordinates: frame t0 is the base image; frame t0 + 1 the stitched crop grid,
whose newline tokens sit in column W (one past the last patch column).
"""
from __future__ import annotations

import torch

from .contract import raster


def newline_flags(features: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """[n] True where a packed feature row is the newline embedding."""
    return (features == newline.to(features.device, features.dtype)).all(dim=-1)


def marker_flags(pack, image_sizes, num_patches: list[int], side: int, **pack_kwargs) -> list[torch.Tensor]:
    """Per image: newline flags of the model's packing, computed on marker features (no vision tower)."""
    features = [torch.zeros(n, side * side, 1) for n in num_patches]
    packed, _ = pack(features, image_sizes.cpu(), image_newline=torch.ones(1), **pack_kwargs)
    return [p[:, 0] > 0.5 for p in packed]


def image_coords(flags: torch.Tensor, side: int, t0: int) -> tuple[torch.Tensor, int, list]:
    """(coords [n, 3], frames used, segments) of one packed image from its newline flags."""
    n = int(flags.numel())
    base = side * side
    if n == base + 1 and bool(flags[-1]) and not bool(flags[:-1].any()):
        coords = torch.cat([raster(side, side, 1, t0), torch.tensor([[t0, side - 1, side]])])
        return coords, 1, [("base", 0, n)]
    if n <= base or bool(flags[:base].any()) or not bool(flags[-1]):
        raise ValueError(f"unexpected anyres packing: {n} tokens for a {side} x {side} base")
    rest = flags[base:].tolist()
    rows, row, col = [], 0, 0
    for is_newline in rest:
        rows.append((t0 + 1, row, col))
        if is_newline:
            row, col = row + 1, 0
        else:
            col += 1
    coords = torch.cat([raster(side, side, 1, t0), torch.tensor(rows, dtype=torch.long)])
    return coords, 2, [("base", 0, base), ("highres", base, n)]


def split_by_sample(lengths: list[int], counts: list[int]) -> list[list[int]]:
    """Assign consecutive media items (token ``lengths``) to samples with ``counts`` visual tokens each."""
    out, i = [], 0
    for need in counts:
        mine, got = [], 0
        while got < need:
            if i >= len(lengths):
                raise ValueError("the prompt has more image tokens than the packed images provide")
            mine.append(i)
            got += lengths[i]
            i += 1
        if got != need:
            raise ValueError(f"a sample's {need} image tokens do not add up to whole images")
        out.append(mine)
    return out
