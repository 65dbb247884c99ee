"""OCRBench: substring matching of any ground-truth string in the prediction."""
from __future__ import annotations

HME_DATASET = "HME100k"


def fold_fullwidth(text: str) -> str:
    """Full-width ASCII (U+FF01..U+FF5E) to ASCII and the ideographic space to a space."""
    return "".join(
        chr(ord(ch) - 0xFEE0) if 0xFF01 <= ord(ch) <= 0xFF5E else (" " if ch == "\u3000" else ch)
        for ch in text
    )


def _plain(text: str) -> str:
    return fold_fullwidth(text).lower().strip().replace("\n", " ")


def _formula(text: str) -> str:
    # HME100k answers are LaTeX: case matters, spacing does not.
    return text.strip().replace("\n", " ").replace(" ", "")


def ocrbench_hit(prediction: str, answers: list[str] | str, dataset: str) -> bool:
    """A hit if any ground-truth string is contained in the prediction: both
    sides lower-cased, stripped, newlines to spaces and full-width ASCII
    folded; for HME100k, spaces and newlines removed and case kept."""
    norm = _formula if dataset == HME_DATASET else _plain
    pred = norm(prediction.strip())
    refs = [answers] if isinstance(answers, str) else list(answers)
    return any(norm(ref) in pred for ref in refs)
