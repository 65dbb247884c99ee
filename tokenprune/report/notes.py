"""Prose the report needs to be read correctly: what the bundled model can show, and what the
diagnostics columns mean."""
from __future__ import annotations

import pandas as pd

from .document import Section, Text

BUNDLED = "zoo:shapes-llava-144"

BUNDLED_MODEL = (
    "**What this model's ranking can and cannot show.** `shapes-llava-144` is the bundled 4-layer toy LLaVA, "
    "trained for the synthetic `shapes` scenes (docs/zoo.md). Its training supervised the attention of "
    "specific heads: at layer 0 attribute words attend to the objects they name, at layer 1 the question is "
    "read into its last token, and at layer 2, the usual prune point, the last token attends to the patches "
    "the answer rests on. A strategy that reads attention therefore reads a signal the training put there: "
    "FastV keeps the tokens that receive the most attention at layer K−1 (layer 1 here), and every strategy "
    "that prunes at layer 2 cuts right where the model was taught to read the image. Its scenes are small and "
    "sparse (at most 9 items in a 3x3 layout on 144 tokens; a question rests on the patches of one to a few "
    "items), unlike natural images. The ranking says what each "
    "strategy keeps on such scenes, and the intervals say which differences exceed the noise of the questions "
    "asked; it does not predict how the strategies rank with LLaVA-1.5 on the paper's benchmarks.")

DIAGNOSTICS = (
    "Means over samples, on the token grid of the image the strategy saw. **edge_tokens**: kept tokens on the "
    "border row or column of the grid (of a 12x12 grid, 44 of the 144 tokens are on the border, so a uniform "
    "random pick of 16 has 4.9 on average). **nn_distance**: the mean distance, in grid cells, from each kept "
    "token to its nearest other kept token: small when the kept tokens cluster, large when they spread out. "
    "**redundancy**: the mean cosine similarity between the kept tokens' features at the prune point (the "
    "projected visual embeddings for strategies that prune before the LLM, the hidden states at the input of "
    "layer K for the others): high when the kept tokens carry similar content. A dash: not recorded.")


def bundled_model_note(df: pd.DataFrame) -> Text | None:
    """The caveat, when the run used the bundled checkpoint."""
    checkpoints = set(df.get("checkpoint", pd.Series(dtype=object)).dropna())
    return Text(BUNDLED_MODEL) if BUNDLED in checkpoints else None


def diagnostics_section(table) -> Section:
    return Section("Spatial diagnostics (mean over samples)", [Text(DIAGNOSTICS), table])
