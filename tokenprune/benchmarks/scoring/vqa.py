"""Open-ended answer scoring: the EvalAI/VQA answer normaliser, leave-one-out
VQA accuracy (TextVQA, OK-VQA) and exact match (GQA).

The normaliser follows the official VQA evaluation as lmms-eval and the LLaVA
``m4c_evaluator`` apply it, quirks included, because published TextVQA and
OK-VQA numbers depend on them (see the comments marked "quirk").
"""
from __future__ import annotations

import re
import string

# Replaced by a space, or deleted when it touches a space (see _punctuation).
# "," and "?" never get here: the first step deletes them outright.
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA = re.compile(r"(?<=\d),+(?=\d)")
# A period not followed by a digit ("1.5" keeps its point). The official
# pattern also carries a look-behind typo that never fires; it is left out.
_PERIOD = re.compile(r"\.(?!\d)")
# quirk: the official code passes re.UNICODE (= 32) as the *count* of
# re.sub, so at most 32 periods are removed from one answer.
_MAX_PERIODS = 32

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# Contractions written without their apostrophe, mapped back (after
# lower-casing, so the official table's capitalised keys could never match and
# are omitted, as are its identity entries). quirk: "somebody'd" maps to
# "somebodyd" in the official table, and so it does here.
_CONTRACTIONS = dict(
    pair.split(">")
    for pair in """
aint>ain't arent>aren't cant>can't couldve>could've couldnt>couldn't couldn'tve>couldn't've
couldnt've>couldn't've didnt>didn't doesnt>doesn't dont>don't hadnt>hadn't hadnt've>hadn't've
hadn'tve>hadn't've hasnt>hasn't havent>haven't hed>he'd hed've>he'd've he'dve>he'd've hes>he's
howd>how'd howll>how'll hows>how's isnt>isn't itd>it'd itd've>it'd've it'dve>it'd've itll>it'll
maam>ma'am mightnt>mightn't mightnt've>mightn't've mightn'tve>mightn't've
mightve>might've mustnt>mustn't mustve>must've neednt>needn't notve>not've oclock>o'clock
oughtnt>oughtn't ow's'at>'ow's'at 'ows'at>'ow's'at 'ow'sat>'ow's'at shant>shan't
shed've>she'd've she'dve>she'd've shouldve>should've shouldnt>shouldn't
shouldnt've>shouldn't've shouldn'tve>shouldn't've somebody'd>somebodyd
somebodyd've>somebody'd've somebody'dve>somebody'd've somebodyll>somebody'll
somebodys>somebody's someoned>someone'd someoned've>someone'd've someone'dve>someone'd've
someonell>someone'll someones>someone's somethingd>something'd somethingd've>something'd've
something'dve>something'd've somethingll>something'll thats>that's thered>there'd
thered've>there'd've there'dve>there'd've therere>there're theres>there's theyd>they'd
theyd've>they'd've they'dve>they'd've theyll>they'll theyre>they're theyve>they've twas>'twas
wasnt>wasn't wed've>we'd've we'dve>we'd've weve>we've werent>weren't whatll>what'll
whatre>what're whats>what's whatve>what've whens>when's whered>where'd wheres>where's
whereve>where've whod>who'd whod've>who'd've who'dve>who'd've wholl>who'll whos>who's
whove>who've whyll>why'll whyre>why're whys>why's wont>won't wouldve>would've wouldnt>wouldn't
wouldnt've>wouldn't've wouldn'tve>wouldn't've yall>y'all yall'll>y'all'll y'allll>y'all'll
yall'd've>y'all'd've y'alld've>y'all'd've y'all'dve>y'all'd've youd>you'd youd've>you'd've
you'dve>you'd've youll>you'll youre>you're youve>you've
""".split()
)


def _punctuation(text: str) -> str:
    # The official rule looks at the *input* text for every mark: a mark that
    # touches a space anywhere (or any comma between digits) is deleted
    # everywhere, otherwise it becomes a space everywhere.
    out = text
    digit_comma = _DIGIT_COMMA.search(text) is not None
    for mark in _PUNCTUATION:
        if mark + " " in text or " " + mark in text or digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_MAX_PERIODS)


def _digits_articles_contractions(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """The EvalAI answer processor: the same function is applied to predictions and references."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles_contractions(_punctuation(text))


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Leave-one-out VQA accuracy in [0, 1]: the mean over each human answer
    left out of min(1, matches among the others / 3), after normalising both
    sides. No reference answers score 0 (lmms-eval's OK-VQA rule)."""
    pred = normalize_answer(prediction)
    refs = [normalize_answer(a) for a in answers]
    if not refs:
        return 0.0
    total = 0.0
    for left_out in range(len(refs)):
        matches = sum(1 for j, ref in enumerate(refs) if j != left_out and ref == pred)
        total += min(1.0, matches / 3)
    return total / len(refs)


_STRIP_PUNCT = str.maketrans("", "", string.punctuation)


def exact_match(prediction: str, reference: str) -> bool:
    """lmms-eval ``exact_match`` with ignore_case and ignore_punctuation:
    lower-case both sides, delete ``string.punctuation``, compare (no strip)."""
    return prediction.lower().translate(_STRIP_PUNCT) == reference.lower().translate(_STRIP_PUNCT)


def gqa_llava_match(prediction: str, reference: str) -> bool:
    """LLaVA's GQA conversion: the (stripped) output loses trailing periods and
    is lower-cased, then compared with the gold answer as the official GQA
    evaluation does."""
    return prediction.strip().rstrip(".").lower() == reference


def truncate_at(text: str, stops: tuple[str, ...]) -> str:
    """Cut generated text at the first stop string (lmms-eval's ``until``)."""
    for stop in stops:
        cut = text.find(stop)
        if cut != -1:
            text = text[:cut]
    return text
