"""Yes/no answers: parsing (POPE, MME) and the binary metrics built on them."""
from __future__ import annotations


def pope_label_lmms(prediction: str) -> str:
    """lmms-eval POPE: the lower-cased, stripped output itself. Only an exact
    "yes" or "no" can be right; anything else is simply wrong."""
    return prediction.lower().strip()


def pope_label_llava(prediction: str) -> str:
    """LLaVA ``eval_pope.py``: keep the first sentence, drop commas, split on
    spaces; "no" if the words include "No", "no" or "not", else "yes"."""
    text = prediction.strip()  # model_vqa_loader strips the decoded output
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "no" in words or "not" in words) else "yes"


def mme_label_lmms(prediction: str) -> str:
    """lmms-eval MME: lower-case, strip, drop "."; exact yes/no, a lone "y"/"n",
    else "yes"/"no" found in the first 4 characters, else "other"."""
    text = prediction.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    return _first_four(text)


def mme_label_llava(prediction: str) -> str:
    """The official MME ``calculation.py`` on LLaVA's (stripped) output: lower-case;
    exact yes/no, else "yes"/"no" in the first 4 characters, else "other"."""
    text = prediction.strip().lower()
    if text in ("yes", "no"):
        return text
    return _first_four(text)


def _first_four(text: str) -> str:
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def confusion(pairs: list[tuple[str, str]]) -> tuple[int, int, int]:
    """(TP, FP, FN) counts with "yes" as positive, from (predicted label, ground truth)
    pairs. A prediction that is neither "yes" nor "no" counts as none of them
    (lmms-eval's rule; LLaVA's parser never produces one)."""
    tp = sum(1 for p, g in pairs if p == "yes" and g == "yes")
    fp = sum(1 for p, g in pairs if p == "yes" and g == "no")
    fn = sum(1 for p, g in pairs if p == "no" and g == "yes")
    return tp, fp, fn


def binary_metrics(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 (fractions) with "yes" as positive,
    from (predicted label, ground truth) pairs. A prediction that is neither
    "yes" nor "no" is wrong and counts as none of TP/FP/FN (``confusion``).
    Zero denominators give 0."""
    tp, fp, fn = confusion(pairs)
    correct = sum(1 for p, g in pairs if p == g)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": correct / len(pairs) if pairs else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def mme_category_score(pairs: dict[str, list[float]]) -> float:
    """One MME category: mean over images of acc + acc+ (max 200), where an
    image's two questions give acc = 100 * mean(correct) and acc+ = 100 if both
    are right. ``pairs`` maps each image (question_id) to its 0/1 scores."""
    total = 0.0
    for scores in pairs.values():
        acc = 100.0 * sum(scores) / len(scores)
        acc_plus = 100.0 if all(s == 1 for s in scores) else 0.0
        total += acc + acc_plus
    return total / len(pairs) if pairs else 0.0
