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


def full_null_rank_sum_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Test oracle: the exact rank-sum p-values as stats computed them before the live-window count, from
    every doubled rank sum of the smaller side's subsets (a dense DP over all sums, one copy per item)."""
    pooled = np.concatenate([x, y], axis=1)
    ranks = np.rint(2 * sps.rankdata(pooled, axis=1)).astype(np.int64)   # doubled mid-ranks
    m, n = x.shape[1], y.shape[1]
    side = ranks[:, :m] if m <= n else ranks[:, m:]
    k = side.shape[1]
    top = int(np.sort(ranks, axis=1)[:, -k:].sum(axis=1).max())
    counts = np.zeros((len(ranks), k + 1, top + 1))
    counts[:, 0, 0] = 1.0
    for j in range(ranks.shape[1]):
        v = ranks[:, j]
        new = counts.copy()
        for val in np.unique(v).tolist():
            rows = np.flatnonzero(v == val)
            new[rows, 1:, val:] += counts[rows, :-1, :top + 1 - val]
        counts = new
    cum = np.cumsum(counts[:, k, :], axis=1)
    t, total, rows = side.sum(axis=1), cum[:, -1], np.arange(len(ranks))
    lower = cum[rows, t]
    upper = total - np.where(t > 0, cum[rows, np.maximum(t - 1, 0)], 0.0)
    p = np.minimum(1.0, 2.0 * np.minimum(lower, upper) / total)
    return np.where(pooled.min(axis=1) == pooled.max(axis=1), np.nan, p)


@pytest.mark.parametrize("m, n, levels, rows", [
    (20, 20, 21, 2 * stats.RANK_SUM_BLOCK + 7),   # the planner's 20 + 20 items, item means of 5 ratings; 3 blocks
    (20, 20, 5, 60),                              # 1 rating per item: few, large tie groups
    (25, 25, 9, 40),                              # pooled count at the exact limit
    (31, 19, 11, 40),                             # m > n at the limit: counts the other side
    (3, 30, 6, 80), (30, 3, 6, 80),               # very unequal sides
    (1, 12, 4, 50), (12, 1, 4, 50), (1, 1, 2, 20),
    (8, 9, 2, 150),                               # two values only
    (20, 20, 10 ** 6, 1),                         # one row, no ties
    (13, 17, 3, 1),
])
def test_rank_sum_exact_p_bit_identical_to_the_full_null(m, n, levels, rows):
    rng = np.random.default_rng(1000 * m + n)
    x = rng.integers(0, levels, (rows, m))
    y = rng.integers(0, levels, (rows, n)) + rng.integers(0, 2, (rows, 1)) * max(1, levels // 4)  # some shifted
    if rows > 2:
        x[0], y[0] = 1, 1                         # an all-tied row: undefined
        x[1], y[1] = 1, 1
        y[1, -1] = 0                              # all tied but one
    many = stats.rank_sum_many(x, y)
    ref = full_null_rank_sum_p(x, y)
    assert (many.exact == many.defined).all() and many.defined[-1]
    if rows > 2:
        assert not many.defined[0] and many.defined[1]
    assert np.array_equal(many.p, ref, equal_nan=True)   # bit for bit, NaN where undefined
    if rows >= 40 and min(m, n) >= 3:
        # both tails counted (reflected ranks when the side's sum is above the null's mean), small and large p
        assert set(many.direction[1:].tolist()) >= {-1, 1}
        assert (many.p < 0.05).any() and (many.p > 0.5).any()


@pytest.mark.parametrize("m, n", [(7, 3), (3, 7), (5, 6), (9, 2)])
def test_rank_sum_exact_matches_enumeration_either_side_smaller(m, n):
    rng = np.random.default_rng(10 * m + n)
    sa, ca = item_means(rng, m)
    sb, cb = item_means(rng, n)
    x = [Fraction(int(a), int(c)) for a, c in zip(sa, ca)]
    y = [Fraction(int(a), int(c)) for a, c in zip(sb, cb)]
    r = stats.compare_items(sa, ca, sb, cb, paired=False)
    assert r.method == "exact"
    assert r.p == pytest.approx(brute_rank_sum(x, y), abs=1e-12)
