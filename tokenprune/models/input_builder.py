"""What tokenprune's own input builders share (``qwen_inputs.QwenProcessor``, ``llava_onevision.OnevisionProcessor``).

A builder stands in for a transformers processor that cannot run here (see official_inputs): a
tokenizer, the family's PIL image processor and the chat template, loaded from and saved to a
checkpoint folder as the processor would be, and prompts whose media placeholders are expanded to
one token per visual token before tokenising.
"""
from __future__ import annotations

from typing import Callable

from transformers import AutoTokenizer

from .processor_files import chat_template


class BuilderProcessor:
    """Tokenizer + PIL image processor + chat template, with left padding; subclasses add the media rules."""

    input_builder = "tokenprune"

    def __init__(self, tokenizer, image_processor, chat_template=None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        self.tokenizer.padding_side = "left"

    @staticmethod
    def load_parts(checkpoint: str, image_processor_class) -> tuple:
        """(tokenizer, image processor, chat template) of a checkpoint, the image processor of the given class."""
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        return tokenizer, image_processor_class.from_pretrained(checkpoint), chat_template(checkpoint, tokenizer)

    def save_pretrained(self, path: str):
        if self.chat_template:
            self.tokenizer.chat_template = self.chat_template
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)

    def apply_chat_template(self, conversation, **kwargs):
        return self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template, **kwargs)

    def tokenize(self, texts: list[str]):
        """Expanded prompts to left-padded ids (the chat template already wrote any special tokens)."""
        return self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)


def expand_placeholders(text: str, expansions: dict[str, Callable[[], str]]) -> str:
    """``text`` with every occurrence of a placeholder (a key of ``expansions``) replaced by the next
    expansion its function returns, in order of appearance."""
    out, i, start = [], 0, 0
    while i < len(text):
        hit = next((t for t in expansions if text.startswith(t, i)), None)
        if hit:
            out.append(text[start:i])
            out.append(expansions[hit]())
            i += len(hit)
            start = i
        else:
            i += 1
    out.append(text[start:])
    return "".join(out)
