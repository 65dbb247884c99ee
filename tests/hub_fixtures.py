"""Small local copies of the 13 paper benchmarks' datasets, written the way their hub
repositories are laid out, for tests that load them through ``datasets.load_dataset``.

Each writer puts parquet files where the repository has them (``<folder>/<split>-0000i-of-0000n.parquet``,
``<folder>`` being ``data`` or the configuration's own name), with the repository's column names and
``datasets`` feature types, and a README.md whose YAML header declares the configurations, their
data files and features the way a dataset card does. ``load_dataset(folder, name=config, split=split)``,
the call a real run makes on a downloaded copy, reads it. Video benchmarks also get their videos where
lmms-eval keeps them under ``$HF_HOME`` (an .mp4 when PyAV is installed, else a folder of frames).

The layouts and features come from the dataset cards of the ``lmms-lab/*`` repositories (lmms-eval 0.7.3
reads copies named ``lmms-lab-encoder/*`` and ``lmms-eval/*``; the copies' cards were not available),
``echo840/OCRBench`` and ``EgoLife-v1/EgoPlan``. Not confirmed from a card, and written as the
benchmark's original release has them: GQA's instruction columns beyond id, imageId, question and
isBalanced (``annotations`` is left out); SEED-Bench's ``data_id`` and ``segment``; every NExT-QA column
type. MMBench stores a missing option or hint as the string "nan" (what the hub copy holds: readers of
``lmms-lab/MMBench`` such as evalscope call ``.strip()`` on every option and compare with "nan"; the
parquet itself was not inspected). Only the configurations and splits a benchmark reads are written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets
import yaml
from PIL import Image

Value, Image_, Seq = datasets.Value, datasets.Image, datasets.Sequence
STR = Value("string")


@dataclass
class HubCopy:
    """A written copy: the benchmark options that point a run at it, and what was written."""

    benchmark: str
    repo: str  # the hub repository it copies
    options: dict  # benchmark options: dataset (the folder), config, split, video_dir...
    files: list[str] = field(default_factory=list)  # written paths, relative to the folder


def image(seed: int, size: int = 32) -> Image.Image:
    """A small picture that differs per seed (colour and a bright square)."""
    img = Image.new("RGB", (size, size), ((37 * seed) % 256, (91 * seed) % 256, (53 * seed + 80) % 256))
    img.paste((255, 255, 255), (seed % (size // 2), seed % (size // 2), seed % (size // 2) + 6, seed % (size // 2) + 6))
    return img


def write_repo(root: Path, configs: dict[str, dict]) -> list[str]:
    """Parquet shards plus a README.md dataset card.

    ``configs``: {config name: {"dir": folder, "features": Features, "splits": {split: rows}, "shards": n}};
    rows are dicts of column values; shards split each split's rows into n files."""
    root.mkdir(parents=True, exist_ok=True)
    written, infos, card_configs = [], [], []
    for name, spec in configs.items():
        features, shards = spec["features"], spec.get("shards", 1)
        (root / spec["dir"]).mkdir(parents=True, exist_ok=True)
        splits = []
        for split, rows in spec["splits"].items():
            table = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in features}, features=features)
            for k in range(shards):
                rel = f"{spec['dir']}/{split}-{k:05d}-of-{shards:05d}.parquet"
                table.shard(shards, k, contiguous=True).to_parquet(str(root / rel))
                written.append(rel)
            splits.append({"name": split, "num_bytes": table.data.nbytes, "num_examples": len(table)})
        infos.append({"config_name": name, "features": features._to_yaml_list(), "splits": splits})
        card_configs.append({"config_name": name, "data_files": [{"split": s, "path": f"{spec['dir']}/{s}-*"}
                                                                 for s in spec["splits"]]})
    header = yaml.safe_dump({"dataset_info": infos, "configs": card_configs}, sort_keys=False)
    (root / "README.md").write_text(f"---\n{header}---\n# Local test copy\n")
    return written + ["README.md"]


def one_config(name: str, split: str, features, rows: list[dict], folder: str | None = None, shards: int = 1):
    """``write_repo``'s ``configs`` for a repository with one configuration and one split."""
    return {name: {"dir": folder or name, "features": features, "splits": {split: rows}, "shards": shards}}


def hub_copy(benchmark: str, repo: str, folder: Path, configs: dict, videos: Path | None = None,
             stems=()) -> HubCopy:
    """Write the repository (``write_repo``), plus one video per stem in ``videos``."""
    files = write_repo(folder, configs)
    files += [str(videos / write_video(videos, stem)) for stem in dict.fromkeys(stems)]
    return HubCopy(benchmark, repo, {"dataset": str(folder)}, files)


def write_video(folder: Path, stem: str, frames: int = 8) -> str:
    """A tiny clip ``folder/stem.mp4`` (PyAV), else a frame folder ``folder/stem/``; frame i is shade 20 i."""
    import importlib.util

    folder.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("av") is None:
        (folder / stem).mkdir(exist_ok=True)
        for i in range(frames):
            Image.new("RGB", (32, 32), (20 * i, 60, 120)).save(folder / stem / f"frame_{i}.png")
        return f"{stem}/"
    import av
    import numpy as np

    with av.open(str(folder / f"{stem}.mp4"), "w") as out:
        stream = out.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            pixels = np.full((32, 32, 3), (20 * i, 60, 120), np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        out.mux(stream.encode())
    return f"{stem}.mp4"


# --- image benchmarks ------------------------------------------------------------------

def gqa(root: Path) -> HubCopy:
    folder = root / "GQA"
    features = datasets.Features({
        "id": STR, "imageId": STR, "question": STR, "answer": STR, "fullAnswer": STR, "isBalanced": Value("bool"),
        "groups": {"global": STR, "local": STR}, "entailed": Seq(STR), "equivalent": Seq(STR),
        "types": {"structural": STR, "semantic": STR, "detailed": STR},
        "semantic": [{"operation": STR, "argument": STR, "dependencies": Seq(Value("int64"))}],
        "semanticStr": STR,
    })
    qa = [("201307251", "n161313", "Is the sky blue?", "yes", "verify", "attr"),
          ("201640614", "n235859", "What is on the table?", "t-shirt", "query", "rel"),
          ("202225914", "n161313", "Which color is the cup?", "red", "query", "attr")]
    rows = [{"id": i, "imageId": im, "question": q, "answer": a, "fullAnswer": f"The answer is {a}.",
             "isBalanced": True, "groups": {"global": None, "local": f"local-{i}"}, "entailed": [], "equivalent": [i],
             "types": {"structural": st, "semantic": se, "detailed": f"{se}{st}"},
             "semantic": [{"operation": "select", "argument": "thing", "dependencies": []}],
             "semanticStr": "select: thing"} for i, im, q, a, st, se in qa]
    images = [{"id": "n235859", "image": image(2)}, {"id": "n161313", "image": image(1)}]
    return hub_copy("gqa", "lmms-lab-encoder/GQA", folder, {
        **one_config("testdev_balanced_instructions", "testdev", features, rows),
        **one_config("testdev_balanced_images", "testdev", datasets.Features({"id": STR, "image": Image_()}), images),
    })


MMBENCH_FEATURES = datasets.Features({
    "index": Value("int64"), "question": STR, "hint": STR, "answer": STR, "A": STR, "B": STR, "C": STR, "D": STR,
    "category": STR, "image": Image_(), "source": STR, "L2-category": STR, "comment": STR, "split": STR,
})


def mmbench(root: Path) -> HubCopy:
    folder = root / "MMBench"
    base = {"source": "ScienceQA", "L2-category": "attribute_reasoning", "comment": "nan", "split": "dev"}
    rows = []
    # Question 11 in its three circular variants; question 12 has two options and no hint.
    for index, (a, b, c), answer in ((11, ("red", "blue", "green"), "A"), (1000011, ("blue", "green", "red"), "C"),
                                     (2000011, ("green", "red", "blue"), "B")):
        rows.append({**base, "index": index, "question": "Which bar is tallest?", "hint": "Look at the chart.",
                     "answer": answer, "A": a, "B": b, "C": c, "D": "nan", "category": "chart", "image": image(3)})
    rows.append({**base, "index": 12, "question": "What is shown?", "hint": "nan", "answer": "B", "A": "a cat",
                 "B": "a dog", "C": "nan", "D": "nan", "category": "object", "image": image(4)})
    return hub_copy("mmbench", "lmms-lab-encoder/MMBench", folder, one_config("en", "dev", MMBENCH_FEATURES, rows))


def mme(root: Path) -> HubCopy:
    folder = root / "MME"
    features = datasets.Features({"question_id": STR, "image": Image_(), "question": STR, "answer": STR,
                                  "category": STR})
    rows = []
    for n, (category, picture) in enumerate((("existence", "000000006040.jpg"), ("code_reasoning", "0020.png"))):
        for answer in ("Yes", "No"):
            rows.append({"question_id": f"{category}/{picture}", "image": image(5 + n), "answer": answer,
                         "question": f"Is this a {answer.lower()} question? Please answer yes or no.",
                         "category": category})
    return hub_copy("mme", "lmms-lab-encoder/MME", folder, one_config("default", "test", features, rows, "data"))


def pope(root: Path) -> HubCopy:
    folder = root / "POPE"
    features = datasets.Features({"id": STR, "question_id": STR, "question": STR, "answer": STR,
                                  "image_source": STR, "image": Image_(), "category": STR})
    rows = []
    for c, category in enumerate(("adversarial", "popular", "random")):
        for k, answer in enumerate(("yes", "no")):
            qid = str(3 * c + k + 1)
            rows.append({"id": qid, "question_id": qid, "question": f"Is there a {category} dog in the image?",
                         "answer": answer, "image_source": f"COCO_val2014_{qid:0>12}", "image": image(7 + c),
                         "category": category})
    # three shards, as on the hub (data/test-0000{0,1,2}-of-00003.parquet)
    return hub_copy("pope", "lmms-lab-encoder/POPE", folder, one_config("default", "test", features, rows, "data", 3))


def scienceqa_img(root: Path) -> HubCopy:
    folder = root / "ScienceQA"
    features = datasets.Features({
        "image": Image_(), "question": STR, "choices": Seq(STR), "answer": Value("int8"), "hint": STR, "task": STR,
        "grade": STR, "subject": STR, "topic": STR, "category": STR, "skill": STR, "lecture": STR, "solution": STR,
    })
    items = [("Which continent is highlighted?", ["Africa", "Asia", "Europe"], 0, "The map shows a continent.",
              "social science"),
             ("Which animal is a mammal?", ["frog", "cat"], 1, "", "natural science"),
             ("Which word is a noun?", ["run", "blue", "table"], 2, "", "language science")]
    rows = [{"image": image(10 + n), "question": q, "choices": c, "answer": a, "hint": h, "task": "closed choice",
             "grade": "grade4", "subject": s, "topic": "topic", "category": "category", "skill": "skill",
             "lecture": "", "solution": ""} for n, (q, c, a, h, s) in enumerate(items)]
    configs = {"ScienceQA-IMG": {"dir": "ScienceQA-IMG", "features": features,
                                 "splits": {"validation": rows[:1], "test": rows}}}
    return hub_copy("scienceqa_img", "lmms-lab-encoder/ScienceQA", folder, configs)


def textvqa(root: Path) -> HubCopy:
    folder = root / "textvqa"
    features = datasets.Features({
        "image_id": STR, "question_id": Value("int32"), "question": STR, "question_tokens": Seq(STR),
        "image": Image_(), "image_width": Value("int32"), "image_height": Value("int32"), "flickr_original_url": STR,
        "flickr_300k_url": STR, "answers": Seq(STR), "image_classes": Seq(STR), "set_name": STR,
        "ocr_tokens": Seq(STR),
    })
    items = [(34602, "what is the BRAND of this camera?", ["dakota"] * 7 + ["nous les gosses", "dakota digital",
                                                                          "dakota"], ["dakota", "digital"]),
             (34603, "what does the sign say?", ["stop"] * 10, ["stop"])]
    rows = [{"image_id": f"{qid:x}", "question_id": qid, "question": q, "question_tokens": q.rstrip("?").split(),
             "image": image(qid % 50), "image_width": 32, "image_height": 32, "flickr_original_url": "",
             "flickr_300k_url": "", "answers": answers, "image_classes": ["Camera"], "set_name": "val",
             "ocr_tokens": ocr} for qid, q, answers, ocr in items]
    return hub_copy("textvqa", "lmms-lab-encoder/textvqa", folder,
                    one_config("default", "validation", features, rows, "data"))


def ocrbench(root: Path) -> HubCopy:
    folder = root / "OCRBench"
    features = datasets.Features({"dataset": STR, "question": STR, "question_type": STR, "answer": Seq(STR),
                                  "image": Image_()})
    items = [("IIIT5K", "what is written in the image?", "Regular Text Recognition", ["STOP"]),
             ("HME100k", "Please write out the expression of the formula in the image using LaTeX format.",
              "Handwritten Mathematical Expression Recognition", ["x^2+1"]),
             ("FUNSD", "What is the date?", "Key Information Extraction", ["12 May"])]
    rows = [{"dataset": d, "question": q, "question_type": t, "answer": a, "image": image(20 + n)}
            for n, (d, q, t, a) in enumerate(items)]
    return hub_copy("ocrbench", "echo840/OCRBench", folder, one_config("default", "test", features, rows, "data"))


def seedbench(root: Path) -> HubCopy:
    folder = root / "SEED-Bench"
    features = datasets.Features({
        "answer": STR, "choice_a": STR, "choice_b": STR, "choice_c": STR, "choice_d": STR, "data_id": STR,
        "data_type": STR, "question": STR, "question_id": STR, "question_type_id": Value("int16"),
        "image": Seq(Image_()), "segment": Seq(Value("int64")),
    })
    items = [("101", "image", 5, "How many dogs are there?", ("1", "2", "3", "4"), "B", 1),
             ("102", "image", 9, "What is written on the sign?", ("go", "wait", "stop", "yield"), "C", 1),
             ("v103", "video", 10, "What is the person doing?", ("run", "walk", "sit", "jump"), "A", 3)]
    rows = [{"answer": ans, "choice_a": c[0], "choice_b": c[1], "choice_c": c[2], "choice_d": c[3],
             "data_id": f"{qid}.jpg", "data_type": kind, "question": q, "question_id": qid, "question_type_id": t,
             "image": [image(30 + k) for k in range(n)], "segment": [] if kind == "image" else [0, 8]}
            for qid, kind, t, q, c, ans, n in items]
    return hub_copy("seedbench", "lmms-lab-encoder/SEED-Bench", folder,
                    one_config("default", "test", features, rows, "data"))


def okvqa(root: Path) -> HubCopy:
    folder = root / "OK-VQA"
    features = datasets.Features({"question_id": STR, "image": Image_(), "question": STR, "answers": Seq(STR),
                                  "question_type": STR, "answer_type": STR})
    rows = [{"question_id": "2971475", "image": image(40), "question": "What sport can you use this for?",
             "answers": ["racing"] * 4 + ["motocross"] * 6, "question_type": "sports", "answer_type": "other"},
            {"question_id": "1339055", "image": image(41), "question": "What game is played here?",
             "answers": ["tennis"] * 10, "question_type": "sports", "answer_type": "other"}]
    # two shards, as on the hub (data/val2014-0000{0,1}-of-00002.parquet)
    return hub_copy("okvqa", "lmms-lab-encoder/OK-VQA", folder,
                    one_config("default", "val2014", features, rows, "data", 2))


# --- video benchmarks: tables plus videos under a lmms-eval-style $HF_HOME ---------------

def egoschema(root: Path, hf_home: Path) -> HubCopy:
    folder = root / "egoschema"
    features = datasets.Features({"question_idx": STR, "question": STR, "video_idx": STR, "option": Seq(STR),
                                  "answer": STR})
    options = ["A. c cooks food", "B. c cleans the room", "C. c reads a book", "D. c paints", "E. c sews"]
    rows = [{"question_idx": "0", "question": "What is c doing overall?", "video_idx": "001934bb-81bd-4cd8",
             "option": options, "answer": "2"},
            {"question_idx": "1", "question": "Why does c move the book?", "video_idx": "00b9a0de-c59e-49cb",
             "option": options, "answer": "0"}]
    return hub_copy("egoschema", "lmms-eval/egoschema", folder,
                    one_config("Subset", "test", features, rows),
                    hf_home / "egoschema" / "videos", [r["video_idx"] for r in rows])


def nextqa(root: Path, hf_home: Path) -> HubCopy:
    folder = root / "NExTQA"
    i64 = Value("int64")
    features = datasets.Features({"video": i64, "frame_count": i64, "width": i64, "height": i64, "question": STR,
                                  "answer": i64, "qid": i64, "type": STR, **{f"a{i}": STR for i in range(5)}})
    base = {"video": 4010069381, "frame_count": 8, "width": 32, "height": 32}
    rows = [{**base, "question": "why did the boy run at the end", "answer": 1, "qid": 7, "type": "CW",
             "a0": "to play", "a1": "he fell", "a2": "to eat", "a3": "to sleep", "a4": "to hide"},
            {**base, "question": "what did the boy do after falling", "answer": 0, "qid": 8, "type": "TN",
             "a0": "cry", "a1": "laugh", "a2": "sit", "a3": "stand", "a4": "walk"}]
    return hub_copy("nextqa", "lmms-eval/NExTQA", folder,
                    one_config("MC", "test", features, rows),
                    hf_home / "nextqa" / "NExTVideo", [str(r["video"]) for r in rows])


def videomme(root: Path, hf_home: Path) -> HubCopy:
    folder = root / "Video-MME"
    features = datasets.Features({name: STR for name in ("video_id", "duration", "domain", "sub_category", "url",
                                                         "videoID", "question_id", "task_type", "question")})
    features["options"] = Seq(STR)
    features["answer"] = STR
    base = {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
            "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8",
            "task_type": "Counting Problem", "options": ["A. one", "B. two", "C. three", "D. four"]}
    rows = [{**base, "question_id": "001-1", "question": "How many planets are shown?", "answer": "C"},
            {**base, "question_id": "001-2", "question": "How many moons are shown?", "answer": "A"}]
    return hub_copy("videomme", "lmms-eval/Video-MME", folder,
                    one_config("videomme", "test", features, rows),
                    hf_home / "videomme" / "data", [r["videoID"] for r in rows])


def egoplan(root: Path, hf_home: Path) -> HubCopy:
    folder = root / "EgoPlan"
    i64 = Value("int64")
    features = datasets.Features({
        "sample_id": i64, "video_id": STR, "task_goal": STR, "question": STR, "current_observation_frame": i64,
        "answer": STR, "choice_a": STR, "choice_b": STR, "choice_c": STR, "choice_d": STR, "golden_choice_idx": STR,
        "task_progress_metadata": [{"narration": STR, "narration_text": STR, "start_frame": i64, "stop_frame": i64}],
        "video_source": STR,
    })
    base = {"video_id": "P01_01", "question": "", "current_observation_frame": 7, "choice_a": "open fridge",
            "choice_b": "cut bread", "choice_c": "wash hands", "choice_d": "turn on stove",
            "video_source": "EpicKitchens",
            "task_progress_metadata": [{"narration": "take bread", "narration_text": "take bread", "start_frame": 0,
                                        "stop_frame": 7}]}
    rows = [{**base, "sample_id": 17, "task_goal": "make a sandwich", "answer": "cut bread", "golden_choice_idx": "B"},
            {**base, "sample_id": 18, "task_goal": "cooking pasta", "answer": "turn on stove",
             "golden_choice_idx": "D"}]
    return hub_copy("egoplan", "EgoLife-v1/EgoPlan", folder,
                    one_config("egoplan", "validation", features, rows),
                    hf_home / "egoplan", [str(r["sample_id"]) for r in rows])


IMAGE = {"gqa": gqa, "mmbench": mmbench, "mme": mme, "pope": pope, "scienceqa_img": scienceqa_img,
         "textvqa": textvqa, "ocrbench": ocrbench, "seedbench": seedbench, "okvqa": okvqa}
VIDEO = {"egoschema": egoschema, "nextqa": nextqa, "videomme": videomme, "egoplan": egoplan}


def write(benchmark: str, root: Path, hf_home: Path | None = None) -> HubCopy:
    """The copy of ``benchmark``'s dataset under ``root`` (videos under ``hf_home``, default root/hf_home)."""
    if benchmark in VIDEO:
        return VIDEO[benchmark](root, hf_home or root / "hf_home")
    return IMAGE[benchmark](root)

