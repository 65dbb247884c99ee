"""tokenprune's input builders give what transformers' processors give, on the hub's real processor files.

Images and text are compared with the official classes themselves: each family's processor (its text
side and chat template) over its PIL image processor, built from the checkpoint files in
hub_processors.py, against tokenprune's builder loaded from the same folder through the adapter.
Video: transformers' video processors need torchvision, which cannot be installed here, so the
builder is checked against their rules, cited per test, and against the parts of them that run
without it (Qwen3VLVideoProcessor's patch count, the processors' placeholder text). Where torchvision
is present, test_models_official_path.py compares the two input paths end to end.
"""
import math
import re

import pytest
import torch
from transformers.processing_utils import ProcessorMixin

import hub_processors as hub
import tiny_models as tm
from tokenprune.benchmarks.base import Sample
from tokenprune.models import official_inputs
from tokenprune.models.llava_onevision import FrameRules, LlavaOnevisionAdapter
from tokenprune.models.qwen3_vl import Qwen3VLAdapter
from tokenprune.models.qwen_inputs import QWEN2_VIDEO, QWEN3_VIDEO, QwenProcessor
from tokenprune.models.qwen_vl import Qwen2VLAdapter, Qwen25VLAdapter
from tokenprune.models.video_clip import VideoClip

SIZES = [(96, 96), (224, 224), (640, 480), (333, 517), (1280, 720), (28, 28), (1000, 120)]  # width x height
ADAPTERS = {"qwen2_vl": Qwen2VLAdapter, "qwen2_5_vl": Qwen25VLAdapter, "qwen3_vl": Qwen3VLAdapter,
            "llava_onevision": LlavaOnevisionAdapter}
PROMPT = "What is in this picture? Answer in one word."


@pytest.fixture
def relaxed(monkeypatch):
    """transformers' processors check each part's class; the video processors' base class is importable
    only with torchvision, so that one check is skipped (the processors' code is otherwise untouched)."""
    check = ProcessorMixin.check_argument_for_proper_class
    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class",
                        lambda self, name, arg: None if name == "video_processor" else check(self, name, arg))
    monkeypatch.setenv(official_inputs.ENV, "tokenprune")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return {family: hub.write_checkpoint(family, tmp_path_factory.mktemp(family)) for family in hub.FAMILIES}


def official_processor(family: str, path):
    """The family's transformers processor over its PIL image processor, loaded from the checkpoint folder."""
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    chat = hub.FAMILIES[family]["chat"]
    if family == "llava_onevision":
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil,
        )

        return transformers.LlavaOnevisionProcessor(
            image_processor=LlavaOnevisionImageProcessorPil.from_pretrained(path), tokenizer=tokenizer,
            video_processor=None, chat_template=chat, num_image_tokens=hub.ONEVISION_PROCESSOR["num_image_tokens"],
            vision_feature_select_strategy="full", vision_aspect_ratio=hub.ONEVISION_ASPECT_RATIO)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    cls = {"qwen2_vl": transformers.Qwen2VLProcessor, "qwen2_5_vl": transformers.Qwen2_5_VLProcessor,
           "qwen3_vl": transformers.Qwen3VLProcessor}[family]
    video = Qwen3VLVideoProcessor.from_pretrained(path) if family == "qwen3_vl" else None
    return cls(image_processor=Qwen2VLImageProcessorPil.from_pretrained(path), tokenizer=tokenizer,
               video_processor=video, chat_template=chat)


def onevision_model(tokenizer):
    """A tiny LLaVA-OneVision with the real checkpoint's geometry (SigLIP 384 px / 14 px patches, 36 pinpoints)."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config,
                              SiglipVisionConfig)

    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1,
                                image_size=384, patch_size=14)
    text = Qwen2Config(**tm.text_config(1, vocab_size=len(tokenizer)))
    ids = {f"{k}_token_id": tokenizer.convert_tokens_to_ids(f"<{k}>") for k in ("image", "video")}
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                                  vision_feature_select_strategy="full", image_grid_pinpoints=hub.ONEVISION_PINPOINTS,
                                  vision_aspect_ratio=hub.ONEVISION_ASPECT_RATIO, **ids)
    return LlavaOnevisionForConditionalGeneration(config).eval()


def adapters(family: str, path):
    """(tokenprune's builder, the official processor) behind the same adapter, so prompts are made alike."""
    cls = ADAPTERS[family]
    ours = cls.load_processor(str(path))
    model = onevision_model(ours.tokenizer) if family == "llava_onevision" else None
    official = official_inputs.OfficialProcessor(official_processor(family, path))
    return cls(model, ours), cls(model, official)


def image_samples(sizes, per_sample=1):
    """One sample per size; with ``per_sample`` > 1, each also holds the sizes that follow."""
    def images(i):
        return [tm.images(1, seed=i * 10 + k, size=sizes[(i + k) % len(sizes)])[0] for k in range(per_sample)]

    return [Sample(id=f"s{i}", prompt=PROMPT, references=None, images=images(i)) for i in range(len(sizes))]


def assert_same_inputs(ours, theirs, level: float | None = None):
    """Every tensor equal, pixel values bit-equal, or with ``level`` (one 8-bit step after normalisation)
    at most 6 levels apart and under half a level on average (torchvision's and PIL's bicubic resampling
    differ). The official OneVision processor also lists each sample's image count, which the builder
    leaves out when every sample has one image."""
    theirs = dict(theirs)
    if "batch_num_images" in theirs and "batch_num_images" not in ours:
        assert theirs.pop("batch_num_images").tolist() == [1] * len(ours["image_sizes"])
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert value.shape == theirs[key].shape, key
        other = theirs[key].to(value.dtype)
        if key.startswith("pixel_values") and level:
            diff = (value - other).abs()
            assert diff.max() <= 6 * level and diff.mean() <= 0.5 * level, key
        elif key == "second_per_grid_ts":
            assert torch.allclose(value, other), key
        else:
            assert torch.equal(value, other), key


@pytest.mark.parametrize("family", list(hub.FAMILIES))
def test_image_inputs_equal_the_official_processor(family, checkpoints, relaxed):
    ours, official = adapters(family, checkpoints[family])
    assert ours.input_builder == "tokenprune" and official.input_builder == "official"
    batches = [image_samples(SIZES)]  # every size in one left-padded batch
    if family.startswith("qwen"):
        batches.append(image_samples(SIZES[:3], per_sample=2))  # several images per sample
    else:
        batches.append(image_samples(SIZES[3:5], per_sample=2) + image_samples(SIZES[:1]))  # no crops for several
    batches.append(image_samples(SIZES[:1]) + [Sample(id="text", prompt=PROMPT, references=None)])
    for samples in batches:
        assert_same_inputs(ours.build_inputs(samples), official.build_inputs(samples))


def test_image_token_counts_at_the_listed_sizes(checkpoints, relaxed):
    """The counts both sides agree on, worked out from smart_resize (factor 28 resp. 32, min_pixels 3136
    resp. 65536): 1280x720 rounds to 1288x728 (46 x 26 merged patches) for Qwen2-VL and to 1280x704
    (40 x 22) for Qwen3-VL; 28x28 is lifted to the minimum area, 56x56 resp. 256x256."""
    expected = {"qwen2_vl": {(1280, 720): 46 * 26, (28, 28): 4, (224, 224): 64},
                "qwen3_vl": {(1280, 720): 40 * 22, (28, 28): 64, (224, 224): 64}}
    for family, counts in expected.items():
        ours, _ = adapters(family, checkpoints[family])
        inputs = ours.build_inputs(image_samples(list(counts)))
        merge = ours.processor.image_processor.merge_size
        assert [int(g.prod()) // merge ** 2 for g in inputs["image_grid_thw"]] == list(counts.values())


# ------------------------------------------------------------------ video
def clip(n: int, size=(224, 224), *, indices=None, fps=None, total=None) -> VideoClip:
    frames = tuple(tm.images(n, seed=n, size=size))
    indices = tuple(indices if indices is not None else range(n))
    return VideoClip(frames, indices, fps, total if total is not None else n)


def test_qwen3_video_is_sized_over_the_whole_clip_with_the_video_limits(checkpoints):
    """Qwen3VLVideoProcessor.resize: smart_resize(num_frames, h, w, temporal_factor=2, factor=32,
    min_pixels=4096, max_pixels=25165824) from video_preprocessor_config.json, the bound taken on
    t x h x w. 8 frames of 224²: 8 * 224 * 224 fits, so 224 x 224 = 14 x 14 patches, [4, 14, 14],
    196 tokens (the image limits, min 65536 per frame, gave 256 x 256: [4, 16, 16], 256 tokens).
    32 frames of 1280x720: 32 * 704 * 1280 > 25165824, so beta = sqrt(32 * 720 * 1280 / 25165824) and
    h = floor(720 / beta / 32) * 32 = 640, w = floor(1280 / beta / 32) * 32 = 1152: [16, 40, 72], 11520
    tokens (per frame with the image limits: 704 x 1280, 14080 tokens)."""
    rules = QwenProcessor.from_pretrained(str(checkpoints["qwen3_vl"]), video=QWEN3_VIDEO).video_rules
    assert (rules.min_pixels, rules.max_pixels, rules.patch_size, rules.joint) == (4096, 25165824, 16, True)
    assert rules.grid(8, 224, 224) == (4, 14, 14)
    assert rules.grid(32, 720, 1280) == (16, 40, 72) and 16 * 40 * 72 // 4 == 11520
    # the official processor's own count, at every size (even frame counts: transformers 5.17's count
    # leaves out the padding frame of an odd count, which its patchify adds)
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    official = Qwen3VLVideoProcessor.from_pretrained(str(checkpoints["qwen3_vl"]))
    for frames in (2, 8, 32, 64):
        for width, height in SIZES:
            t, h, w = rules.grid(frames, height, width)
            assert t * h * w == official.get_num_of_video_patches(frames, height, width, {}), (frames, width, height)
    # odd counts: the last frame repeats up to whole temporal patches (patchify), 5 frames -> 3
    assert rules.grid(5, 224, 224)[0] == 3
    with pytest.raises(ValueError, match="at least 2 frames"):
        rules.grid(1, 224, 224)


def test_qwen2_video_is_sized_frame_by_frame_with_the_image_limits(checkpoints):
    """Qwen2VLVideoProcessor.resize: smart_resize(h, w, factor=28, min_pixels, max_pixels) per frame; the
    Qwen2-VL / 2.5-VL checkpoints have no video config, so the limits are preprocessor_config.json's
    (3136, 12845056). 8 frames of 224²: [4, 16, 16], 256 tokens; 32 frames of 1280x720: each 728 x 1288,
    [16, 52, 92], 19136 tokens. The pixels are the PIL image processor's, frame by frame."""
    processor = QwenProcessor.from_pretrained(str(checkpoints["qwen2_vl"]), video=QWEN2_VIDEO)
    rules = processor.video_rules
    assert (rules.min_pixels, rules.max_pixels, rules.patch_size, rules.joint) == (3136, 12845056, 14, False)
    assert rules.grid(8, 224, 224) == (4, 16, 16)
    assert rules.grid(32, 720, 1280) == (16, 52, 92) and 16 * 52 * 92 // 4 == 19136
    video = clip(5, (333, 517))
    patches, grid = rules.pixels(video)
    per_frame = processor.image_processor(images=list(video.frames), return_tensors="pt")
    t, h, w = grid.tolist()
    assert t == 3 and per_frame["image_grid_thw"].tolist() == [[1, h, w]] * 5
    # a temporal patch holds its two frames where an image patch holds one frame twice (C, tp, p, p)
    frames = per_frame["pixel_values"].reshape(5, h * w, 3, 2, -1)[:, :, :, 0]
    frames = torch.cat([frames, frames[-1:]])  # the last frame repeated
    expected = torch.stack([frames[0::2], frames[1::2]], dim=3).transpose(0, 1).reshape(h * w, t, -1)
    assert torch.equal(patches.reshape(t, h * w, -1).transpose(0, 1), expected)


@pytest.mark.parametrize("indices,fps,expected", [
    # 5 frames at 1 fps: pairs (0, 1), (2, 3), (4, 4): the last index repeated
    ((0, 1, 2, 3, 4), 1.0, ["0.5", "2.5", "4.0"]),
    # a benchmark's uniform picks of a 30 fps video: (0 + 10) / 2 / 30 = 0.17 s, ...
    ((0, 10, 21, 31, 42, 52, 63), 30.0, ["0.2", "0.9", "1.6", "2.1"]),
    # no frame rate known: 24 fps, transformers' default
    ((0, 1, 2, 3), None, ["0.0", "0.1"]),
])
def test_qwen3_video_timestamps_are_the_official_ones(indices, fps, expected, checkpoints, relaxed):
    """Qwen3VLProcessor: "<t seconds>" before each temporal patch, t the mean of its first and last
    frame's index / fps, the indices padded with the last one to whole patches."""
    from transformers.video_utils import VideoMetadata

    ours = QwenProcessor.from_pretrained(str(checkpoints["qwen3_vl"]), video=QWEN3_VIDEO, timestamps=True)
    official = official_processor("qwen3_vl", checkpoints["qwen3_vl"])
    video = clip(len(indices), (64, 64), indices=indices, fps=fps, total=indices[-1] + 1)
    grid = torch.tensor(ours.video_rules.grid(len(indices), 64, 64))
    text = ours._video_text(grid, video)
    assert re.findall(r"<([\d.]+) seconds>", text) == expected
    assert text == official.replace_video_token(
        {"video_grid_thw": grid[None], "video_metadata": [VideoMetadata(**video.metadata())]}, 0)


def test_qwen2_5_seconds_per_grid_is_two_over_the_sampled_fps(checkpoints):
    """Qwen2_5_VLProcessor: second_per_grid_ts = temporal_patch_size / VideoMetadata.sampled_fps, the sampled
    rate being frames / source length * source fps (24 when the metadata has no rate)."""
    from transformers.video_utils import VideoMetadata

    ours = QwenProcessor.from_pretrained(str(checkpoints["qwen2_5_vl"]), video=QWEN2_VIDEO, seconds_per_grid=True)
    clips = [clip(8, (56, 56), indices=range(0, 300, 38), fps=30.0, total=300), clip(4, (56, 56))]
    out = ours(["<|video_pad|>", "<|video_pad|>"], [[], []], [[c] for c in clips])
    rates = [VideoMetadata(**c.metadata()).sampled_fps for c in clips]
    assert rates == [0.8, 24]
    assert out["second_per_grid_ts"].tolist() == pytest.approx([2 / 0.8, 2 / 24])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision"])
def test_video_prompts_equal_the_official_processor_text(family, checkpoints, relaxed, monkeypatch):
    """The official processor end to end on video, its torchvision-only pixel step replaced by a stand-in
    that returns the pixels and grids of the official sizing rules (the two tests above): placeholder
    text, timestamps, tokenization, masks and second_per_grid_ts are then the processor's own."""
    ours, official = adapters(family, checkpoints[family])
    rules = getattr(ours.processor, "video_rules", None)
    proc = official.processor.processor

    def video_processor(videos, video_metadata=None, **kwargs):
        from transformers.video_utils import make_batched_metadata

        clips = [VideoClip(tuple(v), tuple(m["frames_indices"]), m["fps"], m["total_num_frames"])
                 for v, m in zip(videos, video_metadata)]
        if rules is None:  # OneVision: every frame at the processor's size
            return {"pixel_values_videos": torch.stack([ours.processor.frame_rules.pixels(c) for c in clips])}
        pixels = [rules.pixels(c) for c in clips]
        return {"pixel_values_videos": torch.cat([p for p, _ in pixels]),
                "video_grid_thw": torch.stack([torch.tensor(rules.grid(len(c.frames), c.frames[0].height,
                                                                         c.frames[0].width)) for c in clips]),
                "video_metadata": make_batched_metadata(videos, video_metadata)}

    stand_in = type("VideoProcessor", (), {"__call__": staticmethod(video_processor)})()
    if rules is not None:
        stand_in.merge_size, stand_in.temporal_patch_size = rules.merge_size, rules.temporal_patch_size
    monkeypatch.setattr(proc, "video_processor", stand_in)
    samples = []
    for i, (n, size) in enumerate([(5, (333, 517)), (4, (96, 96))]):
        meta = {"frame_indices": list(range(0, 7 * n, 7)), "video_fps": 25.0, "video_frames": 7 * n}
        samples.append(Sample(id=f"v{i}", prompt=PROMPT, references=None, frames=tm.images(n, seed=i, size=size),
                              meta=meta))
    if family == "llava_onevision":  # one frame count per batch
        samples[1].frames, samples[1].meta["frame_indices"] = tm.images(5, seed=3, size=(96, 96)), list(range(5))
    assert_same_inputs(ours.build_inputs(samples), official.build_inputs(samples))


def test_onevision_video_frames_follow_the_video_processor(checkpoints, relaxed):
    """LlavaOnevisionVideoProcessor: frames resized to its size (the checkpoint's 384 x 384), normalised with
    its mean / std; LlavaOnevisionProcessor: F * ceil(27 / 2)² + 1 tokens (a newline closes the video)."""
    ours, official = adapters("llava_onevision", checkpoints["llava_onevision"])
    rules = ours.processor.frame_rules
    assert (rules.height, rules.width, rules.norm.image_mean) == (384, 384, (0.5, 0.5, 0.5))
    video = Sample(id="v", prompt=PROMPT, references=None, frames=tm.images(3, size=(320, 240)))
    inputs = ours.build_inputs([video])
    assert inputs["pixel_values_videos"].shape == (1, 3, 3, 384, 384)
    n_tokens = int((inputs["input_ids"] == ours.video_token_id).sum())
    assert n_tokens == 3 * math.ceil(27 / 2) ** 2 + 1 == len(official.processor.processor.replace_video_token(
        {"pixel_values_videos": inputs["pixel_values_videos"]}, 0)) // len("<video>")


def test_video_rules_defaults_are_the_video_processors_class_defaults():
    """Settings a checkpoint's config leaves out fall back to the video processor class's own."""
    from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    cls = Qwen3VLVideoProcessor
    assert (QWEN3_VIDEO.min_pixels, QWEN3_VIDEO.max_pixels) == (cls.size["shortest_edge"], cls.size["longest_edge"])
    assert (QWEN3_VIDEO.patch_size, QWEN3_VIDEO.temporal_patch_size, QWEN3_VIDEO.merge_size) == (
        cls.patch_size, cls.temporal_patch_size, cls.merge_size)
    norm = QWEN3_VIDEO.norm
    assert (list(norm.image_mean), list(norm.image_std), norm.resample) == (
        list(cls.image_mean), list(cls.image_std), cls.resample)
    one, rules = LlavaOnevisionVideoProcessor, FrameRules()
    assert (rules.height, rules.width, list(rules.norm.image_mean), rules.norm.resample) == (
        one.size["height"], one.size["width"], list(one.image_mean), one.resample)


def test_video_settings_are_read_in_transformers_order(tmp_path):
    """processor_config.json's "video_processor" entry, else video_preprocessor_config.json, else the image
    processor's preprocessor_config.json; Qwen2-VL's legacy min/max_pixels keys name the size."""
    import json

    from tokenprune.models.qwen_inputs import VideoRules

    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 100, "max_pixels": 200}))
    rules = VideoRules.load(str(tmp_path), QWEN2_VIDEO)
    assert (rules.min_pixels, rules.max_pixels, rules.patch_size) == (100, 200, 14)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 1,
                                                                                  "longest_edge": 2}}))
    rules = VideoRules.load(str(tmp_path), QWEN2_VIDEO)
    assert (rules.min_pixels, rules.max_pixels) == (1, 2)
    (tmp_path / "processor_config.json").write_text(json.dumps({"video_processor": {"patch_size": 16}}))
    rules = VideoRules.load(str(tmp_path), QWEN3_VIDEO)
    assert (rules.patch_size, rules.min_pixels) == (16, QWEN3_VIDEO.min_pixels)


def test_frame_metadata_comes_from_the_sample():
    sample = Sample(id="v", prompt="", references=None, frames=tm.images(3),
                    meta={"frame_indices": [0, 40, 80], "video_fps": 20, "video_frames": 100})
    video = VideoClip.from_sample(sample)
    assert (video.indices, video.fps, video.total, video.sampled_fps) == ((0, 40, 80), 20.0, 100, 0.6)
    bare = VideoClip.from_sample(Sample(id="b", prompt="", references=None, frames=tm.images(3)))
    assert (bare.indices, bare.fps, bare.total, bare.rate, bare.sampled_fps) == ((0, 1, 2), None, 3, 24.0, 24.0)
    sample.meta["frame_indices"] = [0, 1]
    with pytest.raises(ValueError, match="'v'.*2 entries for 3 frames"):
        VideoClip.from_sample(sample)
    del sample.meta["frame_indices"], sample.meta["video_frames"]
    with pytest.raises(ValueError, match="'v'.*video_fps'] needs meta\\['video_frames'\\]"):
        VideoClip.from_sample(sample)
