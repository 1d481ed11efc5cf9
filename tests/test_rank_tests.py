"""The report's rank tests: exact p-values against brute-force enumeration (ties, zeros, n = 5..12),
scipy where its method is the same, exact ties from integer-scaled means, undefined tests."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from mturk_eval.analysis import stats


def two_sided(null: list[float], t: float) -> float:
    lo = sum(1 for v in null if v <= t + 1e-9) / len(null)
    hi = sum(1 for v in null if v >= t - 1e-9) / len(null)
    return min(1.0, 2 * min(lo, hi))


def brute_signed_rank(d: list[Fraction]) -> float:
    nz = [x for x in d if x != 0]
    ranks = sps.rankdata([abs(float(x)) for x in nz]) if len({abs(x) for x in nz}) == len(nz) else None
    # mid-ranks from the exact values (floats may break ties the fractions keep)
    mags = sorted(abs(x) for x in nz)
    ranks = [np.mean([k + 1 for k, m in enumerate(mags) if m == abs(x)]) for x in nz]
    t = sum(r for r, x in zip(ranks, nz) if x > 0)
    null = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(nz))]
    return two_sided(null, t)


def brute_rank_sum(x: list[Fraction], y: list[Fraction]) -> float:
    pooled = x + y
    srt = sorted(pooled)
    ranks = [np.mean([k + 1 for k, v in enumerate(srt) if v == p]) for p in pooled]
    t = sum(ranks[: len(x)])
    null = [sum(ranks[i] for i in c) for c in itertools.combinations(range(len(pooled)), len(x))]
    return two_sided(null, t)


def item_means(rng, n):
    """Per-item means of 3 to 5 ratings on 1..5: exact fractions with many ties."""
    counts = rng.integers(3, 6, n)
    sums = np.array([rng.integers(1, 6, c).sum() for c in counts])
    return sums, counts


@pytest.mark.parametrize("n", range(5, 13))
def test_signed_rank_exact_matches_enumeration_with_ties_and_zeros(n):
    rng = np.random.default_rng(n)
    sa, ca = item_means(rng, n)
    sb, cb = item_means(rng, n)
    sb[:2], cb[:2] = sa[:2], ca[:2]                     # two zero differences
    d = [Fraction(int(a), int(c)) - Fraction(int(b), int(e)) for a, c, b, e in zip(sa, ca, sb, cb)]
    r = stats.compare_items(sa, ca, sb, cb, paired=True)
    assert r.method == "exact" and r.zeros >= 2 and r.n_used == sum(x != 0 for x in d)
    assert r.p == pytest.approx(brute_signed_rank(d), abs=1e-12)


@pytest.mark.parametrize("n", range(5, 13))
def test_rank_sum_exact_matches_enumeration_with_ties(n):
    rng = np.random.default_rng(100 + n)
    m = n // 2
    sa, ca = item_means(rng, m)
    sb, cb = item_means(rng, n - m)
    x = [Fraction(int(a), int(c)) for a, c in zip(sa, ca)]
    y = [Fraction(int(a), int(c)) for a, c in zip(sb, cb)]
    r = stats.compare_items(sa, ca, sb, cb, paired=False)
    assert r.method == "exact"
    assert r.p == pytest.approx(brute_rank_sum(x, y), abs=1e-12)


def test_float_rounding_does_not_break_ties():
    # 13/3 - 10/3 and 4 - 3 are the same difference; as floats they are not.
    assert 13 / 3 - 10 / 3 != 4.0 - 3.0
    keys = stats.difference_keys(np.array([13, 4, 6]), np.array([3, 1, 2]), np.array([10, 3, 4]), np.array([3, 1, 2]))
    assert keys[0] == keys[1] == keys[2]
    assert stats.mean_keys(np.array([13, 26, 4]), np.array([3, 6, 1])).tolist()[:2] == [
        stats.mean_keys(np.array([13, 26, 4]), np.array([3, 6, 1]))[0]] * 2


def test_overflowing_scale_falls_back_to_exact_fractions():
    counts = np.array([97, 89, 83, 79, 73, 71, 67, 61, 59, 53, 47, 43])  # lcm far beyond int64
    sums = counts * 3
    sums[0] += 1
    keys = stats.mean_keys(sums, counts)
    assert (keys[1:] == keys[1]).all() and keys[0] > keys[1]


def test_five_pairs_all_one_way_give_the_exact_minimum():
    r = stats.compare_items(np.array([4] * 5), np.ones(5), np.array([3] * 5), np.ones(5), paired=True)
    assert r.method == "exact" and r.p == pytest.approx(0.0625)


def test_matches_scipy_where_the_method_is_the_same():
    rng = np.random.default_rng(3)
    # exact, no ties, no zeros
    b = rng.permutation(40)[:12].astype(float)
    a = b + rng.permutation(np.arange(1, 13)) * rng.choice([-1, 1], 12) / 4
    assert stats.compare(a, b, True).p == pytest.approx(sps.wilcoxon(a, b, method="exact").pvalue, abs=1e-12)
    perm = rng.permutation(100).astype(float)
    x, y = perm[:10], perm[10:22]
    ours = stats.compare(x, y, False)
    assert ours.p == pytest.approx(sps.mannwhitneyu(x, y, method="exact").pvalue, abs=1e-12)
    assert ours.statistic == sps.mannwhitneyu(x, y).statistic
    # normal approximation: tie-corrected, continuity 0.5 (integer ranks: ties in groups of 3)
    d = np.repeat(rng.choice(np.arange(1, 200), 30, replace=False), 3) * rng.choice([-1, 1], 90)
    r = stats.signed_rank(d)
    assert r.method == "normal"
    ref = sps.wilcoxon(d, method="approx", correction=True)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-9) and r.statistic == ref.statistic
    perm = rng.permutation(1000).astype(float)
    x, y = perm[:40], perm[40:75]
    r = stats.compare(x, y, False)
    assert r.method == "normal"
    assert r.p == pytest.approx(sps.mannwhitneyu(x, y, method="asymptotic", use_continuity=True).pvalue, rel=1e-9)


def test_approximation_close_to_exact_at_the_switch():
    rng = np.random.default_rng(5)
    d = rng.integers(-10, 11, (200, stats.EXACT_MAX_PAIRS))
    ex = stats.signed_rank_many(d)
    ap = stats.signed_rank_many(d, exact_max=0)
    assert ex.exact.all() and not ap.exact.any()
    gap = np.abs(ex.p - ap.p)
    assert np.nanmax(gap) < 0.015 and np.nanmax(gap[ex.p < 0.1]) < 0.003


def test_undefined_tests():
    same = stats.compare_items(np.array([3, 4]), np.ones(2), np.array([3, 4]), np.ones(2), paired=True)
    assert not same.defined and same.undefined == "every difference is zero" and np.isnan(same.p)
    assert stats.signed_rank(np.array([], dtype=np.int64)).undefined == "no pairs"
    assert stats.rank_sum(np.array([1, 1]), np.array([1])).undefined == "every value is tied"
    assert stats.rank_sum(np.array([1, 2]), np.array([], dtype=np.int64)).undefined == "a side has no items"


def test_many_equals_one_at_a_time():
    rng = np.random.default_rng(8)
    d = rng.integers(-4, 5, (30, 20))
    many = stats.signed_rank_many(d)
    for k in range(30):
        one = stats.signed_rank(d[k])
        assert (one.p == many.p[k]) or (np.isnan(one.p) and np.isnan(many.p[k]))
    x, y = rng.integers(0, 6, (10, 8)), rng.integers(0, 6, (10, 9))
    many = stats.rank_sum_many(x, y)
    for k in range(10):
        assert stats.rank_sum(x[k], y[k]).p == many.p[k]
