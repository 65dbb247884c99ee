"""Image benchmarks end to end on small fixture files in the hub schema:
loading (parquet, JSON, hub layout, save_to_disk, hub id), exact prompts,
scoring, aggregation, provenance and clear errors. No network."""
import json

import datasets
import pytest
from PIL import Image

from tokenprune import ParamError
from tokenprune.benchmarks._data import BenchmarkDataError
from tokenprune.benchmarks.gqa import GQA
from tokenprune.benchmarks.mmbench import MMBench
from tokenprune.benchmarks.mme import MME
from tokenprune.benchmarks.ocrbench import OCRBench
from tokenprune.benchmarks.okvqa import OKVQA
from tokenprune.benchmarks.pope import POPE
from tokenprune.benchmarks.scienceqa import ScienceQAImg
from tokenprune.benchmarks.seedbench import SEEDBench
from tokenprune.benchmarks.textvqa import TextVQA

PP = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(autouse=True)
def _tmp_datasets_cache(tmp_path, monkeypatch):
    # Keep datasets' cache of the fixtures out of the user's cache.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def img(color=(200, 10, 10)):
    return Image.new("RGB", (8, 8), color)


def write(tmp_path, name, columns, **features):
    """A parquet fixture; ``features`` names the image columns' types."""
    feats = datasets.Dataset.from_dict({k: v for k, v in columns.items() if k not in features}).features
    feats.update(features)
    path = tmp_path / f"{name}.parquet"
    datasets.Dataset.from_dict(columns, features=datasets.Features(feats)).to_parquet(str(path))
    return str(path)


def run(bench, predictions):
    """Score predictions (one per sample, in order) and aggregate like the runner does."""
    samples = list(bench.samples())
    assert len(samples) == len(predictions)
    records = [{"id": s.id, "prediction": p, "score": bench.score(s, p), "meta": s.meta}
               for s, p in zip(samples, predictions)]
    json.dumps([r["score"] for r in records])  # scores must be JSON-able
    return samples, records, bench.aggregate(records)


# --- POPE ------------------------------------------------------------------------

def pope_columns(n_per_category=2):
    rows = {"id": [], "question_id": [], "question": [], "answer": [], "image_source": [], "image": [], "category": []}
    for c, category in enumerate(("adversarial", "popular", "random")):
        for k in range(n_per_category):
            qid = f"{c * 10 + k}"
            rows["id"].append(qid)
            rows["question_id"].append(qid)
            rows["question"].append(f" Is there a {category} object in the image? ")
            rows["answer"].append("yes" if k % 2 == 0 else "no")
            rows["image_source"].append(f"COCO_{qid}")
            rows["image"].append(img())
            rows["category"].append(category)
    return rows


def test_pope_prompt_and_lmms_eval_pooled_metrics(tmp_path):
    path = write(tmp_path, "pope", pope_columns(), image=datasets.Image())
    bench = POPE(dataset=path)
    # gt: yes,no per category. Predictions: exact yes/no required.
    preds = ["yes", "no", "Yes.", "no", "no", "yes"]
    samples, records, metrics = run(bench, preds)
    assert samples[0].prompt == "Is there a adversarial object in the image?" + PP
    assert samples[0].references == "yes" and samples[0].meta["category"] == "adversarial"
    assert isinstance(samples[0].images[0], Image.Image)
    # "Yes." is neither yes nor no: wrong, and not a TP/FP/FN. TP=1, FP=1, FN=1.
    assert [r["score"]["correct"] for r in records] == [1, 1, 0, 1, 0, 0]
    assert metrics["accuracy"] == pytest.approx(300 / 6)
    assert metrics["precision"] == pytest.approx(50.0)
    assert metrics["recall"] == pytest.approx(50.0)
    assert metrics["f1"] == pytest.approx(50.0)
    assert metrics["yes_ratio"] == pytest.approx(50.0)  # of the ground truth
    assert metrics["f1/adversarial"] == pytest.approx(100.0)


def test_pope_llava_protocol_averages_f1_over_categories(tmp_path):
    path = write(tmp_path, "pope", pope_columns(), image=datasets.Image())
    bench = POPE(dataset=path, protocol="llava")
    preds = ["Yes, there is.", "There is no dog.", "Yes.", "It is not there", "No", "I see one"]
    _, records, metrics = run(bench, preds)
    assert [r["score"]["pred"] for r in records] == ["yes", "no", "yes", "no", "no", "yes"]
    # adversarial F1 1.0, popular 1.0, random: TP0 FP1 FN1 -> 0.
    assert metrics["f1"] == pytest.approx(200 / 3)
    assert metrics["f1/random"] == 0.0
    assert metrics["yes_ratio/random"] == pytest.approx(50.0)  # of the predictions


def test_bad_option_and_bad_row_errors_name_benchmark_field_and_row(tmp_path):
    with pytest.raises(ParamError, match="benchmark 'pope'.*protocol"):
        POPE(protocol="vqa")
    with pytest.raises(ParamError, match="benchmark 'pope'.*unknown param.*limits"):
        POPE(limits=3)
    columns = pope_columns()
    columns["answer"][3] = "maybe"
    bench = POPE(dataset=write(tmp_path, "bad", columns, image=datasets.Image()))
    with pytest.raises(BenchmarkDataError, match=r"benchmark 'pope': row 3 \(id '11'\): field 'answer'.*'maybe'"):
        list(bench.samples())
    columns = pope_columns()
    del columns["question"]
    bench = POPE(dataset=write(tmp_path, "noq", columns, image=datasets.Image()))
    with pytest.raises(BenchmarkDataError, match="benchmark 'pope': row 0.*field 'question' is missing"):
        list(bench.samples())


def test_unreadable_dataset_says_which_benchmark_and_how_to_fix(tmp_path):
    bad = tmp_path / "pope.txt"
    bad.write_text("x")
    with pytest.raises(BenchmarkDataError, match="benchmark 'pope'.*must be one of"):
        list(POPE(dataset=str(bad)).samples())


# --- loading paths and provenance ---------------------------------------------------

def test_hub_id_goes_through_load_dataset_with_config_split_and_revision(monkeypatch):
    calls = []
    table = datasets.Dataset.from_dict(pope_columns(1), features=datasets.Features(
        {**datasets.Dataset.from_dict({k: v for k, v in pope_columns(1).items() if k != "image"}).features,
         "image": datasets.Image()}))

    def fake_load_dataset(path, name=None, split=None, revision=None, **kw):
        calls.append((path, name, split, revision))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    bench = POPE(revision="abc123")
    assert len(list(bench.samples())) == 3
    assert calls == [("lmms-lab-encoder/POPE", None, "test", "abc123")]
    source = bench.source()
    assert source["dataset"] == "lmms-lab-encoder/POPE" and source["revision"] == "abc123"
    assert source["split"] == "test" and source["protocol"] == "lmms-eval" and source["local"] is False
    assert source["rows"] == 3 and source["fingerprint"]


def test_hub_unreachable_gives_clear_error(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(BenchmarkDataError, match="benchmark 'mme': could not load 'lmms-lab-encoder/MME'.*local copy"):
        list(MME().samples())


def test_local_folder_in_hub_layout_and_save_to_disk(tmp_path):
    table = datasets.Dataset.from_parquet(write(tmp_path, "src", pope_columns(1), image=datasets.Image()))
    repo = tmp_path / "POPE" / "data"
    repo.mkdir(parents=True)
    table.to_parquet(str(repo / "test-00000-of-00001.parquet"))
    bench = POPE(dataset=str(tmp_path / "POPE"))
    assert [s.id for s in bench.samples()] == ["0", "10", "20"]
    assert bench.source()["local"] is True and bench.source()["dataset"] == str(tmp_path / "POPE")
    datasets.DatasetDict({"test": table}).save_to_disk(str(tmp_path / "saved"))
    assert len(list(POPE(dataset=str(tmp_path / "saved")).samples())) == 3
    with pytest.raises(BenchmarkDataError, match="has no split 'val'"):
        list(POPE(dataset=str(tmp_path / "saved"), split="val").samples())


def test_json_copy_with_relative_image_paths(tmp_path):
    img().save(tmp_path / "a.png")
    rows = [{"dataset": "IIIT5K", "question": "what is written in the image?",
             "question_type": "Regular Text Recognition", "answer": ["STOP"], "image": "a.png"}]
    path = tmp_path / "ocrbench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    samples = list(OCRBench(dataset=str(path)).samples())
    assert samples[0].images[0].size == (8, 8) and samples[0].references == ["STOP"]
    rows[0]["image"] = "missing.png"
    path.write_text(json.dumps(rows[0]))
    with pytest.raises(BenchmarkDataError, match="field 'image' names .*missing.png"):
        list(OCRBench(dataset=str(path)).samples())


# --- MME -------------------------------------------------------------------------------

def mme_columns():
    rows = {"question_id": [], "image": [], "question": [], "answer": [], "category": []}
    for category, image in (("existence", "000.png"), ("existence", "001.png"), ("count", "002.png"),
                            ("code_reasoning", "003.png")):
        for answer in ("Yes", "No"):
            rows["question_id"].append(f"{category}/{image}")
            rows["image"].append(img())
            rows["question"].append(f"Is there a thing here? Please answer yes or no.")
            rows["answer"].append(answer)
            rows["category"].append(category)
    return rows


def test_mme_prompt_and_acc_plus_sums(tmp_path):
    bench = MME(dataset=write(tmp_path, "mme", mme_columns(), image=datasets.Image()))
    preds = ["Yes", "No",  # existence/000: both right -> 100 + 100
             "yes", "yes",  # existence/001: one right -> 50 + 0
             "Y", "n.",  # count: lmms-eval reads a lone y/n -> 200
             "maybe", "No"]  # code_reasoning: 50
    samples, records, metrics = run(bench, preds)
    assert samples[0].prompt == "Is there a thing here?" + PP
    assert samples[0].references == "yes" and samples[1].references == "no"
    assert metrics["category/existence"] == pytest.approx(125.0)
    assert metrics["category/count"] == pytest.approx(200.0)
    assert metrics["perception"] == pytest.approx(325.0)
    assert metrics["cognition"] == pytest.approx(50.0)
    assert metrics["total"] == pytest.approx(375.0)
    # The LLaVA path (official MME tool) has no single-letter rule.
    llava = MME(dataset=bench.cfg.dataset, protocol="llava")
    _, _, m2 = run(llava, preds)
    assert m2["category/count"] == 0.0


def test_mme_subset_keeps_pairs_and_broken_pairs_are_refused(tmp_path):
    bench = MME(dataset=write(tmp_path, "mme", mme_columns(), image=datasets.Image()), limit=3, seed=1)
    samples = list(bench.samples())
    ids = [s.meta["question_id"] for s in samples]
    assert len(samples) == 4 and all(ids.count(i) == 2 for i in ids)
    rec = [{"id": "x", "prediction": "yes", "score": {"correct": 1.0},
            "meta": {"category": "count", "question_id": "count/9.png"}}]
    with pytest.raises(BenchmarkDataError, match="benchmark 'mme'.*'count/9.png'.*pairs"):
        bench.aggregate(rec)


# --- GQA ---------------------------------------------------------------------------

def test_gqa_joins_images_and_scores_both_protocols(tmp_path):
    questions = write(tmp_path, "gqa_q", {
        "id": ["q1", "q2", "q3"], "imageId": ["n1", "n2", "n1"],
        "question": ["Is the sky blue?", "What is on the table?", "Which color is the cup?"],
        "answer": ["yes", "t-shirt", "red"], "fullAnswer": ["Yes, it is.", "A t-shirt.", "Red."],
        "isBalanced": [True, True, True],
        "types": [{"structural": "verify", "semantic": "attr", "detailed": "x"},
                  {"structural": "query", "semantic": "rel", "detailed": "y"},
                  {"structural": "query", "semantic": "attr", "detailed": "z"}],
    })
    images = write(tmp_path, "gqa_i", {"id": ["n2", "n1"], "image": [img((0, 0, 255)), img((255, 0, 0))]},
                   image=datasets.Image())
    bench = GQA(dataset=questions, images_dataset=images)
    preds = ["Yes", "T-shirt.", " red"]
    samples, records, metrics = run(bench, preds)
    assert samples[0].prompt == "Is the sky blue?" + PP
    assert samples[0].images[0].getpixel((0, 0)) == (255, 0, 0)  # image n1
    # lmms-eval: case and punctuation ignored, whitespace is not.
    assert [r["score"]["correct"] for r in records] == [1.0, 1.0, 0.0]
    assert metrics["accuracy"] == pytest.approx(200 / 3)
    assert metrics["structural/query"] == pytest.approx(50.0)
    assert metrics["semantic/attr"] == pytest.approx(50.0)
    llava = GQA(dataset=questions, images_dataset=images, protocol="llava")
    _, rec2, _ = run(llava, preds)
    # LLaVA: strip, trailing "." removed, lower-case; the hyphen must stay.
    assert [r["score"]["correct"] for r in rec2] == [1.0, 1.0, 1.0]
    assert bench.source()["images"]["dataset"] == images
    broken = write(tmp_path, "gqa_q2", {"id": ["q9"], "imageId": ["zz"], "question": ["?"], "answer": ["a"]})
    with pytest.raises(BenchmarkDataError, match="benchmark 'gqa': row 0 \\(id 'q9'\\): field 'imageId'"):
        list(GQA(dataset=broken, images_dataset=images).samples())


# --- TextVQA and OK-VQA -----------------------------------------------------------

def textvqa_columns():
    return {
        "image_id": ["i1"], "question_id": [34602], "question": ["what is the BRAND of this camera?"],
        "question_tokens": [["what", "is"]], "image": [img()], "image_width": [8], "image_height": [8],
        "flickr_original_url": [""], "flickr_300k_url": [""],
        "answers": [["dakota"] * 7 + ["nous les gosses", "dakota digital", "dakota"]],
        "image_classes": [["Camera"]], "set_name": ["val"], "ocr_tokens": [["dakota", "digital", "camera"]],
    }


def test_textvqa_prompts_per_protocol_and_vqa_accuracy(tmp_path):
    path = write(tmp_path, "textvqa", textvqa_columns(), image=datasets.Image())
    lmms = TextVQA(dataset=path)
    samples, records, metrics = run(lmms, ["Dakota."])
    assert samples[0].prompt == "What is the brand of this camera?" + PP
    assert metrics["accuracy"] == pytest.approx(100.0)
    llava = TextVQA(dataset=path, protocol="llava")
    (sample,), _, _ = run(llava, ["dakota"])
    assert sample.prompt == ("what is the BRAND of this camera?\nReference OCR token: dakota, digital, camera" + PP)
    assert llava.source()["ocr_tokens"] is True
    with_ocr = TextVQA(dataset=path, ocr=True)
    assert next(with_ocr.samples()).prompt == (
        "What is the brand of this camera?\nReference OCR token: dakota, digital, camera" + PP)
    # "nous les gosses" is 1 of 10: each leave-one-out subset has <= 1 match -> 0.3 on average.
    assert lmms.score(samples[0], "Nous les gosses")["correct"] == pytest.approx(0.3)
    # lmms-eval stops at "ASSISTANT:".
    assert lmms.score(samples[0], "dakota ASSISTANT: no")["correct"] == pytest.approx(1.0)


def test_okvqa_prompt_and_accuracy(tmp_path):
    path = write(tmp_path, "okvqa", {
        "question_id": [1], "question": ["What sport can you use this for?"],
        "answers": [["racing"] * 4 + ["motocross"] * 6], "image": [img()],
        "question_type": ["sports"], "answer_type": ["other"],
    }, image=datasets.Image())
    samples, records, metrics = run(OKVQA(dataset=path), ["Motocross"])
    assert samples[0].prompt == ("What sport can you use this for?\nWhen the provided information is "
                                 "insufficient, respond with 'Unanswerable'." + PP)
    assert metrics["accuracy"] == pytest.approx(100.0) and metrics["question_type/sports"] == 100.0


# --- ScienceQA-IMG ------------------------------------------------------------------

def test_scienceqa_prompt_with_and_without_context(tmp_path):
    path = write(tmp_path, "sqa", {
        "image": [img(), img()], "question": ["Which continent is highlighted?", "Which is a mammal?"],
        "choices": [["Africa", "Asia"], ["frog", "cat", "owl"]], "answer": [0, 1],
        "hint": ["The map shows a continent.", ""], "task": ["closed choice"] * 2, "grade": ["grade4"] * 2,
        "subject": ["social science", "natural science"], "topic": ["geo", "bio"], "category": ["x", "y"],
        "skill": ["s", "t"], "lecture": ["", ""], "solution": ["", ""],
    }, image=datasets.Image())
    samples, records, metrics = run(ScienceQAImg(dataset=path), ["A", "B. cat"])
    assert samples[0].prompt == ("Context: The map shows a continent.\nWhich continent is highlighted?\n"
                                 "A. Africa\nB. Asia" + LETTER)
    assert samples[1].prompt == "Which is a mammal?\nA. frog\nB. cat\nC. owl" + LETTER
    assert samples[1].references == "B"
    assert metrics["accuracy"] == 100.0 and metrics["subject/natural science"] == 100.0


# --- OCRBench ------------------------------------------------------------------------

def test_ocrbench_hits_per_type_and_hme(tmp_path):
    path = write(tmp_path, "ocrbench", {
        "dataset": ["IIIT5K", "HME100k", "FUNSD"],
        "question": [" what is written in the image? ", "Write the expression.", "What is the date?"],
        "question_type": ["Regular Text Recognition", "Handwritten Mathematical Expression Recognition",
                          "Key Information Extraction"],
        "answer": [["STOP"], ["x^2+1"], ["12 May"]],
        "image": [img()] * 3,
    }, image=datasets.Image())
    bench = OCRBench(dataset=path)
    samples, records, metrics = run(bench, ["The sign says stop.", "X^{2} + 1", "12 may 2020"])
    assert samples[0].prompt == "what is written in the image?"
    assert [r["score"]["hit"] for r in records] == [1, 0, 1]  # HME keeps case and LaTeX braces
    assert metrics["hits"] == 2.0 and metrics["score"] == pytest.approx(2000 / 3)
    assert metrics["hits/Text Recognition"] == 1.0 and metrics["hits/Key Information Extraction"] == 1.0
    # Pure aggregation: the same records give the same numbers twice.
    assert bench.aggregate(records) == metrics


# --- MMBench ----------------------------------------------------------------------------

def mmbench_columns():
    base = {"question": "Which bar is tallest?", "hint": "Look at the chart.", "category": "chart",
            "L2-category": "reasoning", "source": "s", "comment": None, "split": "dev"}
    rows = []
    # Question 7 in 3 circular variants (options rotated), question 8 alone with no hint.
    for index, opts, answer in ((7, ("red", "blue", "green"), "A"), (1000007, ("blue", "green", "red"), "C"),
                                (2000007, ("green", "red", "blue"), "B")):
        rows.append({**base, "index": index, "A": opts[0], "B": opts[1], "C": opts[2], "D": None, "E": None,
                     "answer": answer, "image": img()})
    rows.append({**base, "index": 8, "hint": None, "question": "What is shown?", "category": "object",
                 "A": "a cat", "B": "a dog", "C": None, "D": None, "E": None, "answer": "B", "image": img()})
    return {k: [r[k] for r in rows] for k in rows[0]}


def test_mmbench_prompt_circular_eval_and_extractors(tmp_path):
    path = write(tmp_path, "mmbench", mmbench_columns(), image=datasets.Image())
    bench = MMBench(dataset=path)
    samples, records, metrics = run(bench, ["A", "The answer is red.", "(B)", "a dog"])
    assert samples[0].prompt == ("Look at the chart. Which bar is tallest? There are several options:\n"
                                 "A. red\nB. blue\nC. green\n" + LETTER)
    assert samples[3].prompt == "What is shown? There are several options:\nA. a cat\nB. a dog\n" + LETTER
    # variant 2: no letter token, option text "red" is unique -> C (prefetch by text)
    assert [r["score"]["pred"] for r in records] == ["A", "C", "B", "B"]
    assert metrics["accuracy"] == 100.0 and metrics["questions"] == 2.0
    # One wrong variant fails the whole question.
    _, _, m2 = run(bench, ["A", "B", "B", "I think it is B"])
    assert m2["accuracy"] == 50.0 and m2["category/chart"] == 0.0 and m2["category/object"] == 100.0
    assert m2["single_pass_accuracy"] == 75.0
    # Under limit, circular groups stay whole.
    sub = list(MMBench(dataset=path, limit=1, seed=0).samples())
    assert {s.meta["circular"] for s in sub} in ({7}, {8}) and len(sub) in (1, 3)


# --- SEED-Bench ---------------------------------------------------------------------

def test_seedbench_image_default_and_video_frames(tmp_path):
    path = write(tmp_path, "seed", {
        "answer": ["B", "C", "A"], "choice_a": ["1", "x", "run"], "choice_b": ["2", "y", "walk"],
        "choice_c": ["3", "z", "sit"], "choice_d": ["4", "w", "jump"], "data_id": ["a", "b", "c"],
        "data_type": ["image", "image", "video"], "question": ["How many dogs are there?", "Q2", "What happens?"],
        "question_id": ["101", "102", "103"], "question_type_id": [5, 9, 10],
        "image": [[img()], [img()], [img(), img((0, 255, 0))]],
    }, image=datasets.Sequence(datasets.Image()))
    bench = SEEDBench(dataset=path)
    samples, records, metrics = run(bench, ["B", "c) z"])
    assert samples[0].prompt == "How many dogs are there?\nA. 1\nB. 2\nC. 3\nD. 4" + LETTER
    assert metrics["accuracy"] == 100.0 and metrics["seed_image"] == 100.0 and "seed_video" not in metrics
    assert metrics["dimension/Instances Counting"] == 100.0
    videos = list(SEEDBench(dataset=path, data_type="video").samples())
    assert len(videos) == 1 and len(videos[0].frames) == 2 and videos[0].images == []
    _, _, m_all = run(SEEDBench(dataset=path, data_type="all"), ["B", "x", "A"])
    assert m_all["seed_image"] == 50.0 and m_all["seed_video"] == 100.0
    assert m_all["seed_all"] == pytest.approx(200 / 3)
