"""Both input paths on one model, where transformers' processors can run (torchvision importable).

A model loads its official processor there (TOKENPRUNE_INPUT_BUILDER=auto); tokenprune's builder must
give the same input ids, masks, grids, token type ids and second_per_grid_ts, and pixel values a few
8-bit levels apart at most (torchvision and PIL resample differently), for images and for videos with
metadata, on the hub's real processor files and on the tiny test models.
"""
import pytest
from transformers.utils import is_torchvision_available

import hub_processors as hub
import tiny_models as tm
import tokenprune.models as models
from test_models_parity import ADAPTERS, PROMPT, SIZES, assert_same_inputs, image_samples, onevision_model
from tokenprune.benchmarks.base import Sample
from tokenprune.models import official_inputs

pytestmark = pytest.mark.skipif(
    not is_torchvision_available(),
    reason="transformers' Qwen-VL and LLaVA-OneVision processors need torchvision, not importable here (a CPU "
           "build cannot be installed beside this torch); test_models_parity.py checks the builder against their "
           "rules instead")


def level(processor) -> float:
    """One 8-bit step after normalisation (in the channel with the smallest std)."""
    ip = processor.image_processor
    return ip.rescale_factor / min(ip.image_std) + 1e-6


def video_samples(n: int, size, count: int = 2, fps: float = 25.0):
    return [Sample(id=f"v{i}", prompt=PROMPT, references=None, frames=tm.images(n, seed=i, size=size),
                   meta={"frame_indices": list(range(i, i + 9 * n, 9)), "video_fps": fps, "video_frames": 9 * n + i})
            for i in range(count)]


def both(family: str, path, monkeypatch):
    processors = {}
    for builder in ("tokenprune", "official"):
        monkeypatch.setenv(official_inputs.ENV, builder)
        processors[builder] = ADAPTERS[family].load_processor(str(path))
    model = onevision_model(processors["tokenprune"].tokenizer) if family == "llava_onevision" else None
    return [ADAPTERS[family](model, processors[b]) for b in ("tokenprune", "official")]


@pytest.mark.parametrize("family", list(hub.FAMILIES))
def test_real_processor_files_give_the_same_inputs_on_both_paths(family, tmp_path, monkeypatch):
    ours, official = both(family, hub.write_checkpoint(family, tmp_path), monkeypatch)
    assert (ours.input_builder, official.input_builder) == ("tokenprune", "official")
    batches = [image_samples(SIZES), video_samples(8, (224, 224)), video_samples(5, (333, 517))]
    if family == "qwen3_vl":
        batches.append(video_samples(32, (1280, 720), count=1))
    for samples in batches:
        assert_same_inputs(ours.build_inputs(samples), official.build_inputs(samples), level(ours.processor))


@pytest.mark.parametrize("family", list(hub.FAMILIES))
def test_tiny_models_load_the_official_processor_where_it_runs(family, monkeypatch):
    path = getattr(tm, family)().checkpoint
    monkeypatch.setenv(official_inputs.ENV, "auto")
    official = models.load(family, path)
    monkeypatch.setenv(official_inputs.ENV, "tokenprune")
    ours = models.load(family, path)
    assert (ours.input_builder, official.input_builder) == ("tokenprune", "official")
    samples = tm.samples(2, image_sizes=[(56, 42), (28, 28)]) + video_samples(5, (56, 42))
    for batch in (samples[:2], samples[2:], samples[1:3]):
        assert_same_inputs(ours.build_inputs(batch), official.build_inputs(batch), level(ours.processor))
