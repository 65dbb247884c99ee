"""The 13 paper benchmarks on local copies in their hub repositories' own layout (tests/hub_fixtures.py):
loaded through datasets.load_dataset as a real run loads them, scored end to end by `tokenprune run`,
and a clear error naming the column when a copy lacks one. No network."""
import json
import sys
from pathlib import Path

import datasets
import pytest
import yaml

from tokenprune import registry
from tokenprune.benchmarks._data import BenchmarkDataError
from tokenprune.cli import main
from tokenprune.runner import execute
from tokenprune.runner.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
import hub_fixtures  # noqa: E402
import tiny_models  # noqa: E402

ALL = [*hub_fixtures.IMAGE, *hub_fixtures.VIDEO]

# The columns each benchmark cannot do without (its prompt, reference, visual or sample id).
REQUIRED = {
    "gqa": ["id", "imageId", "question", "answer"],
    "mmbench": ["index", "question", "hint", "answer", "image"],
    "mme": ["question_id", "question", "answer", "category", "image"],
    "pope": ["question_id", "question", "answer", "image"],
    "scienceqa_img": ["question", "choices", "answer", "hint", "image"],
    "textvqa": ["question_id", "question", "answers", "image"],
    "ocrbench": ["dataset", "question", "question_type", "answer", "image"],
    "seedbench": ["question_id", "data_type", "question", "answer", "choice_a", "choice_d", "image"],
    "okvqa": ["question_id", "question", "answers", "image"],
    "egoschema": ["video_idx", "question", "option", "answer"],
    "nextqa": ["video", "qid", "question", "answer", "a0", "a4"],
    "videomme": ["question_id", "videoID", "question", "options", "answer"],
    "egoplan": ["sample_id", "task_goal", "choice_a", "choice_d", "golden_choice_idx"],
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Every copy, written once; $HF_HOME (where lmms-eval keeps videos) and datasets' cache point into it."""
    root = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(root / "hf_home"))
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "datasets-cache"))
        yield root, {name: hub_fixtures.write(name, root) for name in ALL}


def bench_for(copy, **extra):
    return registry.lookup("benchmarks", copy.benchmark)(**copy.options, **extra)


@pytest.mark.parametrize("name", ALL)
def test_copy_loads_with_the_hub_features_config_and_split(hub, name):
    root, copies = hub
    copy = copies[name]
    bench = bench_for(copy)
    table = bench.table()
    card = yaml.safe_load((Path(copy.options["dataset"]) / "README.md").read_text().split("---")[1])
    (info,) = [i for i in card["dataset_info"] if i["config_name"] == (bench.cfg.config or "default")]
    assert table.features == datasets.Features._from_yaml_list(info["features"])  # types survive the round trip
    assert bench.cfg.split in {s["name"] for s in info["splits"]}
    assert bench.source()["local"] is True and len(list(bench.samples())) >= 2
    folder = Path(copy.options["dataset"])
    assert copy.files and all((folder / f).exists() for f in copy.files)  # videos: absolute paths


def drop_column(folder: Path, column: str):
    """The copy without ``column``: in every parquet file and in the card's features."""
    for path in folder.rglob("*.parquet"):
        table = datasets.Dataset.from_parquet(str(path))
        if column in table.column_names:
            table.remove_columns(column).to_parquet(str(path))
    readme = folder / "README.md"
    _, header, body = readme.read_text().split("---", 2)
    card = yaml.safe_load(header)
    for info in card["dataset_info"]:
        info["features"] = [f for f in info["features"] if f["name"] != column]
    readme.write_text(f"---\n{yaml.safe_dump(card, sort_keys=False)}---{body}")


@pytest.mark.parametrize("name", ALL)
def test_a_missing_column_is_named(hub, name, tmp_path, monkeypatch):
    root, copies = hub
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    first, *rest = REQUIRED[name]
    # through the loading path a run takes: a copy written without the column
    copy = hub_fixtures.write(name, tmp_path / "copy", hf_home=root / "hf_home")
    drop_column(Path(copy.options["dataset"]), first)
    with pytest.raises(BenchmarkDataError, match=f"benchmark '{name}'.*no column '{first}'"):
        list(bench_for(copy).samples())
    # every other required column, on the loaded table
    full = bench_for(copies[name]).table()
    for column in rest:
        bench = bench_for(copies[name])
        bench._table = full.remove_columns(column)
        with pytest.raises(BenchmarkDataError, match=f"benchmark '{name}'.*no column '{column}'"):
            list(bench.samples())


def test_gqa_images_table_without_a_column_is_named(hub, tmp_path, monkeypatch):
    root, _ = hub
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    copy = hub_fixtures.write("gqa", tmp_path)
    drop_column(Path(copy.options["dataset"]), "image")  # only the images configuration has it
    with pytest.raises(BenchmarkDataError, match="benchmark 'gqa': the images table .* no column 'image'"):
        list(bench_for(copy).samples())


# --- end to end through `tokenprune run` -------------------------------------------------------
# The model's own answers are replaced by these (its generation still runs), so each cell's records
# and metrics can be checked against numbers worked out by hand from the benchmark's rule.
ANSWERS = {
    "gqa": ["Yes", "T-shirt.", " red"],                          # lmms-eval: case and punctuation, not spaces
    "mmbench": ["A", "The answer is C", "B. red", "banana dog"],  # "nan" options tie "banana dog": wrong
    "mme": ["Yes", "No", "Yes", "Yes"],
    "pope": ["yes", "no", "yes", "yes", "no", "no"],
    ("scienceqa_img", "lmms-eval"): ["A", "The answer is B.", "C."],
    ("scienceqa_img", "llava"): ["A", "The answer is B.", "C."],
    "textvqa": ["nous les gosses", "stop ASSISTANT: no"],     # 1 of 10 answers; cut at "ASSISTANT:"
    "ocrbench": ["The sign says stop.", "X^{2} + 1", "12 may 2020"],
    "seedbench": ["B", "A"],
    "okvqa": ["Motocross", "Unanswerable"],
    "egoschema": ["C", "B"],
    "nextqa": ["(B) he fell", "B"],
    "videomme": ["The answer is C.", "(B)"],
    "egoplan": ["B. cut bread", "pick up the knife"],
}
EXPECTED = {  # main metric and per-sample scores, by hand
    "gqa": ("accuracy", 200 / 3, [1.0, 1.0, 0.0]),
    "mmbench": ("accuracy", 50.0, [1.0, 1.0, 1.0, 0.0]),
    "mme": ("total", 250.0, [1.0, 1.0, 1.0, 0.0]),  # existence 100 + 100 (perception); code_reasoning 50 + 0
    "pope": ("f1", 200 / 3, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]),  # TP 2, FP 1, FN 1
    ("scienceqa_img", "lmms-eval"): ("accuracy", 200 / 3, [1.0, 0.0, 1.0]),
    ("scienceqa_img", "llava"): ("accuracy", 200 / 3, [1.0, 1.0, 0.0]),
    "textvqa": ("accuracy", 65.0, [0.3, 1.0]),  # leave-one-out: min(1, matches / 3) averaged
    "ocrbench": ("score", 2000 / 3, [1, 0, 1]),
    "seedbench": ("accuracy", 50.0, [1.0, 0.0]),
    "okvqa": ("accuracy", 50.0, [1.0, 0.0]),
    "egoschema": ("accuracy", 50.0, [1.0, 0.0]),
    "nextqa": ("accuracy", 50.0, [1.0, 0.0]),
    "videomme": ("accuracy", 50.0, [1.0, 0.0]),
    "egoplan": ("accuracy", 50.0, [1.0, 0.0]),
}


def key(entry: dict) -> tuple:
    return entry["name"], entry.get("protocol", "lmms-eval")


def answer_key(name, protocol):
    return (name, protocol) if (name, protocol) in ANSWERS else name


def force_answers(monkeypatch, entries):
    """Every loaded model generates as usual, then its text is replaced by the answer for that sample."""
    lookup = {}
    for entry in entries:
        options = {k: v for k, v in entry.items() if k != "name"}
        samples = list(registry.lookup("benchmarks", entry["name"])(**options).samples())
        answers = ANSWERS[answer_key(*key(entry))]
        assert len(samples) == len(answers), entry["name"]
        lookup.update({(s.id, s.prompt): a for s, a in zip(samples, answers)})
    real_load = execute.load_model

    def load_model(spec):
        vlm = real_load(spec)
        build, generate, batch = vlm.build_inputs, vlm.generate, []

        def build_inputs(samples):
            batch[:] = [(s.id, s.prompt) for s in samples]
            return build(samples)

        def generate_then_answer(inputs, **kwargs):
            result = generate(inputs, **kwargs)
            assert all(n >= 1 for n in result.new_tokens)  # the model did generate
            result.texts = [lookup[k] for k in batch]
            return result

        vlm.build_inputs, vlm.generate = build_inputs, generate_then_answer
        return vlm

    monkeypatch.setattr(execute, "load_model", load_model)


def run_grid(tmp_path, model, entries):
    grid = {"name": "hub-copies", "models": [model], "strategies": ["vanilla"], "benchmarks": entries,
            "generation": {"max_new_tokens": 2}, "latency": {"warmup": 0}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    cells = RunStore(tmp_path / "run").cells()
    return {key({"name": cs.cell.benchmark, **cs.cell.benchmark_options}): cs for cs in cells}


def check_cells(cells, entries, visual_tokens):
    assert set(cells) == {key(e) for e in entries}
    for entry in entries:
        name, protocol = key(entry)
        cs = cells[name, protocol]
        metrics = cs.metrics()
        assert metrics is not None, cs.error()
        main_metric, value, per_sample = EXPECTED[answer_key(name, protocol)]
        assert metrics["main_metric"] == main_metric
        assert metrics["benchmark_metrics"][main_metric] == pytest.approx(value), (name, protocol)
        records = cs.records()
        assert [r["prediction"] for r in records] == ANSWERS[answer_key(name, protocol)]
        assert [r["score"].get("correct", r["score"].get("hit")) for r in records] == pytest.approx(per_sample)
        assert all(visual_tokens(r["n_visual"]) and r["prompt_tokens"] > r["n_visual"] for r in records)
        source = metrics["source"]
        assert source["dataset"] == entry["dataset"] and source["local"] and source["protocol"] == protocol
        assert source["split"] == registry.lookup("benchmarks", name).hub_split
        json.dumps(records)


def test_image_benchmarks_end_to_end_on_the_bundled_model(hub, tmp_path, monkeypatch):
    _, copies = hub
    entries = [{"name": name, **copies[name].options} for name in hub_fixtures.IMAGE]
    entries.append({"name": "scienceqa_img", "protocol": "llava", **copies["scienceqa_img"].options})
    force_answers(monkeypatch, entries)
    model = {"label": "zoo", "adapter": "llava", "checkpoint": "zoo:shapes-llava-144"}
    cells = run_grid(tmp_path, model, entries)
    check_cells(cells, entries, visual_tokens=lambda n: n == 144)  # one 96 px image, 12 x 12 patches
    mmbench = cells["mmbench", "lmms-eval"].metrics()["benchmark_metrics"]
    assert mmbench["single_pass_accuracy"] == 75.0 and mmbench["questions"] == 2.0
    mme = cells["mme", "lmms-eval"].metrics()["benchmark_metrics"]
    assert mme["perception"] == 200.0 and mme["cognition"] == 50.0
    assert cells["ocrbench", "lmms-eval"].metrics()["benchmark_metrics"]["hits"] == 2.0


def test_video_benchmarks_end_to_end_on_a_tiny_video_model(hub, tmp_path, monkeypatch):
    """The bundled model takes images only; a tiny LLaVA-OneVision (random weights) takes the frames."""
    _, copies = hub
    entries = [{"name": name, "num_frames": 4, **copies[name].options} for name in hub_fixtures.VIDEO]
    force_answers(monkeypatch, entries)
    checkpoint = tiny_models.llava_onevision(layers=2).checkpoint
    cells = run_grid(tmp_path, {"label": "tiny-ov", "adapter": "llava_onevision", "checkpoint": checkpoint}, entries)
    check_cells(cells, entries, visual_tokens=lambda n: n == 4 * 2 * 2 + 1)  # 4 frames of 2 x 2, one newline
    for cs in cells.values():
        assert all(r["meta"]["frame_indices"] == [0, 2, 4, 7] for r in cs.records())  # 4 of 8 frames, both ends
        if copies[cs.cell.benchmark].files[-1].endswith(".mp4"):  # a video file (PyAV installed): its rate and length
            assert all(r["meta"]["video_fps"] == 4.0 and r["meta"]["video_frames"] == 8 for r in cs.records())
        assert cs.metrics()["source"]["num_frames"] == 4
    assert cells["egoschema", "lmms-eval"].metrics()["benchmark_metrics"]["guessed"] == 0.0
