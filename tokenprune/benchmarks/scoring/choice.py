"""Option letters from free-form answers: the extractors the protocols use.

Each benchmark used its own rule in lmms-eval, and scores depend on which, so
each rule is kept separately and named after where it is used:

- ``mmbench_prefetch``: MMBench's letter-or-unique-option-text inference;
- ``extract_mcq_answer``: lmms-eval's regex-only MCQ extractor (MMBench static, Video-MME);
- ``parse_mc_egoschema`` / ``parse_mc_nextqa``: the two MMMU-style parsers;
- ``sqa_correct`` (lmms-eval) and ``sqa_llava_letter`` (LLaVA-1.5): ScienceQA's two rules;
- ``egoplan_letter``, ``seed_correct``: one-line rules.
"""
from __future__ import annotations

import random
import re

LETTERS = "ABCDEFGH"


# --- MMBench: prefetch (letter token, then unique option text) -------------

def _infer_letter(answer: str, letters: str = "ABCDE") -> str | None:
    tokens = [t.strip() for t in answer.split()]
    bare = [c for c in letters if c in tokens]
    if len(bare) == 1:
        # A lone "A" in a longer answer may be the article, so only trust a
        # bare letter when it is not "A" in an answer of more than 3 words.
        if not ("A" in tokens and len(tokens) > 3):
            return bare[0]
    for prefix, suffix in (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"),
                           ("(", ")."), (":", ""), (":", ","), (":", "."), (":", ")"), (":", ").")):
        hits = [c for c in letters if prefix + c + suffix in tokens]
        if len(hits) == 1:
            return hits[0]
    return None


def _infer_from_text(answer: str, options: dict[str, str]) -> str | None:
    lowered = answer.lower()
    hits = [letter for letter, text in options.items() if str(text).lower() in lowered]
    return hits[0] if len(hits) == 1 else None


def mmbench_prefetch(answer: str, options: dict[str, str]) -> str | None:
    """MMBench's rule-based inference: a letter token (A, "A.", "(A)", "A:" ...,
    exactly one such letter among A-E), else the one option whose text is
    contained in the answer (case-insensitive). None when undecided."""
    return _infer_letter(answer) or _infer_from_text(answer, options)


# --- lmms-eval's regex MCQ extractor -----------------------------------------

_ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is",
    "the best answer is", "best answer is", "the correct option is", "correct option is",
    "the best option is", "best option is", "the choice is", "choice is",
    "the correct choice is", "correct choice is", "i choose", "i select", "i pick",
    "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
# Higher wins; ties go to the later position in the text.
_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4,
             "right_paren": 3, "space": 2, "fallback": 0}


def extract_mcq_answer(response: str, choices: list[str] | str | None = None) -> str:
    """The letter a free-form answer picks, or "" when none is found.

    Candidates come from "(A)", "A.", "A:", "A)", "A " (last occurrence each),
    a letter after an answer phrase ("the answer is ..."), a standalone letter
    at the start or the end; only if none of these, any occurrence. The highest
    priority format wins, then the later position.
    """
    if not response or not response.strip():
        return ""
    letters = list(choices) if choices else list(LETTERS)
    text = response.strip()
    for char in ",.!?;:'\"":
        text = text.strip(char)
    text = f" {text} "
    found: list[tuple[int, int, str]] = []  # (priority, position, letter)

    for fmt, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"),
                         ("right_paren", "{})"), ("space", "{} ")):
        for letter in letters:
            needle = pattern.format(letter)
            if needle in text:
                found.append((_PRIORITY[fmt], text.rfind(needle), letter))
    lowered = text.lower()
    for phrase in _ANSWER_PHRASES:
        at = lowered.find(phrase)
        if at != -1:
            for letter in letters:
                pos = text.find(letter, at + len(phrase))
                if pos != -1:
                    found.append((_PRIORITY["phrase"], pos, letter))
    core = text.strip()
    for letter in letters:
        if core.startswith(letter) and (len(core) == 1 or not core[1].isalpha()):
            found.append((_PRIORITY["start"], 0, letter))
        if core.endswith(letter) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((_PRIORITY["end"], len(text) - 1, letter))
    if not found:
        found = [(0, text.rfind(letter), letter) for letter in letters if letter in text]
    if not found:
        return ""
    # Stable sort, descending: equal (priority, position) keeps insertion order.
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return found[0][2]


# --- MMMU-style parsers (EgoSchema, NExT-QA) ----------------------------------

def _mmmu_clean(response: str) -> str:
    for char in ",.!?;:'":
        response = response.strip(char)
    return f" {response} "


def _guess(letters: list[str], seed: str) -> str:
    # lmms-eval guesses with the global RNG when nothing parses; we guess with
    # an RNG seeded by the sample so scoring stays pure and repeatable.
    return random.Random(seed).choice(letters)


def parse_mc_egoschema(response: str, options: dict[str, str], seed: str) -> tuple[str, bool]:
    """lmms-eval's EgoSchema parser: (letter, parsed). Collects every "(X)",
    "X " and "X." present and takes the one occurring *first* (by last
    occurrence); with none and a long answer (> 5 words), option texts
    contained in it; with nothing at all, a seeded random guess."""
    letters = list(options)
    text = _mmmu_clean(response)
    cands = [f"({c})" for c in letters if f"({c})" in text]
    cands += [f"{c} " for c in letters if f"{c} " in text]
    cands += [f"{c}." for c in letters if f"{c}." in text]
    by_text = False
    if not cands and len(text.split()) > 5:
        cands = [c for c, ans in options.items() if ans.lower() in text.lower()]
        by_text = True
    if not cands:
        return _guess(letters, seed), False
    if by_text:
        positions = [text.lower().rfind(options[c].lower()) for c in cands]
    else:
        positions = [text.rfind(c) for c in cands]
    best = cands[positions.index(min(positions))]
    return best.replace("(", "").replace(")", "").replace(".", "").strip(), True


def parse_mc_nextqa(response: str, options: dict[str, str], seed: str) -> tuple[str, bool]:
    """lmms-eval's NExT-QA parser: (letter, parsed). Tries "(X)", then "X ",
    then "X." (each only when the previous found nothing), then option texts
    in a long answer (> 5 words); among several, the *last* one wins; nothing
    at all gives a seeded random guess."""
    letters = list(options)
    text = _mmmu_clean(response)
    cands = [c for c in letters if f"({c})" in text]
    bracketed = bool(cands)
    if not cands:
        cands = [c for c in letters if f"{c} " in text]
    if not cands:
        cands = [c for c in letters if f"{c}." in text]
    by_text = False
    if not cands and len(text.split()) > 5:
        cands = [c for c, ans in options.items() if ans.lower() in text.lower()]
        by_text = True
    if not cands:
        return _guess(letters, seed), False
    if len(cands) == 1:
        return cands[0], True
    if by_text:
        positions = [text.lower().rfind(options[c].lower()) for c in cands]
    elif bracketed:
        positions = [text.rfind(f"({c})") for c in cands]
    else:
        positions = [text.rfind(f" {c} ") for c in cands]
    return cands[positions.index(max(positions))], True


# --- one-line rules --------------------------------------------------------------

_EGOPLAN_PREFIXES = (
    "The best answer is", "The correct answer is", "The answer is", "The answer",
    # quirk: two prefixes are run together in lmms-eval's list, so these only
    # match that exact concatenation
    "The best option isThe correct option is", "Best answer:Best option:",
)


def egoplan_letter(response: str) -> str:
    """lmms-eval's EgoPlan rule: drop answer prefixes, then the first capital
    A-D anywhere in the text; "" if none."""
    text = response.strip()
    for prefix in _EGOPLAN_PREFIXES:
        text = text.replace(prefix, "")
    for char in text:
        if char in "ABCD":
            return char
    return ""


def sqa_correct(prediction: str, letter: str) -> bool:
    """ScienceQA, lmms-eval's rule: the stripped output equals the letter
    (case-insensitive), or starts with an uppercase letter and "." and that
    letter matches. "b", "B." and "B.Georgia" are right for B; "The answer is B." is not."""
    pred = prediction.strip()
    target = letter.strip().lower()
    if pred.lower() == target:
        return True
    if len(pred) >= 2 and pred[0].isupper() and pred[1] == ".":
        return pred[0].lower() == target
    return False


SQA_LLAVA_OPTIONS = ("A", "B", "C", "D", "E")  # eval_science_qa.py's --options
# any one character after the letter, and it must occur exactly once
_SQA_LLAVA_PHRASE = re.compile(r"The answer is ([A-Z]).")


def sqa_llava_letter(prediction: str) -> str | None:
    """ScienceQA, LLaVA-1.5's rule (model_vqa_science.py strips the output,
    eval_science_qa.py reads it): the whole output is one of A-E; or it starts
    with a letter A-E, a period and a space; or "The answer is X" plus one more
    character occurs exactly once. Case matters. None when none of these holds
    (the script's "FAILED", scored wrong): "b", "B." and "B.Georgia" read
    nothing, "B. Georgia" and "The answer is B." read B."""
    text = prediction.strip()
    if text in SQA_LLAVA_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in SQA_LLAVA_OPTIONS and text[1:3] == ". ":
        return text[0]
    found = _SQA_LLAVA_PHRASE.findall(text)
    return found[0] if len(found) == 1 else None


def seed_letter(prediction: str) -> str:
    """SEED-Bench: the first character of the stripped output."""
    return prediction.strip()[:1]


def seed_correct(prediction: str, letter: str) -> bool:
    return seed_letter(prediction).lower().strip() == letter.lower().strip()
