"""The optional lmms-eval bridge. Its model logic is tested with a fake VLM;
the tests that need lmms-eval itself (entry point resolution, and our scorers
agreeing with lmms-eval's on the same predictions) skip when it is absent."""
import configparser
import importlib.util
from pathlib import Path

import pytest
from PIL import Image

import tokenprune
import tokenprune.models
from tokenprune.integrations import lmms as bridge

HAVE_LMMS = importlib.util.find_spec("lmms_eval") is not None
needs_lmms = pytest.mark.skipif(not HAVE_LMMS, reason="lmms-eval is not installed (pip install tokenprune[lmms])")


def test_setup_cfg_declares_the_lmms_eval_entry_point_and_extra():
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    points = cfg["options.entry_points"]["lmms_eval.models"].split()
    assert points == ["tokenprune", "=", "tokenprune.integrations.lmms:manifests"]
    assert "lmms-eval" in cfg["options.extras_require"]["lmms"]
    assert "tokenprune.integrations" in cfg["options"]["packages"].split()
    assert "lmms-eval" not in cfg["options"]["install_requires"]


def test_module_imports_without_lmms_eval_and_says_what_is_missing(monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "lmms_eval" or m.startswith("lmms_eval.")] + ["lmms_eval"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if lmms-eval were not installed
    monkeypatch.delitem(vars(bridge), "TokenpruneLMMS", raising=False)  # built on first access when it is
    with pytest.raises(ModuleNotFoundError, match="lmms_eval"):
        bridge.TokenpruneLMMS
    with pytest.raises(ModuleNotFoundError, match="lmms_eval"):
        bridge.manifests()


class FakeVLM:
    def __init__(self):
        self.inputs = []

    def build_inputs(self, samples):
        self.inputs.append(samples)
        return {"n": len(samples)}

    def generate(self, inputs, max_new_tokens=16):
        self.max_new_tokens = max_new_tokens

        class Result:
            texts = ["Yes ASSISTANT: and more"]

        return Result()


class FakeHandle:
    cleared = 0

    def clear(self):
        FakeHandle.cleared += 1


@pytest.fixture
def fake_engine(monkeypatch):
    calls = {}

    def load(adapter, checkpoint, **kw):
        calls["load"] = (adapter, checkpoint, kw)
        calls["vlm"] = FakeVLM()
        return calls["vlm"]

    def apply(vlm, strategy, budget=None, **kw):
        calls["apply"] = (strategy, budget, kw)
        return FakeHandle()

    monkeypatch.setattr(tokenprune.models, "load", load)
    monkeypatch.setattr(tokenprune, "apply", apply)
    return calls


def test_generator_loads_attaches_strategy_and_generates(fake_engine, tmp_path):
    gen = bridge.PrunedGenerator("llava", "ckpt", strategy="fastv", budget="64", device="cpu",
                                 num_frames="2", layer="3", faithful="true")
    assert fake_engine["load"] == ("llava", "ckpt", {"dtype": "float16", "attn_implementation": "sdpa",
                                                     "device": "cpu"})
    strategy, budget, kw = fake_engine["apply"]
    assert (strategy, budget) == ("fastv", 64) and kw["layer"] == 3 and kw["faithful"] is True
    # A PIL image stays an image; a video path becomes uniformly sampled frames.
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(5):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(frames / f"{i}.png")
    before = FakeHandle.cleared
    text = gen.generate("Is it red?", [Image.new("L", (4, 4)), str(frames)],
                        {"max_new_tokens": 7, "until": ["ASSISTANT:"]}, "pope:3")
    assert text == "Yes "
    (sample,), = fake_engine["vlm"].inputs
    assert sample.id == "pope:3" and sample.prompt == "Is it red?"
    assert sample.images[0].mode == "RGB" and [f.getpixel((0, 0))[0] for f in sample.frames] == [0, 4]
    assert fake_engine["vlm"].max_new_tokens == 7 and FakeHandle.cleared == before + 1


def test_generator_without_strategy_prunes_nothing_and_rejects_stray_args(fake_engine):
    gen = bridge.PrunedGenerator("llava", "ckpt")
    assert gen.handle is None and "apply" not in fake_engine
    with pytest.raises(TypeError, match="unknown model_args layer"):
        bridge.PrunedGenerator("llava", "ckpt", layer=3)


def test_cut_at_stops():
    assert bridge.cut_at_stops("a\nb", "\n") == "a"
    assert bridge.cut_at_stops("abc", None) == "abc"
    assert bridge.cut_at_stops("x USER: y ASSISTANT: z", ["ASSISTANT:", "USER:"]) == "x "


# --- with lmms-eval installed ------------------------------------------------------

@needs_lmms
def test_entry_point_resolves_to_an_lmms_model():
    from lmms_eval.api.model import lmms

    (manifest,) = bridge.manifests()
    assert manifest.model_id == "tokenprune" and manifest.simple_class_path == bridge.CLASS_PATH
    assert issubclass(bridge.TokenpruneLMMS, lmms) and bridge.TokenpruneLMMS.is_simple


@needs_lmms
def test_lmms_eval_runs_the_bundled_model_through_the_bridge():
    """lmms-eval resolves --model tokenprune through the entry point and answers its generate_until
    requests (lmms-eval's own Instance objects) exactly as tokenprune's pruned generation does."""
    from lmms_eval.api.instance import Instance
    from lmms_eval.models import get_model

    from tokenprune.benchmarks.shapes import Shapes
    from tokenprune.runner.execute import resolve_checkpoint

    model = get_model("tokenprune")(adapter="llava", checkpoint="zoo:shapes-llava-144", strategy="fastv",
                                    budget="16", layer="2", dtype="float32", device="cpu")
    samples = list(Shapes(limit=3).samples())
    model.task_dict = {"shapes": {"test": {i: s for i, s in enumerate(samples)}}}
    gen_kwargs = {"max_new_tokens": 4, "until": ["\n"]}
    requests = [Instance("generate_until", (s.prompt, dict(gen_kwargs), lambda doc: doc.images, i, "shapes", "test"),
                         idx=0, metadata={"task": "shapes", "doc_id": i, "repeats": 1}) for i, s in enumerate(samples)]
    answers = model.generate_until(requests)
    handle = model.generator.handle
    assert handle.strategy.name == "fastv" and handle.budget == 16 and handle.strategy.cfg.layer == 2

    vlm = tokenprune.models.load("llava", resolve_checkpoint("zoo:shapes-llava-144"))
    ours = []
    with tokenprune.apply(vlm, "fastv", 16, layer=2):
        for s in samples:
            ours.append(bridge.cut_at_stops(vlm.generate(vlm.build_inputs([s]), max_new_tokens=4).texts[0], "\n"))
    assert answers == ours and all(answers)


PREDICTIONS = ["Yes", "no", "Yes.", "yes, there is", " No", "N", "maybe", "two", "The answer is (B).", "B",
               "b. cat", "C", "(A) red", "I think D", "", "STOP sign", "x ^ 2", "A. red but B", "E"]


@needs_lmms
def test_scorers_agree_with_lmms_eval_on_the_same_predictions():
    from lmms_eval.tasks.mme import utils as mme
    from lmms_eval.tasks.ocrbench import utils as ocrbench
    from lmms_eval.tasks.ok_vqa import utils as okvqa
    from lmms_eval.tasks.pope import utils as pope
    from lmms_eval.tasks.scienceqa import utils as sqa
    from lmms_eval.tasks.seedbench import utils as seed
    from lmms_eval.tasks.textvqa import utils as textvqa

    from tokenprune.benchmarks.scoring import choice, ocr, vqa, yesno

    answers = ["2", "two", "cat", "2", "dog", "2", "cat", "Cat", "2", "dog"]
    for pred in PREDICTIONS:
        for gt in ("yes", "no"):
            theirs = pope.pope_process_results({"answer": gt, "question_id": 1}, [pred])["pope_accuracy"]["score"]
            assert theirs == float(yesno.pope_label_lmms(pred) == gt), pred
            doc = {"answer": gt.capitalize(), "category": "count", "question_id": "q"}
            theirs = mme.mme_process_results(doc, [pred])["mme_perception_score"]["score"]
            assert theirs == float(yesno.mme_label_lmms(pred) == gt), pred
        doc = {"answers": list(answers), "question_id": 1}
        assert textvqa.textvqa_process_results(dict(doc, answers=list(answers)), [pred])["exact_match"] == \
            pytest.approx(vqa.vqa_accuracy(pred, answers)), pred
        assert okvqa.ok_vqa_process_results(dict(doc, answers=list(answers)), [pred])["exact_match"] == \
            pytest.approx(vqa.vqa_accuracy(pred, answers)), pred
        for letter_index, letter in enumerate("ABC"):
            doc = {"choices": ["frog", "cat", "owl"], "answer": letter_index}
            assert sqa.sqa_process_results(doc, [pred])["exact_match"] == float(choice.sqa_correct(pred, letter))
            result = seed.seed_process_result({"answer": letter, "data_type": "image", "question_id": 1}, [pred])
            assert seed.seed_aggregation_result([result["seed_all"]]) == float(choice.seed_correct(pred, letter))
        for dataset in ("IIIT5K", "HME100k"):
            doc = {"answer": ["stop", "x^2"], "dataset": dataset, "question_type": "Doc-oriented VQA"}
            theirs = ocrbench.ocrbench_process_results(doc, [pred])["ocrbench_accuracy"]["score"]
            assert theirs == int(ocr.ocrbench_hit(pred, ["stop", "x^2"], dataset)), pred


@needs_lmms
def test_mcq_extractors_agree_with_lmms_eval(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # lmms-eval's NExT-QA module reads it at import
    from lmms_eval.tasks._task_utils.mcq_extract import extract_mcq_answer
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator
    from lmms_eval.tasks.nextqa import utils as nextqa

    from tokenprune.benchmarks.scoring import choice

    evaluator = MMBench_Evaluator()
    options = {"A": "red", "B": "cat", "C": "to eat", "D": "owl", "E": "two"}
    for pred in PREDICTIONS:
        assert extract_mcq_answer(pred, choices=list("ABCD")) == choice.extract_mcq_answer(pred, list("ABCD"))
        four = {k: v for k, v in options.items() if k != "E"}
        assert (evaluator.can_infer(pred, dict(four)) or None) == choice.mmbench_prefetch(pred, dict(four))
        ours, parsed = choice.parse_mc_nextqa(pred, options, "seed")
        if parsed:  # lmms-eval guesses at random when nothing parses
            assert nextqa.parse_multi_choice_response(pred, list(options), options) == ours


@needs_lmms
def test_aggregates_agree_with_lmms_eval():
    from lmms_eval.tasks.mme import utils as mme
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator
    from lmms_eval.tasks.pope import utils as pope

    from tokenprune.benchmarks.mmbench import MMBench
    from tokenprune.benchmarks.mme import MME
    from tokenprune.benchmarks.pope import POPE
    from tokenprune.benchmarks.base import Sample

    # POPE, pooled
    gts = ["yes", "no", "yes", "no", "yes", "no"]
    preds = ["yes", "yes", "no", "no", "maybe", "Yes"]
    theirs = [pope.pope_process_results({"answer": g, "question_id": i}, [p])["pope_f1_score"]
              for i, (g, p) in enumerate(zip(gts, preds))]
    bench = POPE()
    ours = bench.aggregate([{"score": bench.score(Sample(str(i), "", g), p), "meta": {"category": "random"}}
                            for i, (g, p) in enumerate(zip(gts, preds))])
    assert ours["f1"] == pytest.approx(100 * pope.pope_aggregate_f1_score(theirs))
    assert ours["accuracy"] == pytest.approx(100 * pope.pope_aggregate_accuracy(theirs))

    # MME, perception sum
    rows = [("existence", "a", "Yes", "yes"), ("existence", "a", "No", "yes"),
            ("color", "b", "Yes", "Yes"), ("color", "b", "No", "no"),
            ("color", "c", "Yes", "n"), ("color", "c", "No", "No.")]
    theirs = [mme.mme_process_results({"answer": a, "category": c, "question_id": q}, [p])["mme_perception_score"]
              for c, q, a, p in rows]
    bench = MME()
    ours = bench.aggregate([{"score": bench.score(Sample("x", "", a.lower()), p),
                             "meta": {"category": c, "question_id": q}} for c, q, a, p in rows])
    assert ours["perception"] == pytest.approx(mme.mme_aggregate_results(theirs))

    # MMBench CircularEval, regex-only
    options = {"A": "red", "B": "blue", "C": "green", "D": None, "E": None}
    docs = [(7, "A", "A"), (1000007, "B", "The answer is (B)"), (8, "C", "green"), (1000008, "A", "C"),
            (9, "B", "nothing useful")]
    results = [{"index": i, "question": "q", "answer": a, "prediction": p, "hint": None, "source": "s",
                "split": "dev", "category": "cat" + str(i % 2), "L2-category": "l2", **options}
               for i, a, p in docs]
    overall, categories, _ = MMBench_Evaluator().eval_result(results, eval_method="static")
    bench = MMBench()
    records = []
    for i, a, p in docs:
        meta = {"index": i, "circular": i % 1_000_000, "category": "cat" + str(i % 2), "l2_category": "l2",
                "options": {k: v for k, v in options.items() if v and k in "ABCD"}}
        records.append({"score": bench.score(Sample(str(i), "", a, meta=meta), p), "meta": meta})
    ours = bench.aggregate(records)
    assert ours["accuracy"] == pytest.approx(100 * overall)
    for name, value in categories.items():
        assert ours[f"category/{name}"] == pytest.approx(100 * value)


@needs_lmms
@pytest.mark.parametrize("missing", [None, float("nan"), "nan", "", "no column"])
def test_mmbench_missing_options_score_as_lmms_eval(missing):
    """Every form a missing option can take, through lmms-eval's own process_results and static scorer."""
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    from tokenprune.benchmarks.base import Sample
    from tokenprune.benchmarks.mmbench import MMBench, scored_options

    bench = MMBench()
    for prediction in ("banana", "banana apple", "Bird Cat", "apple", "C", "nan", "B", "plum pear"):
        for answer in "ABCD":
            doc = {"index": 1, "A": "apple", "B": "pear", "D": "plum", "answer": answer}
            if missing != "no column":
                doc["C"] = missing
            result = {"index": 1, "question": "q", "answer": answer, "prediction": prediction, "hint": None,
                      "source": "s", "split": "dev", "category": "c", "L2-category": "l",
                      **{c: doc.get(c, "nan") for c in "ABCDE"}}  # as mmbench_process_results builds it
            theirs, _, _ = MMBench_Evaluator().eval_result([result], eval_method="static")
            meta = {"index": 1, "circular": 1, "options": scored_options(doc)}
            ours = bench.score(Sample("1", "", answer, meta=meta), prediction)["correct"]
            assert ours == theirs, (missing, prediction, answer)
