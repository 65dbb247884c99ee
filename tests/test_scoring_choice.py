"""Option-letter extraction: each protocol's rule on hand-made answers."""
import pytest

from tokenprune.benchmarks.base import Sample
from tokenprune.benchmarks.mmbench import MMBench, scored_options
from tokenprune.benchmarks.scienceqa import ScienceQAImg
from tokenprune.benchmarks.scoring.choice import (egoplan_letter, extract_mcq_answer, mmbench_prefetch,
                                                   parse_mc_egoschema, parse_mc_nextqa, seed_correct,
                                                   sqa_correct, sqa_llava_letter)

OPTS = {"A": "red", "B": "blue", "C": "green", "D": "black"}


@pytest.mark.parametrize("answer, expected", [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("D:", "D"), ("Answer: C)", "C"), ("C, blue", "C"),
    ("It is blue", "B"),                   # no letter token: the unique option text
    ("A bright green car", "C"),          # "A" may be an article in a long answer: text decides
    ("red or blue", None),                # two option texts: undecided
    ("A B", None),                        # two bare letters: undecided
    ("E", "E"),                           # letters A-E are tokens even without an option E
])
def test_mmbench_prefetch(answer, expected):
    assert mmbench_prefetch(answer, OPTS) == expected


@pytest.mark.parametrize("response, expected", [
    ("B", "B"), ("(B) blue", "B"), ("The answer is C.", "C"),
    ("A. red, but really D", "A"),                  # a standalone start letter outranks an end letter
    ("I think (A) fits, but the answer is (C)", "C"),  # phrase beats parentheses
    ("Option D: black", "D"),                       # end? no; "D:" colon
    ("hello", ""), ("", ""), ("   ", ""),
    ("zzz Dz", "D"),                                # fallback: any occurrence
])
def test_extract_mcq_answer(response, expected):
    assert extract_mcq_answer(response, ["A", "B", "C", "D"]) == expected


def test_extract_mcq_answer_respects_choices():
    assert extract_mcq_answer("E", ["A", "B", "C", "D"]) == ""
    assert extract_mcq_answer("E") == "E"


EGO = {"A": "A. cooking", "B": "B. cleaning", "C": "C. reading", "D": "D. painting", "E": "E. sewing"}


def test_egoschema_parser_takes_the_earliest_candidate():
    assert parse_mc_egoschema("B", EGO, "s") == ("B", True)
    assert parse_mc_egoschema("(C) reading.", EGO, "s") == ("C", True)
    # several candidates: the one whose last occurrence is earliest
    assert parse_mc_egoschema("B. or maybe D.", EGO, "s") == ("B", True)
    # long answer with no letter: option text
    assert parse_mc_egoschema("i am sure that c. reading is what he does", EGO, "s") == ("C", True)


def test_nextqa_parser_takes_the_last_candidate():
    opts = {"A": "to play", "B": "to eat", "C": "he fell", "D": "sleep", "E": "run"}
    assert parse_mc_nextqa("B", opts, "s") == ("B", True)
    assert parse_mc_nextqa("(A) or (D)", opts, "s") == ("D", True)
    assert parse_mc_nextqa("A or E maybe", opts, "s") == ("E", True)
    assert parse_mc_nextqa("the boy ran because he fell down", opts, "s") == ("C", True)


def test_unparsed_answers_get_a_seeded_repeatable_guess():
    first = parse_mc_nextqa("no idea", EGO, "nextqa:1")
    assert first[1] is False and first[0] in EGO
    assert parse_mc_nextqa("no idea", EGO, "nextqa:1") == first
    guesses = {parse_mc_egoschema("?", EGO, f"egoschema:{i}")[0] for i in range(40)}
    assert len(guesses) > 1  # the guess depends on the sample


@pytest.mark.parametrize("response, expected", [
    ("B", "B"), ("The best answer is C", "C"), ("The answer: D", "D"),
    ("pick up the knife", ""), ("I would say A", "A"),   # first capital A-D anywhere ("I" is not one)
])
def test_egoplan_letter(response, expected):
    assert egoplan_letter(response) == expected


# ScienceQA, answer B: (prediction, right under lmms-eval, right under LLaVA-1.5's eval_science_qa.py)
SQA_CASES = [
    ("B", True, True), (" B ", True, True), ("B\n", True, True),
    ("b", True, False),                   # LLaVA: case matters
    ("B.", True, False),                  # LLaVA: "X. " needs the space and one more character
    ("B.Georgia", True, False),
    ("B.\n", True, False),
    ("B. Georgia", True, True),
    ("The answer is B.", False, True),    # lmms-eval never reads the phrase
    ("The answer is B, because", False, True),
    ("The answer is Bob", False, True),   # LLaVA: any one character may follow the letter
    ("The answer is B", False, False),    # ... but one must
    ("the answer is B.", False, False),
    ("The answer is A. The answer is B.", False, False),  # LLaVA: the phrase must occur once
    ("The answer is F.", False, False),
    ("I think the answer is B, yes", False, False),  # LLaVA: "The" with a capital
    ("b. cat", False, False),             # lmms-eval: the "X." form needs an uppercase letter
    ("A. frog", False, False), ("B cat", False, False), ("B\nbecause", False, False),
    ("(B)", False, False), ("Answer: B", False, False), ("BC", False, False), ("", False, False),
]


@pytest.mark.parametrize("pred, lmms, llava", SQA_CASES)
def test_sqa_rule_per_protocol(pred, lmms, llava):
    assert sqa_correct(pred, "B") is lmms
    assert (sqa_llava_letter(pred) == "B") is llava
    sample = Sample("q", "", "B")
    assert ScienceQAImg().score(sample, pred)["correct"] == float(lmms)
    llava_score = ScienceQAImg(protocol="llava").score(sample, pred)
    assert llava_score["correct"] == float(llava)
    assert llava_score["pred"] == sqa_llava_letter(pred)


def test_sqa_llava_reads_nothing_as_none():
    assert sqa_llava_letter("B.") is None and sqa_llava_letter("") is None
    assert sqa_llava_letter("E") == "E" and sqa_llava_letter("The answer is Q.") == "Q"


# MMBench: options A "apple", B "pear", D "plum", and C missing in one of the forms below.
# lmms-eval's prompt drops all of them; its scorer drops only None and NaN (pandas isna), so a
# "nan" or "" option stays a choice there, and a missing column reads as "nan".
MISSING_FORMS = {"None": None, "NaN": float("nan"), "string nan": "nan", "empty": "", "no column": "ABSENT"}


def mmbench_row(form):
    row = {"index": 1, "A": "apple", "B": "pear", "D": "plum", "answer": "A"}
    if form != "ABSENT":
        row["C"] = form
    return row


@pytest.mark.parametrize("form", MISSING_FORMS)
def test_mmbench_missing_option_forms_score_as_lmms_eval(form):
    options = scored_options(mmbench_row(MISSING_FORMS[form]))
    kept = form not in ("None", "NaN")
    assert set(options) == ({"A", "B", "C", "D"} if kept else {"A", "B", "D"})
    meta = {"index": 1, "circular": 1, "options": options}

    def read(answer, reference="A"):
        return MMBench().score(Sample("1", "", reference, meta=meta), answer)

    # "banana" contains "nan" (and ""): a kept option C is the one option text in it
    assert read("banana")["pred"] == ("C" if kept else None)
    # with "apple" too, two option texts tie and nothing is read; else "apple" decides
    assert read("banana apple")["correct"] == float(not kept)
    # the regex fallback chooses among the kept letters and takes the last one it finds
    assert read("Bird Cat", "B")["pred"] == ("C" if kept else "B")
    # an empty option text is contained in every answer, so it ties with "apple"
    assert read("apple")["correct"] == float(form != "empty")
