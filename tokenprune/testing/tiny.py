"""Parts for tiny random-weight VLMs built offline, for adapter tests (tokenprune's and plugins'):
a word-level tokenizer, a small LLM config, seeded images and benchmark samples.

Greedy tokens of a random model are decided by clear margins when its weights are drawn with a larger
initializer range than real models (``text_config`` uses 0.15).
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image

WORDS = ("a b c d e f g h the cat dog bird car tree red blue green what is in this image picture describe "
         "how many are there where which color left right top bottom yes no one two three four USER ASSISTANT "
         "user assistant system you helpful : . ? , !").split()

PROMPTS = ["what is in this image ?", "describe the picture . how many dog are there ?",
           "which color is the car on the left ? yes or no ?", "is there a cat ?",
           "where is the red bird in this picture , top or bottom ?"]


def word_tokenizer(specials: list[str], words=WORDS, padding_side: str = "left"):
    """A word-level fast tokenizer over ``words``, ids 0.. for ``specials`` first: ``specials[:4]`` are
    pad, bos, eos and unk, the rest are added as special tokens (media placeholders and markers)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(list(specials) + [w for w in dict.fromkeys(words) if w not in specials])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[3]))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    pad, bos, eos, unk = specials[:4]
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token=unk, pad_token=pad, bos_token=bos,
                                  eos_token=eos, padding_side=padding_side)
    tok.add_special_tokens({"additional_special_tokens": list(specials[4:])})
    return tok


def text_config(layers: int, vocab_size: int, **extra) -> dict:
    """A small LLM config (Llama / Qwen2 keys): 64 wide, 4 heads over 2 KV heads (GQA), pad/bos/eos = 0/1/2."""
    base = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.15,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    base.update(extra)
    return base


def images(n: int, seed: int = 0, size=(42, 42)) -> list[Image.Image]:
    """Seeded random RGB images of ``size`` (width, height): smooth blobs plus noise, so features differ
    across the grid."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = size if isinstance(size, tuple) else (size, size)
        coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BILINEAR)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-30, 30, size=(h, w, 3))
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def samples(n: int, *, seed: int = 0, image_sizes=None, frames: int = 0):
    """``n`` benchmark samples with prompts of different lengths, one image each (sizes cycling through
    ``image_sizes``), or ``frames`` video frames each."""
    from ..benchmarks.base import Sample

    out = []
    for i in range(n):
        size = image_sizes[i % len(image_sizes)] if image_sizes else (42, 42)
        media = images(frames or 1, seed=seed * 100 + i, size=size)
        out.append(Sample(id=f"s{i}", prompt=PROMPTS[i % len(PROMPTS)], references=None,
                          **({"frames": media} if frames else {"images": media})))
    return out


def seeded(fn):
    """``fn`` run under ``torch.manual_seed(seed)`` (keyword ``seed``, default 0), the global RNG restored after."""
    @functools.wraps(fn)
    def wrapper(*args, seed: int = 0, **kwargs):
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.random.set_rng_state(state)
    return wrapper


def load_saved(model, processor_parts, adapter: str, **load_kwargs):
    """``model`` and its processor parts (anything with ``save_pretrained``) saved into a temporary folder
    (removed at exit), then loaded back through the registered adapter ``adapter``: the path a real
    checkpoint takes."""
    from .. import models

    path = tempfile.mkdtemp(prefix=f"tiny_{adapter}_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    model.save_pretrained(path)
    for part in processor_parts:
        part.save_pretrained(path)
    return models.load(adapter, path, **load_kwargs)
