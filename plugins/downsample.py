"""The `downsample` sanity baseline: a smaller image instead of fewer tokens."""
import math

from tokenprune import Param, Selection, Strategy, hookimpl
from tokenprune_plugins.baselines import _batch, lattice_indices


class Downsample(Strategy):
    """Resize the image so the vision tower yields about `budget` tokens (a sanity baseline).

    Stage "input": the model adapter renders every image at a smaller size before
    the vision tower, so the tower itself sees less detail and costs less. The
    token grid keeps the native aspect ratio: for a native R x C grid the resized
    grid is the smallest r x c with r/c as close to R/C as rounding allows and
    r*c >= budget, i.e. f = sqrt(budget / (R*C)) and r = ceil(R*f), c = ceil(C*f),
    then shrunk one row or column at a time while the budget still fits.
    The few surplus tokens (e.g. 12x12 = 144 for a budget of 128) are dropped
    on the same even lattice as `uniform`, so exactly `budget` reach the LLM.
    Called directly on a token grid, `select` is that trim.

    Adapters that support it: llava (CLIP position embeddings interpolated to the
    smaller grid, as transformers' `interpolate_pos_encoding` does), qwen2_vl,
    qwen2_5_vl and qwen3_vl (native dynamic resolution: the image is resized to
    the grid times the merged patch size). Images only; a video sample is an error.
    Records keep the native token count as `n_visual`, so FLOPs ratios compare
    with the full-resolution model.
    """

    name = "downsample"
    stage = "input"
    requires = frozenset()
    params = {"resample": Param("bicubic", "PIL filter used to shrink the image", str,
                                choices=("bicubic", "bilinear", "lanczos", "box"))}
    paper = "sanity baseline: lower input resolution at the same token budget"

    def input_grid(self, grid, budget):
        rows, cols = grid
        if budget >= rows * cols:
            return rows, cols
        f = math.sqrt(budget / (rows * cols))
        r, c = min(rows, math.ceil(rows * f)), min(cols, math.ceil(cols * f))
        while True:  # drop the side whose removal keeps the aspect closest, while the budget fits
            options = [(r - 1, c), (r, c - 1)]
            fits = [(abs(math.log((a / b) / (rows / cols))), a, b) for a, b in options
                    if a >= 1 and b >= 1 and a * b >= budget]
            if not fits:
                return r, c
            _, r, c = min(fits)

    def select(self, keys, attn, coords, budget, ctx):
        B = _batch(keys, attn, ctx)
        idx = lattice_indices(coords, budget)
        return Selection(keep=idx.expand(B, budget).clone().to(coords.device))


@hookimpl
def register_strategies(register):
    register(Downsample)
