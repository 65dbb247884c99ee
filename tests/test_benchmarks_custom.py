"""The `custom` benchmark on data files the tests write: every format, every scorer, the errors a user
meets (each names the option and the file, or the row and the field), and a run end to end through
`tokenprune run` on the bundled model."""
import csv
import json
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from PIL import Image

from tokenprune.benchmarks._data import BenchmarkDataError
from tokenprune.benchmarks.custom import Custom
from tokenprune.benchmarks.shapes import eval_split
from tokenprune.benchmarks.shapes_render import render
from tokenprune.cli import main
from tokenprune.errors import ConfigError
from tokenprune.runner.grid import parse_grid
from tokenprune.runner.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
import hub_fixtures  # noqa: E402

SHORT = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(autouse=True)
def _tmp_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def shapes_rows(size: int, types=None) -> list[dict]:
    """Questions of the bundled benchmark's held-out split, with their rendered images."""
    return [{"image": render(scene, 96), "question": qa.question, "answer": qa.answer, "type": qa.type}
            for scene, qa in eval_split(size) if types is None or qa.type in types]


def with_image_files(folder: Path, rows: list[dict]) -> list[dict]:
    """The rows with each image saved as a PNG under folder/images/ and named by its relative path."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    out = []
    for i, row in enumerate(rows):
        row["image"].save(folder / "images" / f"{i}.png")
        out.append({**row, "image": f"images/{i}.png"})
    return out


def write_jsonl(folder: Path, rows: list[dict], name="data.jsonl") -> Path:
    rows = with_image_files(folder, rows)
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_csv(folder: Path, rows: list[dict], name="data.csv") -> Path:
    rows = with_image_files(folder, rows)
    path = folder / name
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return path


def features_of(rows: list[dict]) -> datasets.Features:
    """Images as Image features, lists as sequences of text, the rest text."""
    def kind(value):
        if isinstance(value, Image.Image):
            return datasets.Image()
        return datasets.Sequence(datasets.Value("string")) if isinstance(value, list) else datasets.Value("string")

    return datasets.Features({k: kind(v) for k, v in rows[0].items()})


def table_of(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]}, features=features_of(rows))


def write_parquet(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data.parquet"
    table_of(rows).to_parquet(str(path))
    return path


def write_saved(folder: Path, rows: list[dict], splits=("test",)) -> Path:
    datasets.DatasetDict({s: table_of(rows) for s in splits}).save_to_disk(str(folder))
    return folder


def write_hub_layout(folder: Path, rows: list[dict]) -> Path:
    hub_fixtures.write_repo(folder, hub_fixtures.one_config("default", "test", features_of(rows), rows, folder="data"))
    return folder


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet, "save_to_disk": write_saved,
           "hub_layout": write_hub_layout}


def scored(bench, predictions):
    samples = list(bench.samples())
    records = [{"id": s.id, "prediction": p, "score": bench.score(s, p), "meta": s.meta}
               for s, p in zip(samples, predictions)]
    json.dumps([r["score"] for r in records] + [r["meta"] for r in records])  # what the store writes
    return samples, records, bench.aggregate(records)


# --- formats ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", WRITERS)
def test_every_format_gives_the_same_samples(tmp_path, kind):
    rows = shapes_rows(6)
    path = WRITERS[kind](tmp_path / kind, rows)
    bench = Custom(path=str(path))
    samples = list(bench.samples())
    assert [s.id for s in samples] == [str(i) for i in range(6)]  # no id_column: the row numbers
    assert [s.prompt for s in samples] == [r["question"] + SHORT for r in rows]
    assert [s.references for s in samples] == [[r["answer"]] for r in rows]
    assert all(s.images[0].tobytes() == r["image"].tobytes() for s, r in zip(samples, rows))  # lossless
    assert bench.max_new_tokens == 16 and bench.max_images() == 1
    source = bench.source()
    assert source["dataset"] == str(path.resolve()) and source["rows"] == 6 and source["fingerprint"]
    assert source["scorer"] == "exact" and source["columns"]["answer_column"] == "answer"


def test_columns_ids_categories_and_the_prompt_suffix_are_options(tmp_path):
    rows = [{"img": r["image"], "q": r["question"], "gold": r["answer"], "key": f"k{i}", "kind": r["type"]}
            for i, r in enumerate(shapes_rows(6))]
    path = write_parquet(tmp_path, rows)
    bench = Custom(path=str(path), image_column="img", question_column="q", answer_column="gold", id_column="key",
                   category_column="kind", prompt_suffix=" Answer briefly.", limit=3, seed=1)
    picked = [int(s.id[1:]) for s in bench.samples()]
    samples, records, metrics = scored(bench, [rows[i]["gold"] if i % 2 else "wrong" for i in picked])
    assert len(samples) == 3 and picked == sorted(picked) and len(set(picked)) == 3
    assert [s.prompt for s in samples] == [rows[i]["q"] + " Answer briefly." for i in picked]
    assert [s.meta["category"] for s in samples] == [rows[i]["kind"] for i in picked]
    assert metrics["accuracy"] == pytest.approx(100 * sum(i % 2 for i in picked) / 3)
    assert {k: v for k, v in metrics.items() if k.startswith("category/")} == \
        {f"category/{rows[i]['kind']}": 100.0 * (i % 2) for i in picked}


def test_a_csv_keeps_answers_as_written(tmp_path):
    rows = [{"image": Image.new("RGB", (8, 8)), "question": "code?", "answer": "007"},
            {"image": Image.new("RGB", (8, 8)), "question": "count?", "answer": "2"}]
    bench = Custom(path=str(write_csv(tmp_path, rows)))
    samples, records, _ = scored(bench, ["007", "2.0"])
    assert [s.references for s in samples] == [["007"], ["2"]]
    assert [r["score"]["correct"] for r in records] == [1.0, 0.0]


def test_a_saved_dataset_with_several_splits_needs_split(tmp_path):
    folder = write_saved(tmp_path / "saved", shapes_rows(6), splits=("train", "test"))
    with pytest.raises(BenchmarkDataError, match="names no split; it has train, test .*'split' option"):
        Custom(path=str(folder))
    assert len(list(Custom(path=str(folder), split="train").samples())) == 6
    with pytest.raises(BenchmarkDataError, match="has no split 'dev'"):
        Custom(path=str(folder), split="dev")


def test_the_fingerprint_follows_the_data(tmp_path):
    rows = shapes_rows(6)
    path = write_jsonl(tmp_path, rows)
    first = Custom(path=str(path)).source()["fingerprint"]
    assert Custom(path=str(path)).source()["fingerprint"] == first
    rows[0]["answer"] = "changed"
    write_jsonl(tmp_path, rows)
    assert Custom(path=str(path)).source()["fingerprint"] != first


# --- scorers ----------------------------------------------------------------------------------------

def test_exact_match_ignores_case_punctuation_and_surrounding_space(tmp_path):
    rows = [{"image": Image.new("RGB", (8, 8)), "question": "colour?", "answer": ["red", "crimson"]}] * 3
    samples, records, metrics = scored(Custom(path=str(write_parquet(tmp_path, rows))), [" Red.", "crimson", "blue"])
    assert [r["score"]["correct"] for r in records] == [1.0, 1.0, 0.0]
    assert metrics["accuracy"] == pytest.approx(200 / 3)


def test_vqa_accuracy_over_the_annotators_answers(tmp_path):
    answers = ["two", "2"] + ["three"] * 8  # in CSV as a JSON list
    rows = [{"image": Image.new("RGB", (8, 8)), "question": "how many?", "answer": answers}] * 2
    samples, records, metrics = scored(Custom(path=str(write_csv(tmp_path, rows)), scorer="vqa"), ["2", "Three"])
    # "two" and "2" both normalise to 2: left out, one other gave it (1/3); else two did (2/3); mean 0.6
    assert records[0]["score"]["correct"] == pytest.approx(0.6)
    assert records[1]["score"]["correct"] == pytest.approx(1.0) and metrics["accuracy"] == pytest.approx(80.0)
    one = [{"image": Image.new("RGB", (8, 8)), "question": "q?", "answer": "cat"}]
    with pytest.raises(BenchmarkDataError, match=r"row 0: field 'answer' holds 1 answer\(s\); the vqa scorer needs"
                                                 r".*at least 4.*scorer: exact"):
        list(Custom(path=str(write_jsonl(tmp_path / "one", one)), scorer="vqa").samples())


def test_yes_no_reads_the_first_word_and_reports_the_binary_metrics(tmp_path):
    rows = [{"image": Image.new("RGB", (8, 8)), "question": q, "answer": a}
            for q, a in (("red?", "Yes"), ("blue?", "no"), ("green?", "yes"), ("cross?", "no"))]
    bench = Custom(path=str(write_jsonl(tmp_path, rows)), scorer="yes_no")
    samples, records, metrics = scored(bench, ["Yes, it is.", "no", "No.", "yes"])
    assert [s.references for s in samples] == ["yes", "no", "yes", "no"]
    assert [r["score"]["correct"] for r in records] == [1.0, 1.0, 0.0, 0.0]
    assert metrics["accuracy"] == 50.0 and metrics["precision"] == 50.0 and metrics["recall"] == 50.0
    assert metrics["f1"] == 50.0 and metrics["yes_ratio"] == 50.0
    booleans = [{"image": Image.new("RGB", (8, 8)), "question": "q?", "answer": True}]
    assert next(Custom(path=str(write_jsonl(tmp_path / "b", booleans)), scorer="yes_no").samples()).references == "yes"
    bad = [{"image": Image.new("RGB", (8, 8)), "question": "q?", "answer": "maybe"}]
    with pytest.raises(BenchmarkDataError, match="row 0: field 'answer' should be 'yes' or 'no'.*got 'maybe'"):
        list(Custom(path=str(write_jsonl(tmp_path / "c", bad)), scorer="yes_no").samples())


def test_choice_with_an_options_column(tmp_path):
    options = ["red", "green", "blue"]
    rows = [{"image": Image.new("RGB", (8, 8)), "question": "Which colour?", "options": options, "answer": a}
            for a in ("B", "blue", "a")]
    bench = Custom(path=str(write_csv(tmp_path, rows)), scorer="choice", options_column="options")  # a JSON list
    samples, records, metrics = scored(bench, ["B", "The answer is (C).", "green"])
    assert samples[0].prompt == "Which colour?\nA. red\nB. green\nC. blue" + LETTER
    assert [s.references for s in samples] == ["B", "C", "A"]  # a letter, an option's text, a lower-case letter
    assert [r["score"]["pred"] for r in records] == ["B", "C", ""]
    assert metrics["accuracy"] == pytest.approx(200 / 3)
    bad = [{**rows[0], "answer": "purple"}]
    with pytest.raises(BenchmarkDataError, match="field 'answer' = 'purple' should be one of the letters A, B, C "
                                                 "or the text of an option"):
        list(Custom(path=str(write_jsonl(tmp_path / "bad", bad)), scorer="choice", options_column="options").samples())


def test_choice_with_lettered_options_in_the_question(tmp_path):
    rows = [{"image": Image.new("RGB", (8, 8)), "question": "Which shape?\nA. circle\nB. cross\n(C) square",
             "answer": "C"}]
    bench = Custom(path=str(write_jsonl(tmp_path, rows)), scorer="choice")
    samples, records, _ = scored(bench, ["C"])
    assert samples[0].prompt == rows[0]["question"] + LETTER and samples[0].meta["letters"] == "ABC"
    assert records[0]["score"]["correct"] == 1.0
    plain = [{**rows[0], "question": "Which shape?"}]
    with pytest.raises(BenchmarkDataError, match="field 'question' has no lettered options .*options_column"):
        list(Custom(path=str(write_jsonl(tmp_path / "plain", plain)), scorer="choice").samples())


def test_ocr_finds_an_answer_inside_the_output(tmp_path):
    rows = [{"image": Image.new("RGB", (8, 8)), "question": "What does the sign say?", "answer": "STOP"}] * 2
    bench = Custom(path=str(write_jsonl(tmp_path, rows)), scorer="ocr")
    samples, records, metrics = scored(bench, ["The sign says stop.", "go"])
    assert samples[0].prompt == "What does the sign say?" and bench.max_new_tokens == 128
    assert [r["score"]["correct"] for r in records] == [1.0, 0.0] and metrics["accuracy"] == 50.0


# --- errors -------------------------------------------------------------------------------------------

def test_errors_name_the_option_and_the_file(tmp_path):
    path = write_jsonl(tmp_path, shapes_rows(6))
    with pytest.raises(ConfigError, match="benchmark 'custom': option 'path' is required"):
        Custom()
    with pytest.raises(ConfigError, match=r"path '.*nowhere.jsonl' does not exist \(resolved: "):
        Custom(path=str(tmp_path / "nowhere.jsonl"))
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(ConfigError, match=r"a data file must end in one of \.jsonl, \.json, \.csv, \.parquet, \.arrow"):
        Custom(path=str(tmp_path / "data.txt"))
    for option in ("image_column", "question_column", "answer_column", "options_column", "id_column",
                   "category_column"):
        with pytest.raises(ConfigError, match=rf"benchmark 'custom': {option} 'nope' is not a column of "
                                              rf"'{path}' \(its columns: image, question, answer, type\)"):
            Custom(path=str(path), **{option: "nope"})
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="cannot read .*broken.parquet"):
        Custom(path=str(tmp_path / "broken.parquet"))
    with pytest.raises(Exception, match="benchmark 'custom': param scorer='fuzzy' is invalid.*'exact', 'vqa'"):
        Custom(path=str(path), scorer="fuzzy")


def test_the_grid_reports_a_missing_column_before_anything_runs(tmp_path):
    path = write_csv(tmp_path, shapes_rows(6))
    grid = {"models": [{"adapter": "llava", "checkpoint": "zoo:shapes-llava-144"}], "strategies": ["vanilla"],
            "benchmarks": [{"name": "custom", "path": str(path), "answer_column": "label"}]}
    with pytest.raises(ConfigError, match=r"benchmarks\[0\].*answer_column 'label' is not a column of .*data.csv'"
                                          r" \(its columns: image, question, answer, type\)"):
        parse_grid(grid)


def test_rows_are_checked_when_read(tmp_path):
    rows = [{"image": "images/missing.png", "question": "q?", "answer": "a", "id": "x"}]
    (tmp_path / "images").mkdir()
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(BenchmarkDataError, match=r"row 0 \(id 'x'\): field 'image' names .*missing.png.*not a file"):
        list(Custom(path=str(path), id_column="id").samples())
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[0], "question": None}) + "\n")
    # the header read at load time says nothing about values: the same id twice is refused when the data loads
    with pytest.raises(ConfigError, match="id_column 'id' of .*data.jsonl' repeats 'x' \\(rows 0 and 1\\)"):
        list(Custom(path=str(path), id_column="id").samples())


# --- end to end ----------------------------------------------------------------------------------------

def test_run_end_to_end_on_the_bundled_model(tmp_path):
    """Every format and every scorer through `tokenprune run`. The same questions under `shapes` and under
    `custom` (the question alone as prompt) get the same answers, whatever file holds them."""
    rows = shapes_rows(6)
    entries = [{"name": "custom", "path": str(WRITERS[kind](tmp_path / kind, rows)), "prompt_suffix": ""}
               for kind in WRITERS]
    yes_no = shapes_rows(12, types=("exist", "relation"))
    colors = [{**r, "options": ["red", "green", "blue", "yellow", "purple", "orange"]}
              for r in shapes_rows(12, types=("color",))]
    digits = shapes_rows(24, types=("ocr",))
    entries += [
        {"name": "custom", "path": str(write_jsonl(tmp_path / "yes_no", yes_no)), "scorer": "yes_no",
         "prompt_suffix": ""},
        {"name": "custom", "path": str(write_parquet(tmp_path / "vqa", [{**r, "answer": [r["answer"]] * 10}
                                                                         for r in rows])), "scorer": "vqa"},
        {"name": "custom", "path": str(write_saved(tmp_path / "choice", colors)), "scorer": "choice",
         "options_column": "options"},
        {"name": "custom", "path": str(write_csv(tmp_path / "ocr", digits)), "scorer": "ocr"},
    ]
    grid = {"name": "custom", "models": [{"label": "shapes", "adapter": "llava", "checkpoint": "zoo:shapes-llava-144"}],
            "strategies": ["vanilla"], "benchmarks": [{"name": "shapes", "size": 6}, *entries],
            "generation": {"max_new_tokens": 3}, "latency": {"warmup": 0}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    assert main(["run", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    cells = {(cs.cell.benchmark, cs.cell.benchmark_options.get("path"), cs.cell.benchmark_options.get("scorer")): cs
             for cs in RunStore(tmp_path / "run").cells()}
    assert len(cells) == 1 + len(entries) and all(cs.metrics() is not None for cs in cells.values())
    reference = [r["prediction"] for r in cells["shapes", None, None].records()]
    for entry in entries[:len(WRITERS)]:
        cs = cells["custom", entry["path"], "exact"]
        assert [r["prediction"] for r in cs.records()] == reference, entry["path"]
        metrics = cs.metrics()
        assert metrics["main_metric"] == "accuracy" and metrics["samples"] == 6
        assert metrics["source"]["scorer"] == "exact" and metrics["protocol"] == "custom"
    for entry, n in zip(entries[len(WRITERS):], (len(yes_no), 6, len(colors), len(digits))):
        metrics = cells["custom", entry["path"], entry["scorer"]].metrics()
        assert metrics["samples"] == n and 0.0 <= metrics["benchmark_metrics"]["accuracy"] <= 100.0
    # the bundled model answers its own questions: yes/no and the digits it reads score well above chance
    assert cells["custom", entries[len(WRITERS)]["path"], "yes_no"].metrics()["benchmark_metrics"]["accuracy"] > 50
