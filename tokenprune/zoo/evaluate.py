"""Quick accuracy of a bundled checkpoint on the ``shapes`` split, with a plain pre-LLM token drop.

This is the zoo's own yardstick while training (one forward per batch, no
engine): visual embeddings outside ``keep`` are removed before the LLM and the
rest keep their original position ids, as the engine's pre_llm stage does.
Answers are single tokens, so the argmax after the prompt is the greedy answer.
``python -m tokenprune.zoo.evaluate CHECKPOINT [--budget 16] [--limit 300]``.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from ..benchmarks.shapes import Shapes

KEEPERS = ("vanilla", "random", "uniform")


def keep_indices(how: str, side: int, budget: int, generator: torch.Generator) -> torch.Tensor:
    """Ascending indices of the visual tokens kept on a side x side grid."""
    n = side * side
    if how == "vanilla" or budget >= n:
        return torch.arange(n)
    if how == "random":
        return torch.randperm(n, generator=generator)[:budget].sort().values
    if how == "uniform":  # evenly strided over the raster order
        return torch.linspace(0, n - 1, budget).round().long().unique()
    raise ValueError(f"unknown keep rule {how!r}; choose from {KEEPERS}")


def load(path):
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(path)


@torch.no_grad()
def predict(model, processor, samples, how: str = "vanilla", budget: int | None = None, seed: int = 0,
            batch: int = 32) -> list[str]:
    cfg = model.config
    side = cfg.vision_config.image_size // cfg.vision_config.patch_size
    budget = budget or side * side
    gen = torch.Generator().manual_seed(seed)
    image_id = cfg.image_token_id
    out = []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        convs = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": s.prompt}]}] for s in chunk]
        texts = [processor.apply_chat_template(c, add_generation_prompt=True) for c in convs]
        enc = processor(images=[s.images[0] for s in chunk], text=texts, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        embeds = model.get_input_embeddings()(ids)
        feats = model.get_image_features(pixel_values=enc["pixel_values"],
                                         vision_feature_layer=cfg.vision_feature_layer,
                                         vision_feature_select_strategy=cfg.vision_feature_select_strategy)
        feats = torch.stack(list(getattr(feats, "pooler_output", feats)))
        is_image = ids == image_id
        embeds[is_image] = feats.reshape(-1, feats.shape[-1])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        rows = []
        for b in range(len(chunk)):  # left padding: the image span sits at the same place in every row
            img_pos = is_image[b].nonzero().flatten()
            drop = torch.ones(len(img_pos), dtype=torch.bool)
            drop[keep_indices(how, side, budget, gen)] = False
            keep_row = torch.ones(ids.shape[1], dtype=torch.bool)
            keep_row[img_pos[drop]] = False
            rows.append(keep_row)
        keep_rows = torch.stack(rows)
        length = int(keep_rows.sum(-1)[0])
        logits = model(
            inputs_embeds=embeds[keep_rows].view(len(chunk), length, -1),
            attention_mask=mask[keep_rows].view(len(chunk), length),
            position_ids=positions[keep_rows].view(len(chunk), length),
            logits_to_keep=1,
        ).logits[:, -1]
        out += processor.tokenizer.batch_decode(logits.argmax(-1, keepdim=True), skip_special_tokens=True)
    return out


def accuracy(model, processor, bench: Shapes, how="vanilla", budget=None, seed=0) -> dict[str, float]:
    samples = list(bench.samples())
    preds = predict(model, processor, samples, how, budget, seed)
    records = [{"id": s.id, "prediction": p, "score": bench.score(s, p), "meta": s.meta}
               for s, p in zip(samples, preds)]
    return bench.aggregate(records)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tokenprune.zoo.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--fraction", type=float, default=1 / 9, help="kept fraction for random and uniform")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, processor = load(args.checkpoint)
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    bench = Shapes(limit=args.limit, image_size=model.config.vision_config.image_size)
    budget = max(1, math.floor(side * side * args.fraction + 0.5))
    for how in KEEPERS:
        t = time.time()
        metrics = accuracy(model, processor, bench, how, None if how == "vanilla" else budget)
        print(json.dumps({"keep": how, "budget": budget if how != "vanilla" else side * side,
                          "seconds": round(time.time() - t, 1), **{k: round(v, 4) for k, v in metrics.items()}}))


if __name__ == "__main__":
    main()
