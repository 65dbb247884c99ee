"""Train a bundled model from its recipe: ``python -m tokenprune.zoo.train [--recipe NAME] [--out DIR]``.

One run rebuilds a checkpoint from the recipe's seed on CPU (or CUDA where
present). The loss is next-token cross-entropy on the answers plus, on the
vision tower, a dense per-patch loss (colour, shape, digit under each patch)
through a linear head that is thrown away afterwards; what is saved is a plain
``LlavaForConditionalGeneration`` with its processor.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.models.clip.modeling_clip import CLIPEncoder

from ..benchmarks.shapes_scene import TYPES
from .build import build_model, build_processor, param_count
from .data import AUX_CLASSES, Encoder, make_batch, scene_batch
from .recipe import RECIPES, Recipe

EASY = {"exist": 1.0, "color": 1.0, "shape": 1.0, "ocr": 1.0, "count": 0.25, "relation": 0.25}
ALL = {"exist": 1.0, "color": 1.0, "shape": 1.0, "ocr": 1.0, "count": 1.5, "relation": 1.5}


def type_weights(step: int, recipe: Recipe) -> dict[str, float]:
    """Curriculum: single-lookup questions first, then every type (the hard ones weighted up)."""
    return EASY if step < recipe.curriculum * recipe.steps else ALL


def lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


class VisionTap:
    """Keeps the output of the vision layer LLaVA reads (``vision_feature_layer=-1``) for the dense loss."""

    def __init__(self, model):
        encoder = next(m for m in model.model.vision_tower.modules() if isinstance(m, CLIPEncoder))
        self.features = None
        encoder.layers[-1].register_forward_hook(self._keep)

    def _keep(self, module, args, output):
        self.features = output[0] if isinstance(output, tuple) else output


def answer_accuracy(logits, batch) -> dict[str, tuple[int, int]]:
    """Per type: (correct, total) of the greedy first answer token, teacher-forced."""
    pred = logits[:, :-1].argmax(-1)
    gold, types = batch.labels[:, 1:], batch.answer_types[:, 1:]
    out = {}
    for i, name in enumerate(TYPES):
        at = types == i
        out[name] = (int((pred[at] == gold[at]).sum()), int(at.sum()))
    return out


def aux_loss(head, features, patch_labels):
    """Dense cross-entropy of the per-patch colour, shape and digit classes (CLS dropped, as LLaVA does)."""
    logits = head(features[:, 1:].float()).split(AUX_CLASSES, dim=-1)
    return sum(F.cross_entropy(lg.flatten(0, 1), patch_labels[..., k].flatten()) for k, lg in enumerate(logits))


def losses(model, head, tap, batch, device):
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        pixel_values=batch.pixel_values.to(device),
    )
    logits = out.logits.float()
    text = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten().to(device), ignore_index=-100)
    aux = aux_loss(head, tap.features, batch.patch_labels.to(device))
    return text, aux, logits.detach().cpu()


def pretrain_vision(model, head, tap, recipe: Recipe, rng, device, log):
    """Stage 1: the vision tower alone learns what every patch shows (cheap: no language model)."""
    tower = model.model.vision_tower
    params = [p for p in list(tower.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay)
    start = time.time()
    for step in range(recipe.vision_steps):
        _, pixels, labels = scene_batch(rng, recipe.vision_batch, recipe.image_size, recipe.grid)
        for group in opt.param_groups:
            group["lr"] = recipe.lr * min(1.0, (step + 1) / recipe.warmup)
        tower(pixels.to(device))
        loss = aux_loss(head, tap.features, labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 25 == 0:
            log(json.dumps({"vision_step": step + 1, "aux": round(loss.item(), 4),
                            "images_per_s": round((step + 1) * recipe.vision_batch / (time.time() - start), 1)}))


def train(recipe: Recipe, out_dir: Path | None, log=print, device: str | None = None) -> dict:
    """Both stages of ``recipe``; saves the checkpoint to ``out_dir`` (None: keep nothing) and returns stats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _train(recipe, out_dir, log, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    finally:
        torch.set_num_threads(threads)


def _train(recipe: Recipe, out_dir: Path | None, log, device: str) -> dict:
    processor = build_processor(recipe)
    model = build_model(recipe, processor.tokenizer).to(device)
    head = torch.nn.Linear(recipe.vision_hidden, sum(AUX_CLASSES)).to(device)
    tap = VisionTap(model)
    encoder = Encoder(processor.tokenizer, recipe.visual_tokens)
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.98))
    rng = random.Random(recipe.seed * 1_000_003 + 17)  # the benchmark's eval split uses its own seed
    log(json.dumps({"recipe": recipe.to_dict(), "params": param_count(model), "device": device}))
    model.train()
    t0 = time.time()
    pretrain_vision(model, head, tap, recipe, rng, device, log)
    vision_s = time.time() - t0
    start, seen, window = time.time(), 0, {}
    for step in range(recipe.steps):
        batch = make_batch(rng, encoder, recipe.batch, recipe.questions, recipe.image_size,
                           type_weights(step, recipe))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe)
        text, aux, logits = losses(model, head, tap, batch, device)
        loss = text + recipe.aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        seen += recipe.batch
        for name, (c, n) in answer_accuracy(logits, batch).items():
            old = window.get(name, (0, 0))
            window[name] = (old[0] + c, old[1] + n)
        if (step + 1) % 25 == 0 or step + 1 == recipe.steps:
            elapsed = time.time() - start
            acc = {k: round(c / n, 3) for k, (c, n) in window.items() if n}
            log(json.dumps({"step": step + 1, "loss": round(text.item(), 4), "aux": round(aux.item(), 4),
                            "lr": round(lr_at(step, recipe), 6), "scenes_per_s": round(seen / elapsed, 2),
                            "elapsed_s": round(elapsed), "train_acc": acc}))
            window = {}
            if out_dir is not None and (step + 1) % 500 == 0:
                save(model, processor, recipe, out_dir, {"step": step + 1, "partial": True})
    stats = {"steps": recipe.steps, "vision_wall_s": round(vision_s, 1), "wall_s": round(time.time() - t0, 1),
             "scenes_per_s": round(seen / (time.time() - start), 2), "threads": recipe.threads, "device": device}
    if out_dir is not None:
        save(model, processor, recipe, out_dir, stats)
    return stats


def save(model, processor, recipe: Recipe, out_dir: Path, stats: dict):
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "recipe.json").write_text(json.dumps({"recipe": recipe.to_dict(), "training": stats}, indent=1))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tokenprune.zoo.train", description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="shapes-llava-144", choices=sorted(RECIPES))
    ap.add_argument("--out", type=Path, help="checkpoint folder (default: the packaged one for the recipe)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--device")
    args = ap.parse_args(argv)
    recipe = RECIPES[args.recipe]
    changes = {k: getattr(args, k) for k in ("steps", "threads", "seed") if getattr(args, k) is not None}
    recipe = recipe.with_(**changes)
    out = args.out or Path(__file__).parent / "checkpoints" / recipe.name
    stats = train(recipe, out, log=lambda line: print(line, flush=True), device=args.device)
    print(json.dumps({"saved": str(out), **stats}))


if __name__ == "__main__":
    main()
