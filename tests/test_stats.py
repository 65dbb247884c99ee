"""The report's statistics against independent computations (tokenprune.stats, report.uncertainty)."""
import math

import numpy as np
import pytest

from tokenprune import stats
from tokenprune.benchmarks.mmbench import MMBench
from tokenprune.benchmarks.mme import MME
from tokenprune.benchmarks.pope import POPE


def _accuracy(records):
    return 100.0 * sum(r["score"]["correct"] for r in records) / len(records)


def _cells(correct, prefix="s"):
    return [{"id": f"{prefix}{i}", "score": {"correct": float(c)}, "meta": {}} for i, c in enumerate(correct)]


def _sampler(records, aggregate=_accuracy):
    return stats.Resampler(records, aggregate, lambda r: r["id"], lambda r, k: {**r, "id": f"{r['id']}#{k}"},
                           outcome=lambda r: r["score"]["correct"])


def _binom_cdf(k, n, p):
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def _clopper_pearson(k, n, level=0.95):
    """The exact binomial interval, by bisection on the binomial tails."""
    alpha = (1 - level) / 2

    def solve(f):
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) else (lo, mid)
        return (lo + hi) / 2

    lower = solve(lambda p: 1 - _binom_cdf(k - 1, n, p) < alpha)  # P(X >= k) grows with p
    upper = solve(lambda p: _binom_cdf(k, n, p) > alpha)  # P(X <= k) falls with p
    return 100 * lower, 100 * upper


def test_bootstrap_interval_of_a_binomial_matches_the_exact_interval():
    k, n = 480, 600
    sampler = _sampler(_cells([1] * k + [0] * (n - k)))
    (draws,) = stats.bootstrap([sampler], resamples=4000, seed=0)
    lo, hi = stats.interval(draws)
    cp_lo, cp_hi = _clopper_pearson(k, n)
    assert cp_lo == pytest.approx(76.56, abs=0.05) and cp_hi == pytest.approx(83.13, abs=0.05)
    # the percentile bootstrap is a little narrower than the exact (conservative) interval
    assert lo == pytest.approx(cp_lo, abs=0.6) and hi == pytest.approx(cp_hi, abs=0.6)
    assert lo < 80.0 < hi and sampler.point == 80.0 and sampler.binary


def test_mcnemar_exact_against_a_hand_worked_table():
    # 10 pairs right only with A, 2 right only with B: p = 2 * P(X <= 2 | n=12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert stats.mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert stats.mcnemar_exact(2, 10) == stats.mcnemar_exact(10, 2)
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert stats.mcnemar_exact(4, 4) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0


def test_paired_difference_has_the_sign_of_the_constructed_gap():
    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.7).astype(int)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:12]] = 1  # right on 12 more samples, never worse
    a, b = _sampler(_cells(better)), _sampler(_cells(base))
    da, db = stats.bootstrap([a, b], resamples=2000, seed=3)
    lo, hi = stats.interval(da - db)
    assert 0 < lo <= 3.0 <= hi  # paired: the 3-point gap is resolved
    lo_r, hi_r = stats.interval(db - da)
    assert lo_r <= -3.0 <= hi_r < 0
    assert stats.paired_units(a, b) == (12, 0) and stats.mcnemar_exact(12, 0) < 0.001
    # each score alone is far less certain than the paired difference
    assert stats.interval(da)[0] < stats.interval(db)[1]


def test_bootstrap_is_deterministic_for_a_seed():
    sampler = _sampler(_cells([1, 0, 1, 1, 0, 1, 0, 1, 1, 1]))
    first = stats.bootstrap([sampler], resamples=300, seed=7)[0]
    assert np.array_equal(first, stats.bootstrap([sampler], resamples=300, seed=7)[0])
    assert not np.array_equal(first, stats.bootstrap([sampler], resamples=300, seed=8)[0])


def test_the_mean_shortcut_equals_calling_the_aggregate():
    records = _cells([1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1])
    fast = _sampler(records)
    slow = _sampler(records, aggregate=lambda recs: _accuracy(recs) + 0.0)
    slow.contributions = None  # force one aggregate call per resample
    assert fast.contributions is not None
    block = next(stats.index_chunks(len(records), 50, seed=0, salt="x"))
    np.testing.assert_allclose(fast.values(block), slow.values(block))


def _mme_records(correct_pairs):
    records = []
    for i, (a, b) in enumerate(correct_pairs):
        category = "count" if i % 2 else "OCR"
        for j, c in enumerate((a, b)):
            records.append({"id": f"{i}-{j}", "score": {"correct": float(c)},
                            "meta": {"category": category, "question_id": f"img{i}.jpg"}})
    return records


def _bench_sampler(bench, records, with_counts=True):
    metric = bench.main_metric
    extra = {"counts": bench.resample_counts, "from_counts": bench.metric_from_counts} if with_counts else {}
    return stats.Resampler(records, lambda recs: bench.aggregate(recs)[metric], bench.resample_unit,
                           bench.resample_copy, **extra)


def _same_on_resamples(bench, records):
    """Counts and the aggregate itself give the same value on every resample."""
    fast, slow = _bench_sampler(bench, records), _bench_sampler(bench, records, with_counts=False)
    assert fast.method == "unit counts" and slow.method == "aggregate per resample"
    block = next(stats.index_chunks(len(fast.keys), 40, seed=0, salt="x"))
    np.testing.assert_allclose(fast.values(block), slow.values(block), rtol=1e-9)
    return slow


def test_mme_resamples_image_pairs_whole():
    bench = MME()
    records = _mme_records([(1, 1), (1, 0), (0, 0), (1, 1), (0, 1), (1, 1), (1, 1), (0, 0)] * 3)
    sampler = _same_on_resamples(bench, records)
    assert all(len(unit) == 2 and len({r["meta"]["question_id"] for r in unit}) == 1 for unit in sampler.units)
    assert sampler.contributions is None  # perception sums per-category scores: not a mean of pairs
    # every resample is a valid MME record set (a split or an unrelabelled duplicate pair would raise)
    (draws,) = stats.bootstrap([sampler], resamples=200, seed=0)
    lo, hi = stats.interval(draws)
    assert lo <= sampler.point <= hi
    copied = bench.resample_copy(records[0], 2)
    assert copied["meta"]["question_id"] == "img0.jpg#2" and records[0]["meta"]["question_id"] == "img0.jpg"


def test_mmbench_circular_groups_are_one_unit_and_a_mean():
    bench = MMBench()
    records = []
    for q in range(30):
        for rot in range(4):  # the main row (index < 1e6) and three rotations
            index = q + rot * 1_000_000
            records.append({"id": str(index), "score": {"correct": float(q % 3 != 0 or rot == 0)},
                            "meta": {"index": index, "circular": q, "category": "c", "l2_category": "l"}})
    sampler = stats.Resampler(records, lambda recs: bench.aggregate(recs)["accuracy"], bench.resample_unit,
                              bench.resample_copy, outcome=lambda r: r["score"]["correct"])
    assert len(sampler.units) == 30 and sampler.contributions is not None and sampler.binary
    assert sampler.point == pytest.approx(200 / 3)


@pytest.mark.parametrize("protocol", ["lmms-eval", "llava"])
def test_pope_f1_from_counts_equals_its_aggregate(protocol):
    bench = POPE(protocol=protocol)
    rng = np.random.default_rng(0)
    records = []
    for i in range(300):
        gt = "yes" if i % 2 else "no"
        pred = gt if rng.random() < 0.85 else str(rng.choice(["no" if gt == "yes" else "yes", "maybe"]))
        records.append({"id": str(i), "score": {"pred": pred, "gt": gt, "correct": float(pred == gt)},
                        "meta": {"category": ("adversarial", "popular", "random")[i % 3]}})
    sampler = _same_on_resamples(bench, records)
    assert sampler.contributions is None
    lo, hi = stats.interval(stats.bootstrap([_bench_sampler(bench, records)], resamples=500, seed=0)[0])
    assert lo < sampler.point < hi and hi - lo < 20
