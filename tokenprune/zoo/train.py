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
from transformers.models.llama.modeling_llama import rotate_half

from ..benchmarks.shapes_scene import COLORS, DIGITS, REGIONS, SHAPES, TYPES
from .build import build_model, build_processor, param_count
from .data import AUX_CLASSES, GATHER_HEADS, Encoder, make_batch, scene_batch
from .recipe import RECIPES, Recipe

EASY = {"exist": 1.0, "color": 1.0, "shape": 1.0, "ocr": 1.0, "count": 0.25, "relation": 0.25}
ALL = {"exist": 1.5, "color": 1.0, "shape": 1.0, "ocr": 1.0, "count": 2.0, "relation": 2.5}


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


class RouteTap:
    """Where one attention head of one decoder layer looks from each question's last prompt token.

    Training pulls a few heads' attention to where the answer lies
    (``data.focus`` and ``data.look``): heads of layers 0 and 1 to the
    question's words (every content word; for a relation, one item per head
    and the relation word), and heads 0 and 1 of ``route_layer`` over ``<s>``
    and the visual tokens to the patches the answer rests on, with ``<s>`` as
    the sink for "nothing here" and, in counting, the share that makes the
    attention mass encode the count. It gives the language model the grounding
    a real LLaVA inherits from its pre-training, in a layer at or after the
    usual prune point (K=2), so removing the wrong tokens costs answers.
    """

    def __init__(self, model, layer: int, head: int = 0):
        self.attn = model.model.language_model.layers[layer].self_attn
        if not 0 <= head < self.attn.config.num_attention_heads:
            raise ValueError(f"head {head} is not a head of layer {layer}")
        self.head = head
        self.attn.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs):
        self.hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.rope = kwargs["position_embeddings"]

    def loss(self, at: torch.Tensor, target: torch.Tensor, keys: slice | torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the head's attention from positions ``at`` [M, 2] (row, position) to ``target``.

        ``keys``: a slice (the same span in every row, e.g. the image) with ``target`` [M, span],
        or a bool [M, L] mask of the keys to normalise over with ``target`` [M, L].
        """
        if len(at) == 0:
            return self.hidden.new_zeros(())
        attn, cfg = self.attn, self.attn.config
        hd, n_kv = attn.head_dim, cfg.num_key_value_heads
        kv = self.head // (cfg.num_attention_heads // n_kv)
        rows, pos = at[:, 0], at[:, 1]
        cos, sin = self.rope
        q = attn.q_proj(self.hidden[rows, pos]).view(len(rows), -1, hd)[:, self.head]
        q = q * cos[rows, pos] + rotate_half(q) * sin[rows, pos]
        span = keys if isinstance(keys, slice) else slice(None)
        k = attn.k_proj(self.hidden[:, span]).view(self.hidden.shape[0], -1, n_kv, hd)[:, :, kv]
        k = k * cos[:, span] + rotate_half(k) * sin[:, span]
        scores = torch.einsum("mnd,md->mn", k[rows], q).float() * attn.scaling
        if not isinstance(keys, slice):
            scores = scores.masked_fill(~keys, float("-inf"))
        logp = scores.log_softmax(-1)
        return -torch.where(target > 0, target * logp, 0.0).sum(-1).mean()


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


class Speaker:
    """Alignment of the projector's output with the words for what each patch shows.

    Read through the (tied) word embeddings, a visual token should name its
    colour, shape or digit and the word for its 3x3 cell, as
    LLaVA's stage-1 alignment puts patches near the words for them. Answering
    then needs a copy, which a small language model learns fast, instead of
    a new code. A forward hook keeps the projector output of each forward.
    """

    def __init__(self, model, tokenizer, grid: int):
        ids = tokenizer.convert_tokens_to_ids
        self.model = model
        self.words = [torch.tensor(ids(list(ws))) for ws in (COLORS, SHAPES, DIGITS, REGIONS)]
        band = torch.arange(grid) * 3 // grid
        self.cells = (band[:, None] * 3 + band[None, :]).flatten()  # the 3x3 cell of each patch, raster order
        self.visual = None
        model.model.multi_modal_projector.register_forward_hook(self._keep)

    def _keep(self, module, args, output):
        self.visual = output

    def loss(self, patch_labels: torch.Tensor) -> torch.Tensor:
        emb = self.model.get_input_embeddings().weight
        B = patch_labels.shape[0]
        total = 0.0
        targets = [patch_labels[..., k] - 1 for k in range(3)]
        targets.append(self.cells.expand(B, -1))
        for words, target in zip(self.words, targets):
            logits = self.visual.float() @ emb[words.to(emb.device)].float().T  # [B, N, |words|]
            total = total + F.cross_entropy(logits.flatten(0, 1), target.flatten().to(emb.device), ignore_index=-1)
        return total


def losses(model, head, tap, routers, finders, gatherers, batch, device):
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        pixel_values=batch.pixel_values.to(device),
    )
    logits = out.logits.float()
    text = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten().to(device), ignore_index=-100)
    aux = aux_loss(head, tap.features, batch.patch_labels.to(device))
    prefix = slice(0, batch.routes[0][1].shape[1])  # <s> (the sink), USER, :, then the image tokens
    route = sum(r.loss(at.to(device), t.to(device), prefix) for r, (at, t) in zip(routers, batch.routes))
    route = route + sum(f.loss(at.to(device), t.to(device), prefix) for f, (at, t) in zip(finders, batch.finds))
    route = route + sum(g.loss(at.to(device), t.to(device), k.to(device))
                        for g, (at, t, k) in zip(gatherers, batch.gathers))
    return text, aux, route, logits.detach().cpu()


def warm_up_text(model, encoder, recipe: Recipe, rng, device, log):
    """Stage 2: the language model learns to read questions (answer sets, priors) with no image.

    With the image in view, 144 visual tokens drown the few question words in
    every attention average and reading the question comes late; without it,
    it takes a few dozen steps. Positions are those of the full prompt.
    """
    lm = [p for n, p in model.named_parameters() if "vision_tower" not in n and p.requires_grad]
    opt = torch.optim.AdamW(lm, lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay)
    window = {}
    for step in range(recipe.text_steps):
        batch = make_batch(rng, encoder, recipe.text_batch, recipe.questions, recipe.image_size, ALL, image=False)
        for group in opt.param_groups:
            group["lr"] = recipe.lr * min(1.0, (step + 1) / recipe.warmup)
        logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                       position_ids=batch.position_ids.to(device)).logits.float()
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten().to(device),
                               ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm, 1.0)
        opt.step()
        for name, (c, n) in answer_accuracy(logits.detach().cpu(), batch).items():
            old = window.get(name, (0, 0))
            window[name] = (old[0] + c, old[1] + n)
        if (step + 1) % 25 == 0:
            acc = {k: round(c / n, 3) for k, (c, n) in window.items() if n}
            log(json.dumps({"text_step": step + 1, "loss": round(loss.item(), 4), "train_acc": acc}))
            window = {}


def pretrain_vision(model, head, tap, speaker, recipe: Recipe, rng, device, log):
    """Stage 1, no language model (cheap): the vision tower learns what every patch shows, and
    the projector learns to put each patch next to the words for it (``Speaker``)."""
    parts = [model.model.vision_tower, model.model.multi_modal_projector, model.get_input_embeddings(), head]
    params = [p for part in parts for p in part.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay)
    start = time.time()
    for step in range(recipe.vision_steps):
        _, pixels, labels = scene_batch(rng, recipe.vision_batch, recipe.image_size, recipe.grid)
        for group in opt.param_groups:
            group["lr"] = recipe.lr * min(1.0, (step + 1) / recipe.warmup)
        model.get_image_features(pixel_values=pixels.to(device), vision_feature_layer=-1,
                                 vision_feature_select_strategy="default")
        aux = aux_loss(head, tap.features, labels.to(device))
        said = speaker.loss(labels.to(device))
        loss = aux + recipe.speak_weight * said
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 25 == 0:
            log(json.dumps({"vision_step": step + 1, "aux": round(aux.item(), 4), "speak": round(said.item(), 4),
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
    routers = [RouteTap(model, recipe.route_layer, h) for h in (0, 1)]  # read a named cell of the image
    finders = [RouteTap(model, 0, h) for h in (0, 1)]  # attribute words find their shapes in the image
    gatherers = [RouteTap(model, layer, h) for layer, h in GATHER_HEADS]  # these read the question
    speaker = Speaker(model, processor.tokenizer, recipe.grid)
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
    pretrain_vision(model, head, tap, speaker, recipe, rng, device, log)
    vision_s = time.time() - t0
    warm_up_text(model, encoder, recipe, rng, device, log)
    text_s = time.time() - t0 - vision_s
    start, seen, window = time.time(), 0, {}
    for step in range(recipe.steps):
        batch = make_batch(rng, encoder, recipe.batch, recipe.questions, recipe.image_size,
                           type_weights(step, recipe))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe)
        text, aux, route, logits = losses(model, head, tap, routers, finders, gatherers, batch, device)
        said = speaker.loss(batch.patch_labels.to(device))
        loss = text + recipe.aux_weight * aux + recipe.route_weight * route + recipe.speak_weight * said
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
                            "route": round(route.item(), 4), "speak": round(said.item(), 4),
                            "lr": round(lr_at(step, recipe), 6), "scenes_per_s": round(seen / elapsed, 2),
                            "elapsed_s": round(elapsed), "train_acc": acc}))
            window = {}
            if out_dir is not None and (step + 1) % 500 == 0:
                save(model, processor, recipe, out_dir, {"step": step + 1, "partial": True})
    stats = {"steps": recipe.steps, "vision_wall_s": round(vision_s, 1), "text_wall_s": round(text_s, 1), "wall_s": round(time.time() - t0, 1),
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
