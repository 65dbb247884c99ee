"""SmolVLM / Idefics3 for tokenprune: a model adapter plugin written against tokenprune's public contract
(tokenprune.models.base.VLM over tokenprune.models.contract.EngineAdapter; see tokenprune's docs/adapters.md).

Where the visual tokens sit, from transformers' Idefics3 image processor, processor and model:

* The image processor resizes an image so its longest edge is ``size["longest_edge"]``, then up to
  whole multiples of S = ``max_image_size["longest_edge"]`` (the vision encoder's image size), and cuts it
  into R x C tiles of S x S, row by row; the whole image resized to S x S follows as the global image.
  An image that is a single S x S tile after resizing (or with ``do_image_splitting`` off) is the global
  image alone (R = C = 0).
* The vision encoder turns each S x S image into (S/p) x (S/p) patches; the connector's pixel shuffle
  (``scale_factor`` s) folds every s x s block of neighbouring patches into one token, in raster order
  over the blocks: n = S / (p * s) tokens a side, n * n per tile (``image_seq_len``).
* The prompt writes tile (r, c) (1-based) as ``<fake_token_around_image><row_r_col_c>`` + n*n ``<image>``,
  a newline after each row of tiles, then the global image as
  ``<fake_token_around_image><global-img>`` + n*n ``<image>`` + ``<fake_token_around_image>``.

Coordinates, read off the prompt's markers (so they hold whichever way generate() hands the pixels over):
an image's tiles are stitched into one frame of R*n x C*n tokens, token (i, j) of tile (r, c) at row
(r-1)*n + i, column (c-1)*n + j, exactly where its pixels lie in the resized image; the global image is
the next frame, n x n. Each image takes the next frames of the sample. Segments: "tiles" and "global"
(with the image's index, "tiles0", "global0", ..., when a prompt holds several images).
"""
from __future__ import annotations

import json
import math
import re

import torch
import transformers

import tokenprune
from tokenprune.models import prompts
from tokenprune.models.base import VLM
from tokenprune.models.contract import Visuals, raster, runs, visuals_from_blocks
from tokenprune.models.processor_files import PROCESSOR_CONFIG, chat_template, checkpoint_file

GLOBAL_IMAGE = "<global-img>"
TILE = re.compile(r"<row_(\d+)_col_(\d+)>")
DEFAULT_IMAGE_SEQ_LEN = 169  # Idefics3Processor's default


def _fallback(conversation) -> str:
    """SmolVLM's prompt format, for a processor saved without a chat template."""
    return prompts.plain_prompt(conversation, placeholders={"image": "<image>"}, before="<|im_start|>User:",
                                after="<end_of_utterance>\nAssistant:")


class SmolVLMAdapter(VLM):
    """SmolVLM and other ``Idefics3ForConditionalGeneration`` checkpoints (images).

    checkpoints: HuggingFaceTB/SmolVLM-256M-Instruct, HuggingFaceTB/SmolVLM-500M-Instruct,
    HuggingFaceTB/SmolVLM-Instruct, HuggingFaceM4/Idefics3-8B-Llama3
    """

    name = "smolvlm"
    model_classes = ("Idefics3ForConditionalGeneration",)

    # ------------------------------------------------------------------ engine side
    @property
    def language_model(self):
        return self.model.model.text_model

    @property
    def vision_modules(self):
        return [self.model.model.vision_model, self.model.model.connector]

    @staticmethod
    def tokens_per_side(config) -> int:
        """n: tokens along each side of one tile (or global image) after the pixel shuffle."""
        vc = config.vision_config
        return vc.image_size // vc.patch_size // config.scale_factor

    @property
    def tile_side(self) -> int:
        return self.tokens_per_side(self.model.config)

    def check_strategy(self, strategy, who):
        if self.tokenizer is None:
            raise ValueError(f"{who}: SmolVLM's tile layout is read from the <row_r_col_c> tokens of the prompt, "
                             "which needs its tokenizer; wrap the model with its processor: "
                             "tokenprune.apply(SmolVLMAdapter(model, processor), ...)")

    def _marker(self, token_id: int) -> tuple[int, int] | None:
        """(r, c) of a ``<row_r_col_c>`` token, or None for ``<global-img>``."""
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        if token == GLOBAL_IMAGE:
            return None
        match = TILE.fullmatch(str(token))
        if match is None:
            raise ValueError(f"a run of <image> tokens follows {token!r}, not <global-img> or <row_r_col_c>: "
                             "the prompt was not written by the Idefics3 processor")
        return int(match.group(1)), int(match.group(2))

    def _tiles(self, tiles: list[tuple[int, int]], t0: int) -> torch.Tensor:
        """(t, row, col) of the tokens of an image's tiles, in prompt order, stitched into one frame."""
        rows, cols = max(r for r, _ in tiles), max(c for _, c in tiles)
        if tiles != [(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)]:
            raise ValueError(f"an image's tiles {tiles} are not a full {rows} x {cols} grid in row order")
        n = self.tile_side
        blocks = [raster(n, n, 1, t0) + torch.tensor([0, (r - 1) * n, (c - 1) * n]) for r, c in tiles]
        return torch.cat(blocks)

    def visuals(self, input_ids, kwargs) -> list[Visuals]:
        return [self._sample_visuals(row) for row in input_ids]

    def _sample_visuals(self, row: torch.Tensor) -> Visuals:
        n = self.tile_side
        image_id = self.model.config.image_token_id
        positions = (row == image_id).nonzero().flatten()
        ids = row.tolist()
        images, tiles, t0, start = [], [], 0, 0  # images: (coord blocks, segments) per image
        for lo, hi in runs(row == image_id):
            if hi - lo != n * n:
                raise ValueError(f"a run of {hi - lo} <image> tokens; every tile and global image has {n} x {n}")
            marker = self._marker(ids[lo - 1]) if lo > 0 else None
            if marker is not None:
                tiles.append(marker)
                continue
            blocks, segments = [], []  # the global image closes the image
            if tiles:
                blocks.append(self._tiles(tiles, t0))
                segments.append(("tiles", start, start + len(tiles) * n * n))
                t0, start = t0 + 1, start + len(tiles) * n * n
            blocks.append(raster(n, n, 1, t0))
            segments.append(("global", start, start + n * n))
            t0, start, tiles = t0 + 1, start + n * n, []
            images.append((blocks, segments))
        if tiles:
            raise ValueError("the prompt's last image has tiles but no <global-img>")
        several = len(images) > 1
        blocks = [b for image_blocks, _ in images for b in image_blocks]
        segments = [(f"{name}{k}" if several else name, a, b)
                    for k, (_, image_segments) in enumerate(images) for name, a, b in image_segments]
        return visuals_from_blocks(positions, blocks, segments)

    # ------------------------------------------------------------------ runner side
    @classmethod
    def load_processor(cls, checkpoint: str):
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            return super().load_processor(checkpoint)
        # Without torchvision, not every supported transformers version lets AutoProcessor pick Idefics3's
        # PIL image processor (5.17 cannot): build the same processor from its parts.
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
        tokenizer.padding_side = "left"
        seq_len, settings = DEFAULT_IMAGE_SEQ_LEN, checkpoint_file(checkpoint, PROCESSOR_CONFIG)
        if settings:
            with open(settings, encoding="utf-8") as f:
                seq_len = json.load(f).get("image_seq_len", seq_len)
        return transformers.Idefics3Processor(image_processor=Idefics3ImageProcessorPil.from_pretrained(checkpoint),
                                              tokenizer=tokenizer, image_seq_len=seq_len,
                                              chat_template=chat_template(checkpoint, tokenizer))

    @classmethod
    def max_visual_tokens(cls, config, preprocessor):
        """At most ceil(L / S)^2 tiles plus the global image (L = size.longest_edge, S = max_image_size
        .longest_edge); exactly one global image when images are not split."""
        per_image = cls.tokens_per_side(config) ** 2
        side = (preprocessor.get("max_image_size") or {}).get("longest_edge", config.vision_config.image_size)
        longest = (preprocessor.get("size") or {}).get("longest_edge", 4 * side)
        tiles = math.ceil(longest / side)
        if not preprocessor.get("do_image_splitting", True) or tiles <= 1:
            return per_image, True
        return (tiles * tiles + 1) * per_image, False

    def build_inputs(self, samples):
        texts, images = prompts.image_turns(self.processor, samples, _fallback, self.name)
        media = {"images": images} if any(images) else {}
        return self.processor(text=texts, padding=True, return_tensors="pt", **media)


@tokenprune.hookimpl
def register_models(register):
    register(SmolVLMAdapter)
