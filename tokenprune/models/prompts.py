"""Turning a benchmark sample into the model's own prompt text (chat template) and media lists.

Public helpers for adapters' ``build_inputs``, built-in or from a plugin."""
from __future__ import annotations


def user_turn(prompt: str, n_images: int = 0, n_videos: int = 0) -> list[dict]:
    """A one-turn conversation: the media placeholders first, then the question."""
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "video"} for _ in range(n_videos)]
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]


def render(processor, conversation: list[dict], fallback) -> str:
    """The prompt text from the processor's (or tokenizer's) chat template, else ``fallback(conversation)``."""
    for owner in (processor, getattr(processor, "tokenizer", None)):
        if owner is not None and getattr(owner, "chat_template", None):
            return owner.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return fallback(conversation)


def image_turns(processor, samples, fallback, adapter: str) -> tuple[list[str], list[list]]:
    """(prompt texts, images per sample) for a family that takes images only: each sample's question as one
    user turn after its images, rendered with the chat template (else ``fallback``); video frames are refused
    with an error naming ``adapter`` and the sample."""
    texts, images = [], []
    for s in samples:
        imgs, frames = media(s)
        if frames:
            raise ValueError(f"model adapter {adapter!r} takes images, not video frames (sample {s.id!r})")
        texts.append(render(processor, user_turn(s.prompt, n_images=len(imgs)), fallback))
        images.append(imgs)
    return texts, images


def plain_prompt(conversation: list[dict], *, placeholders: dict[str, str], before: str, after: str) -> str:
    """A one-turn conversation written out without a chat template: ``before``, then each content item
    (a media item as its ``placeholders[type]``, text as it is), then ``after``."""
    parts = [placeholders[item["type"]] if item["type"] in placeholders else item["text"]
             for item in conversation[0]["content"]]
    return before + "".join(parts) + after


def vicuna_fallback(conversation: list[dict]) -> str:
    """LLaVA's "USER: <image>\\n... ASSISTANT:" format, for processors saved without a chat template."""
    return plain_prompt(conversation, placeholders={"image": "<image>\n", "video": "<video>\n"},
                        before="USER: ", after=" ASSISTANT:")


def media(sample) -> tuple[list, list | None]:
    """(images, frames) of a benchmark sample; frames None when it has no video."""
    images = list(getattr(sample, "images", None) or [])
    frames = getattr(sample, "frames", None)
    return images, (list(frames) if frames else None)
