"""OCRBench substring matching, full-width folding and the HME100k rule."""
from tokenprune.benchmarks.scoring.ocr import fold_fullwidth, ocrbench_hit


def test_substring_lowercase_and_newlines():
    assert ocrbench_hit("The sign says STOP here", ["stop"], "IIIT5K")
    assert ocrbench_hit("new\nyork city", ["New York"], "IIIT5K")
    assert not ocrbench_hit("sto p", ["stop"], "IIIT5K")
    assert ocrbench_hit("a", "A", "IIIT5K")  # a bare string answer works too
    assert ocrbench_hit("x", ["nope", "X"], "IIIT5K")  # any answer may hit


def test_fullwidth_ascii_is_folded():
    assert fold_fullwidth("ＡＢＣ１２\u3000x") == "ABC12 x"
    assert ocrbench_hit("ＳＴＯＰ", ["stop"], "IIIT5K")


def test_hme_keeps_case_and_ignores_spaces():
    assert ocrbench_hit("x ^ { 2 }\n+ 1", ["x^{2}+1"], "HME100k")
    assert not ocrbench_hit("X^{2}+1", ["x^{2}+1"], "HME100k")
    assert ocrbench_hit("X^{2}+1", ["x^{2}+1"], "IIIT5K")  # other sets fold case
