"""The EvalAI/VQA normaliser, leave-one-out VQA accuracy and exact match,
one hand-made case per rule in docs/benchmarks.md ("Scoring, per benchmark")."""
import pytest

from tokenprune.benchmarks.scoring.vqa import (exact_match, gqa_llava_match, normalize_answer,
                                                truncate_at, vqa_accuracy)


@pytest.mark.parametrize("raw, expected", [
    ("Yes", "yes"),                          # lower-case
    ("  red  ", "red"),                      # strip
    ("3,000", "3000"),                       # commas removed outright
    ("why?", "why"),                         # question marks removed outright
    ("the man's hat", "man 's hat"),         # "'s" split off; article dropped
    ("a dog", "dog"), ("an apple", "apple"), ("The End", "end"),   # articles a/an/the
    ("two", "2"), ("none", "0"), ("ten cats", "10 cats"), ("eleven", "eleven"),  # number words 0-10 only
    ("dont", "don't"), ("isnt it", "isn't it"), ("youre", "you're"),  # contractions restored
    ("end.", "end"), ("1.5", "1.5"), ("u.s.a.", "usa"),  # periods go unless a digit follows
    ("black-and-white", "black and white"),  # punctuation touching no space becomes a space
    ("red - white", "red white"),  # ...and is deleted when it touches a space
    ("(left)", "left"), ("yes!", "yes"),
    ("multi\nline\ttext", "multi line text"),
    ("it's", "it 's"),
])
def test_normalize_answer_rules(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_rule_looks_at_the_whole_answer():
    # One "-" touches a space, so every "-" is deleted (not spaced).
    assert normalize_answer("x-y - z") == "xy z"
    assert normalize_answer("x-y z") == "x y z"


def test_period_quirk_at_most_32_removed():
    text = "." * 40 + "x"
    assert normalize_answer(text) == "." * 8 + "x"


def test_vqa_accuracy_leave_one_out():
    ten = ["cat"] * 10
    assert vqa_accuracy("cat", ten) == 1.0
    assert vqa_accuracy("dog", ten) == 0.0
    # 3 of 10 say "dog": leaving out one of the 3 leaves 2 (2/3), else 3 (1).
    answers = ["dog"] * 3 + ["cat"] * 7
    assert vqa_accuracy("dog", answers) == pytest.approx((3 * (2 / 3) + 7 * 1.0) / 10)
    # 1 of 10: only subsets keeping it match once -> 9/10 * 1/3.
    assert vqa_accuracy("bird", ["bird"] + ["cat"] * 9) == pytest.approx(0.3)
    # 4 or more matches always give 1.
    assert vqa_accuracy("dog", ["dog"] * 4 + ["cat"] * 6) == 1.0
    # Normalisation applies to both sides.
    assert vqa_accuracy("Two Dogs.", ["2 dogs"] * 10) == 1.0
    assert vqa_accuracy("anything", []) == 0.0


def test_exact_match_ignores_case_and_punctuation_but_not_spaces():
    assert exact_match("Yes.", "yes")
    assert exact_match("T-Shirt", "tshirt")
    assert not exact_match(" yes", "yes")
    assert not exact_match("no", "yes")


def test_gqa_llava_match():
    assert gqa_llava_match(" Yes. ", "yes")
    assert gqa_llava_match("T-shirt...", "t-shirt")
    assert not gqa_llava_match("tshirt", "t-shirt")


def test_truncate_at_stop_strings():
    assert truncate_at("cat ASSISTANT: dog", ("ASSISTANT:",)) == "cat "
    assert truncate_at("cat", ("ASSISTANT:",)) == "cat"
