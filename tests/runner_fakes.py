"""Test-only plugin: a registered benchmark with hand-made samples, and a model name for grid validation."""
import pytest

import tokenprune as tp
from tokenprune import registry
from tokenprune.benchmarks import Benchmark, Sample
from tokenprune.plugins import pm


class CountingBench(Benchmark):
    """n numbered questions; the answer to question i is 'yes' when i is even."""

    name = "counting_bench"
    params = {"n": tp.Param(6, "number of questions", int, min=1)}
    max_new_tokens = 3

    def samples(self):
        ids = list(range(self.cfg.n))
        if self.cfg.limit:
            ids = ids[: self.cfg.limit]
        for i in ids:
            yield Sample(id=f"q{i}", prompt=f"Is {i} even?", references="yes" if i % 2 == 0 else "no",
                         meta={"type": "parity"})

    def score(self, sample, prediction):
        return {"correct": float(prediction.strip().lower() == sample.references)}

    def aggregate(self, records):
        return {"accuracy": 100.0 * sum(r["score"]["correct"] for r in records) / max(1, len(records))}


class FakeAdapter:
    name = "fake_vlm"


class _Plugin:
    @staticmethod
    @tp.hookimpl
    def register_benchmarks(register):
        register(CountingBench)
        register(ImageBench)
        register(TinyImages)

    @staticmethod
    @tp.hookimpl
    def register_models(register):
        register(FakeAdapter)


@pytest.fixture
def fake_plugin():
    plugin = _Plugin()
    pm.register(plugin, name="runner-fakes")
    registry.clear_caches()
    yield
    pm.unregister(plugin)
    registry.clear_caches()


class ImageBench(CountingBench):
    """CountingBench with a 48x48 image per sample (for token pictures)."""

    name = "image_bench"

    def samples(self):
        from PIL import Image

        for s in super().samples():
            s.images = [Image.new("RGB", (48, 48), (40 * int(s.id[1:]) % 255, 120, 200))]
            yield s




class TinyImages(CountingBench):
    """tiny_models' samples: prompts of different lengths, images of several sizes (so dynamic-resolution
    models give samples different token counts). Scored by the answer's length in words."""

    name = "tiny_images"
    SIZES = [(42, 42), (56, 28), (28, 56), (56, 56)]

    def samples(self):
        import tiny_models

        items = tiny_models.samples(self.cfg.n, image_sizes=self.SIZES)
        yield from items[: self.cfg.limit] if self.cfg.limit else items

    def score(self, sample, prediction):
        return {"words": float(len(prediction.split()))}

    def aggregate(self, records):
        return {"accuracy": sum(r["score"]["words"] for r in records) / max(1, len(records))}
