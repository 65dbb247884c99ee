import pytest
import torch

from tokenprune import timing


def test_summarize_median_quartiles_p90_ignores_missing():
    s = timing.summarize([5.0, 1.0, None, 3.0, 2.0, 4.0])
    assert s == {"median": 3.0, "p25": 2.0, "p75": 4.0, "p90": pytest.approx(4.6), "mean": 3.0, "n": 5}
    assert timing.summarize([None])["median"] is None


def test_synchronize_is_a_no_op_without_a_gpu_device():
    # the engine hands None when a prune point has no tensors yet
    for device in (None, "cpu", torch.device("cpu")):
        timing.synchronize(device)


def test_peak_memory_is_labelled():
    mem = timing.peak_memory_bytes("cpu")
    assert mem["memory_kind"] == "process_max_rss" and mem["peak_memory_bytes"] > 10_000_000


def test_load_meter_counts_other_processes_cpu_not_ours():
    # the CPUs were busy 3 s during a 2 s span, 1 s of it ours: others kept 1 CPU busy (first read: at start-up)
    busy, own, clock = iter([100.0, 100.0, 103.0]), iter([5.0, 6.0]), iter([10.0, 12.0])
    meter = timing.LoadMeter(busy=lambda: next(busy), own=lambda: next(own), clock=lambda: next(clock))
    with meter.span():
        pass
    assert meter.measure == "proc-stat" and meter.other_cpus() == pytest.approx(1.0)
    meter.add(2.0, 3.0)  # a second span with 1.5 other CPUs
    assert meter.other_cpus() == pytest.approx(5.0 / 4.0)


def test_load_meter_falls_back_to_the_load_average():
    own, clock = iter([0.0, 1.0]), iter([0.0, 2.0])
    meter = timing.LoadMeter(busy=lambda: None, own=lambda: next(own), clock=lambda: next(clock), loadavg=lambda: 1.5)
    with meter.span():
        pass
    assert meter.measure == "loadavg" and meter.other_cpus() == pytest.approx((1.5 * 2 - 1) / 2)
    assert timing.LoadMeter().other_cpus() is None  # nothing timed yet
