"""Yes/no parsing (POPE, MME per protocol) and the metrics built on it."""
import pytest

from tokenprune.benchmarks.scoring.yesno import (binary_metrics, mme_category_score, mme_label_llava,
                                                  mme_label_lmms, pope_label_llava, pope_label_lmms)


@pytest.mark.parametrize("raw, expected", [
    ("Yes", "yes"), (" no \n", "no"), ("Yes.", "yes."), ("Yes, there is", "yes, there is"),
])
def test_pope_lmms_eval_keeps_the_whole_answer(raw, expected):
    assert pope_label_lmms(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Yes", "yes"), ("No", "no"), ("no", "no"), ("There is not a dog.", "no"),
    ("Yes. But no cat.", "yes"),          # only the first sentence counts
    ("No, there is none", "no"),         # commas removed before splitting
    ("NO", "yes"),                       # case-sensitive word match: anything else is yes
    ("Nothing here", "yes"),             # whole words only
    ("", "yes"),
])
def test_pope_llava_first_sentence_negation(raw, expected):
    assert pope_label_llava(raw) == expected


def test_binary_metrics_counts_neither_answers_as_wrong_and_as_nothing():
    pairs = [("yes", "yes"), ("yes", "no"), ("no", "yes"), ("no", "no"), ("maybe", "yes"), ("maybe", "no")]
    m = binary_metrics(pairs)
    assert m["accuracy"] == pytest.approx(2 / 6)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert binary_metrics([("no", "no")]) == {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize("raw, lmms, llava", [
    ("Yes", "yes", "yes"), ("no.", "no", "no"), ("Yes, it is.", "yes", "yes"),
    ("y", "yes", "other"), ("N", "no", "other"),          # lone letters: lmms-eval only
    ("x", "other", "other"),
    ("The answer is yes", "other", "other"),              # yes/no must be in the first 4 characters
    (" no way", "no", "no"), ("nope", "no", "no"), ("...yes", "yes", "other"),  # lmms-eval drops "." first
])
def test_mme_parsing_per_protocol(raw, lmms, llava):
    assert mme_label_lmms(raw) == lmms
    assert mme_label_llava(raw) == llava


def test_mme_category_score_acc_plus():
    pairs = {"a.png": [1.0, 1.0], "b.png": [1.0, 0.0], "c.png": [0.0, 0.0]}
    # acc 100/50/0, acc+ 100/0/0 -> (200 + 50 + 0) / 3
    assert mme_category_score(pairs) == pytest.approx(250 / 3)
    assert mme_category_score({}) == 0.0
