"""Video benchmarks on fixture tables in the hub schema plus frame folders (or
a tiny video when PyAV is installed): uniform frame sampling, exact prompts,
letter scoring, breakdowns, provenance and clear errors. No network."""
import json

import datasets
import pytest
from PIL import Image

from tokenprune.benchmarks._data import BenchmarkDataError
from tokenprune.benchmarks._video import load_frames, uniform_indices
from tokenprune.benchmarks.egoplan import EgoPlan
from tokenprune.benchmarks.egoschema import EgoSchema
from tokenprune.benchmarks.nextqa import NExTQA
from tokenprune.benchmarks.videomme import VideoMME

LETTER = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(autouse=True)
def _tmp_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def frame_folder(root, stem, n=10):
    """Frames whose red channel is the frame index, so a test can tell which were picked."""
    folder = root / stem
    folder.mkdir(parents=True)
    for i in range(n):
        # Unpadded names on purpose: frames must sort naturally (2 before 10).
        Image.new("RGB", (4, 4), (i, 0, 0)).save(folder / f"frame_{i}.png")
    return folder


def table(tmp_path, name, rows):
    path = tmp_path / f"{name}.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return str(path)


def run(bench, predictions):
    samples = list(bench.samples())
    records = [{"id": s.id, "prediction": p, "score": bench.score(s, p), "meta": s.meta}
               for s, p in zip(samples, predictions)]
    json.dumps([r["score"] for r in records] + [r["meta"] for r in records])
    return samples, records, bench.aggregate(records)


def test_uniform_indices_follow_linspace_with_both_ends():
    assert uniform_indices(10, 4) == [0, 3, 6, 9]
    assert uniform_indices(100, 1) == [0]
    assert uniform_indices(3, 8) == [0, 1, 2]  # fewer frames than asked: all of them
    assert uniform_indices(0, 4) == []


def test_frame_folder_sampling_in_natural_order(tmp_path):
    folder = frame_folder(tmp_path, "v", n=12)
    frames, picked, fps, total = load_frames("x", folder, 4)
    assert picked == [0, 3, 7, 11]
    assert [f.getpixel((0, 0))[0] for f in frames] == [0, 3, 7, 11]
    assert fps is None and total is None  # a frame folder has no frame rate: the meta leaves both out
    assert load_frames("x", folder, 4).meta() == {"frame_indices": [0, 3, 7, 11]}


def test_video_file_without_decoder_names_the_package(tmp_path, monkeypatch):
    import importlib.util

    video = tmp_path / "v.mp4"
    video.write_bytes(b"not really")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("av", "decord") else real(name, *a))
    with pytest.raises(BenchmarkDataError, match="benchmark 'egoschema'.*PyAV or decord.*pip install av"):
        load_frames("egoschema", video, 4)


def test_tiny_video_file_with_pyav(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 25, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    frames, picked, fps, total = load_frames("x", path, 3)
    assert picked == [0, 4, 9] and len(frames) == 3
    assert fps == 5.0 and total == 10  # the source's rate and length, for the Qwen adapters' timestamps
    assert frames[0].size == (32, 32)
    assert frames[2].getpixel((16, 16))[0] > frames[0].getpixel((16, 16))[0]  # later frame is brighter


def test_decoded_video_sample_carries_the_source_rate_and_length(tmp_path):
    """A sample decoded from a video file records the source's frame rate and length beside the indices,
    under the names the Qwen adapters read for timestamps (models/video_clip.py)."""
    pytest.importorskip("av")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import hub_fixtures
    from tokenprune.models.video_clip import VideoClip

    videos = tmp_path / "videos"
    assert hub_fixtures.write_video(videos, "vid-a", frames=8) == "vid-a.mp4"  # 4 fps, 8 frames
    rows = egoschema_rows()[:1]
    bench = EgoSchema(dataset=table(tmp_path, "ego", rows), video_dir=str(videos), num_frames=3)
    sample = next(bench.samples())
    assert sample.meta["frame_indices"] == [0, 3, 7]
    assert sample.meta["video_fps"] == 4.0 and sample.meta["video_frames"] == 8
    clip = VideoClip.from_sample(sample)
    assert (clip.fps, clip.total, clip.indices) == (4.0, 8, (0, 3, 7))
    assert clip.sampled_fps == 3 / 8 * 4.0


# --- EgoSchema ---------------------------------------------------------------------

def egoschema_rows():
    options = ["A. c cooks food", "B. c cleans the room", "C. c reads a book", "D. c paints", "E. c sews"]
    return [
        {"video_idx": "vid-a", "question_idx": "0", "question": "What is c doing overall?",
         "option": options, "answer": "2"},
        {"video_idx": "vid-b", "question_idx": "1", "question": "Why does c move?",
         "option": options, "answer": "0"},
    ]


def test_egoschema_prompt_frames_and_scoring(tmp_path):
    videos = tmp_path / "videos"
    frame_folder(videos, "vid-a", 20)
    frame_folder(videos, "vid-b", 5)
    bench = EgoSchema(dataset=table(tmp_path, "ego", egoschema_rows()), video_dir=str(videos), num_frames=8)
    samples, records, metrics = run(bench, ["C", "I am not sure"])
    assert samples[0].prompt == ("What is c doing overall?\nA. c cooks food\nB. c cleans the room\n"
                                 "C. c reads a book\nD. c paints\nE. c sews" + LETTER)
    assert samples[0].references == "C" and samples[1].references == "A"
    assert len(samples[0].frames) == 8 and samples[0].meta["frame_indices"] == [0, 2, 5, 8, 10, 13, 16, 19]
    assert len(samples[1].frames) == 5 and samples[0].images == []
    assert records[0]["score"]["correct"] == 1.0 and records[1]["score"]["parsed"] is False
    assert metrics["guessed"] == 50.0
    source = bench.source()
    assert source["num_frames"] == 8 and source["video_dir"] == str(videos) and source["config"] == "Subset"


def test_egoschema_missing_video_and_missing_answer_are_clear(tmp_path):
    rows = egoschema_rows()
    bench = EgoSchema(dataset=table(tmp_path, "ego", rows), video_dir=str(tmp_path))
    with pytest.raises(BenchmarkDataError, match="benchmark 'egoschema': no video 'vid-a'.*video_dir"):
        list(bench.samples())
    rows[0]["answer"] = ""
    bench = EgoSchema(dataset=table(tmp_path, "ego2", rows), video_dir=str(tmp_path))
    with pytest.raises(BenchmarkDataError, match=r"row 0 \(id 'vid-a'\): field 'answer'.*Subset"):
        list(bench.samples())


def test_default_video_dir_is_lmms_eval_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    frame_folder(tmp_path / "hf" / "egoschema" / "videos", "vid-a", 3)
    frame_folder(tmp_path / "hf" / "egoschema" / "videos", "vid-b", 3)
    bench = EgoSchema(dataset=table(tmp_path, "ego", egoschema_rows()))
    assert len(list(bench.samples())) == 2


# --- NExT-QA -------------------------------------------------------------------------

def test_nextqa_prompt_without_instruction_and_type_breakdown(tmp_path):
    rows = [
        {"video": 4010069381, "frame_count": 100, "width": 4, "height": 4, "question": "why did the boy run? ",
         "answer": 1, "qid": 7, "type": "CW", "a0": "to play", "a1": "he fell ", "a2": "to eat",
         "a3": "to sleep", "a4": "to hide"},
        {"video": 4010069381, "frame_count": 100, "width": 4, "height": 4, "question": "what happened after?",
         "answer": 0, "qid": 8, "type": "TN", "a0": "cry", "a1": "laugh", "a2": "sit", "a3": "stand",
         "a4": "walk"},
    ]
    frame_folder(tmp_path / "v", "4010069381", 6)
    bench = NExTQA(dataset=table(tmp_path, "nextqa", rows), video_dir=str(tmp_path / "v"), num_frames=4)
    samples, records, metrics = run(bench, ["(B) he fell", "B"])
    assert samples[0].prompt == ("why did the boy run?\nA. to play\nB. he fell\nC. to eat\nD. to sleep\n"
                                 "E. to hide")
    assert samples[0].id == "4010069381_7" and samples[0].meta["group"] == "causal"
    assert metrics["accuracy"] == 50.0
    assert metrics["group/causal"] == 100.0 and metrics["group/temporal"] == 0.0 and metrics["type/TN"] == 0.0


# --- Video-MME -------------------------------------------------------------------------

def test_videomme_prompt_and_breakdowns(tmp_path):
    base = {"video_id": "001", "domain": "Knowledge", "sub_category": "Astronomy", "url": "",
            "videoID": "fFjv93ACGo8", "task_type": "Counting Problem",
            "options": ["A. one", "B. two", "C. three", "D. four"]}
    rows = [{**base, "duration": "short", "question_id": "001-1", "question": "How many planets?", "answer": "C"},
            {**base, "duration": "short", "question_id": "001-2", "question": "How many moons?", "answer": "A"}]
    frame_folder(tmp_path / "data", "fFjv93ACGo8", 40)
    bench = VideoMME(dataset=table(tmp_path, "vmme", rows), video_dir=str(tmp_path / "data"))
    samples, records, metrics = run(bench, ["The answer is C.", "(B)"])
    assert samples[0].prompt == (
        "Select the best answer to the following multiple-choice question based on the video and the "
        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.\n"
        "How many planets?\nA. one\nB. two\nC. three\nD. four\n" + LETTER)
    assert len(samples[0].frames) == 32  # the default frame count
    assert metrics["accuracy"] == 50.0 and metrics["duration/short"] == 50.0
    assert metrics["task_type/Counting Problem"] == 50.0


# --- EgoPlan ------------------------------------------------------------------------

@pytest.mark.parametrize("goal, start", [
    ("make a sandwich", "My current task is to make a sandwich. "),
    ("cooking pasta", "I am tasked with cooking pasta. "),
    ("The goal is to boil water", "My current task is to boil water. "),
])
def test_egoplan_question_from_goal(tmp_path, goal, start):
    row = {"sample_id": 17, "task_goal": goal, "choice_a": "open fridge", "choice_b": "cut bread",
           "choice_c": "wash hands", "choice_d": "turn on stove", "golden_choice_idx": "B", "answer": "cut bread"}
    frame_folder(tmp_path / "ego", "17", 4)
    bench = EgoPlan(dataset=table(tmp_path, "egoplan", [row]), video_dir=str(tmp_path / "ego"))
    samples, records, metrics = run(bench, ["B. cut bread"])
    assert samples[0].prompt == (
        start + "The task's progress is demonstrated in the provided video. My current field of view is "
        "shown in the provided image. What should be my next action? Please output the most reasonable "
        "action you think, expressed in a short phrase.\nA. open fridge\nB. cut bread\nC. wash hands\n"
        "D. turn on stove\nAnswer with the option's letter from the given choices")
    assert metrics["accuracy"] == 100.0


def test_egoplan_goal_that_cannot_become_a_question(tmp_path):
    row = {"sample_id": 1, "task_goal": "goal", "choice_a": "a", "choice_b": "b", "choice_c": "c",
           "choice_d": "d", "golden_choice_idx": "A"}
    bench = EgoPlan(dataset=table(tmp_path, "egoplan", [row]), video_dir=str(tmp_path))
    with pytest.raises(BenchmarkDataError, match=r"benchmark 'egoplan': row 0 \(id 1\): field 'task_goal'"):
        list(bench.samples())


def test_corrupt_video_file_is_a_clear_error(tmp_path):
    pytest.importorskip("av")
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"not a video at all")
    with pytest.raises(BenchmarkDataError, match="benchmark 'videomme': could not decode .*broken.mp4"):
        load_frames("videomme", video, 4)
