import itertools

import pytest

from tokenprune import timing


def test_summarize_median_p90_ignores_missing():
    s = timing.summarize([5.0, 1.0, None, 3.0, 2.0, 4.0])
    assert s == {"median": 3.0, "p90": pytest.approx(4.6), "mean": 3.0, "n": 5}
    assert timing.summarize([None])["median"] is None


def test_timed_uses_the_clock():
    ticks = itertools.count(start=10, step=0.25)
    out = {}
    with timing.timed("cpu", out, "x", clock=lambda: next(ticks)):
        pass
    assert out["x"] == 0.25


def test_peak_memory_is_labelled():
    mem = timing.peak_memory_bytes("cpu")
    assert mem["memory_kind"] == "process_max_rss" and mem["peak_memory_bytes"] > 10_000_000
