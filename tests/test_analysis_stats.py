"""Statistics recomputed by an independent route: plain Python, and the GPL ``krippendorff`` package as
an oracle (tests only; the project computes alpha itself)."""
from __future__ import annotations

import itertools
import math
import random
import statistics

import krippendorff
import numpy as np
import pytest
from scipy import stats as sps

from mturk_eval.analysis import intervals, stats


def holm_plain(ps):
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adj = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * ps[i])
        adj[i] = min(1.0, running)
    return adj


@pytest.mark.parametrize("ps", [[0.01, 0.04, 0.03, 0.005], [0.5], [0.2, 0.2, 0.2], [0.001, 0.9, 0.04, 0.012, 0.3]])
def test_holm_matches_plain_python(ps):
    assert stats.holm(ps).tolist() == pytest.approx(holm_plain(ps))


def test_holm_known_values():
    # Holm (1979) by hand: sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 with running max.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([]).size == 0


def test_group_mean_sd_matches_statistics():
    rng = random.Random(1)
    groups = [rng.randrange(4) for _ in range(200)]
    values = [rng.randint(1, 5) for _ in range(200)]
    groups[0] = 3  # group 3 gets at least one value; group 4 (requested) stays empty
    n, mean, sd = stats.group_mean_sd(np.array(groups), np.array(values, float), 5)
    for g in range(4):
        vs = [v for gg, v in zip(groups, values) if gg == g]
        assert n[g] == len(vs)
        assert mean[g] == pytest.approx(statistics.mean(vs))
        assert sd[g] == pytest.approx(statistics.stdev(vs))
    assert n[4] == 0 and math.isnan(mean[4]) and math.isnan(sd[4])


def _random_reliability(seed: int, n_units: int = 60, n_coders: int = 8):
    rng = np.random.default_rng(seed)
    data = np.full((n_coders, n_units), np.nan)
    for u in range(n_units):
        k = int(rng.integers(1, 6))  # some units have one rating only: not pairable
        base = int(rng.integers(1, 6))
        for c in rng.choice(n_coders, k, replace=False):
            data[c, u] = int(np.clip(base + rng.integers(-1, 2), 1, 5))
    unit, score = np.nonzero(~np.isnan(data.T))
    return data, unit, data.T[unit, score].astype(int)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("level", ["ordinal", "interval"])
def test_alpha_matches_krippendorff_package(seed, level):
    data, unit, score = _random_reliability(seed)
    counts = stats.unit_value_counts(unit, score, data.shape[1])
    ag = stats.agreement(counts, np.zeros(data.shape[1], dtype=int), 1)
    got = ag.alpha_ordinal[0] if level == "ordinal" else ag.alpha_interval[0]
    assert got == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement=level), abs=1e-12)


def test_alpha_per_group_equals_alpha_of_each_group_alone():
    d1, u1, s1 = _random_reliability(3)
    d2, u2, s2 = _random_reliability(4)
    n1 = d1.shape[1]
    unit = np.concatenate([u1, u2 + n1])
    score = np.concatenate([s1, s2])
    counts = stats.unit_value_counts(unit, score, n1 + d2.shape[1])
    group = np.array([0] * n1 + [1] * d2.shape[1])
    ag = stats.agreement(counts, group, 2)
    for g, d in enumerate((d1, d2)):
        assert ag.alpha_interval[g] == pytest.approx(krippendorff.alpha(reliability_data=d, level_of_measurement="interval"))
        assert ag.alpha_ordinal[g] == pytest.approx(krippendorff.alpha(reliability_data=d, level_of_measurement="ordinal"))


def _pair_shares_plain(units: list[list[int]]) -> tuple[float, float, int]:
    """Plain Python: every unordered pair of ratings within a unit, each pair counted once."""
    tot = same = near = 0
    for vals in units:
        for x, y in itertools.combinations(vals, 2):
            tot += 1
            same += x == y
            near += abs(x - y) <= 1
    return same / tot, near / tot, tot


def test_pairwise_agreement_rates_by_enumerating_pairs():
    data, unit, score = _random_reliability(5)
    counts = stats.unit_value_counts(unit, score, data.shape[1])
    ag = stats.agreement(counts, np.zeros(data.shape[1], dtype=int), 1)
    units = [[int(v) for v in data[:, u] if not np.isnan(v)] for u in range(data.shape[1])]
    units = [v for v in units if len(v) >= 2]
    exact, near, _ = _pair_shares_plain(units)
    assert ag.units[0] == len(units)
    assert ag.exact[0] == pytest.approx(exact)
    assert ag.within_one[0] == pytest.approx(near)


def test_pairwise_agreement_is_the_share_of_pairs_not_coincidence_weighted():
    # {1,1}: 1 pair, agreeing; {1,2,3}: 3 pairs, none equal, two within one. Shares 1/4 and 3/4 (the
    # 1/(m-1)-weighted coincidence matrix gives 2/5 and 4/5). A unit with one rating has no pair.
    units = [[1, 1], [1, 2, 3], [4]]
    unit = np.array([u for u, vals in enumerate(units) for _ in vals])
    score = np.array([v for vals in units for v in vals])
    ag = stats.agreement(stats.unit_value_counts(unit, score, 3), np.zeros(3, dtype=int), 1)
    assert ag.exact[0] == pytest.approx(0.25) and ag.within_one[0] == pytest.approx(0.75)
    assert (ag.exact[0], ag.within_one[0]) == pytest.approx(_pair_shares_plain(units[:2])[:2])


def test_pairwise_agreement_per_group_by_enumerating_pairs():
    rng = np.random.default_rng(11)
    units = [rng.integers(1, 6, size=int(rng.integers(1, 7))).tolist() for _ in range(40)]
    group = rng.integers(0, 3, size=len(units))
    group[:3] = [0, 1, 2]
    unit = np.array([u for u, vals in enumerate(units) for _ in vals])
    score = np.array([v for vals in units for v in vals])
    ag = stats.agreement(stats.unit_value_counts(unit, score, len(units)), group, 4)
    for g in range(3):
        mine = [v for v, gg in zip(units, group) if gg == g and len(v) >= 2]
        exact, near, _ = _pair_shares_plain(mine)
        assert ag.exact[g] == pytest.approx(exact) and ag.within_one[g] == pytest.approx(near)
    assert np.isnan(ag.exact[3]) and np.isnan(ag.within_one[3])


def test_alpha_perfect_agreement_is_one_and_no_variation_is_nan():
    unit = np.array([0, 0, 1, 1, 2, 2])
    counts = stats.unit_value_counts(unit, np.array([1, 1, 3, 3, 5, 5]), 3)
    assert stats.agreement(counts, np.zeros(3, int), 1).alpha_interval[0] == pytest.approx(1.0)
    counts = stats.unit_value_counts(unit, np.array([4, 4, 4, 4, 4, 4]), 3)
    assert math.isnan(stats.agreement(counts, np.zeros(3, int), 1).alpha_ordinal[0])


def test_leave_one_out_spearman_by_hand():
    rating_unit = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    score = np.array([5, 4, 5, 1, 2, 3, 3, 2, 4])
    unit_sum = np.bincount(rating_unit, weights=score).astype(float)
    unit_cnt = np.bincount(rating_unit)
    got = stats.leave_one_out_spearman(rating_unit, score, unit_sum, unit_cnt)
    xs, rest = [], []
    for i, (u, s) in enumerate(zip(rating_unit, score)):
        others = [int(t) for j, (v, t) in enumerate(zip(rating_unit, score)) if v == u and j != i]
        if others:
            xs.append(int(s))
            rest.append(sum(others) / len(others))
    assert got == pytest.approx(sps.spearmanr(xs, rest).statistic)


def test_cluster_bootstrap_matches_naive_resampling():
    """The multinomial shortcut has the same distribution as resampling items in a loop."""
    rng = random.Random(7)
    items = [[rng.randint(1, 5) for _ in range(rng.choice([3, 5]))] for _ in range(40)]
    sums = np.array([sum(x) for x in items], float)
    cnts = np.array([len(x) for x in items], float)
    lo, hi = intervals.percentile_ci(intervals.item_bootstrap_draws(sums, cnts, 20000, np.random.default_rng(0)))
    naive = []
    for _ in range(20000):
        pick = [items[rng.randrange(40)] for _ in range(40)]
        naive.append(sum(map(sum, pick)) / sum(map(len, pick)))
    naive.sort()
    assert lo == pytest.approx(naive[int(0.025 * 20000)], abs=0.03)
    assert hi == pytest.approx(naive[int(0.975 * 20000)], abs=0.03)
    mean = sums.sum() / cnts.sum()
    assert lo < mean < hi


def test_bootstrap_needs_two_items():
    draws = intervals.item_bootstrap_draws(np.array([3.0]), np.array([1.0]), 100, np.random.default_rng(0))
    assert all(math.isnan(x) for x in intervals.percentile_ci(draws))


def test_mann_whitney_statistic_by_counting_pairs():
    a = np.array([3.2, 4.0, 4.4, 2.0, 5.0, 3.2])
    b = np.array([2.2, 3.2, 1.8, 2.6, 3.0])
    r = stats.compare(a, b, paired=False)
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    assert r.test == "mannwhitney" and r.statistic == pytest.approx(u)
    assert 0 < r.p < 0.1


def test_wilcoxon_statistic_by_hand_and_identical_systems():
    a = np.array([4.2, 3.0, 3.6, 4.8, 2.0, 3.4, 4.4])
    b = np.array([3.0, 3.4, 2.2, 3.0, 2.6, 2.0, 2.9])
    r = stats.compare(a, b, paired=True)
    d = a - b
    ranks = sps.rankdata(np.abs(d))
    w_minus = sum(rk for rk, x in zip(ranks, d) if x < 0)
    w_plus = sum(rk for rk, x in zip(ranks, d) if x > 0)
    assert r.test == "wilcoxon" and r.statistic == pytest.approx(min(w_minus, w_plus))
    same = stats.compare(a, a.copy(), paired=True)  # no non-zero difference: undefined (issue #17), not p = 1
    assert not same.defined and math.isnan(same.p)


def test_compare_direction_by_counting():
    # Mann-Whitney: a beats b in more pairs than it loses (12 wins, 8 losses).
    a = np.array([3.0, 3.0, 3.0, 3.0])
    b = np.array([2.0, 2.0, 2.0, 5.0, 5.0])
    wins = sum(int(u > v) - int(u < v) for u in a for v in b)
    assert wins == 4
    assert stats.compare(a, b, paired=False).direction == 1
    assert stats.compare(b, a, paired=False).direction == -1
    # Wilcoxon: signed ranks of the differences; d = [-1, 2, 3, -0.5] -> R+ = 3 + 4 = 7, R- = 2 + 1 = 3.
    x = np.array([1.0, 4.0, 5.0, 2.0])
    y = np.array([2.0, 2.0, 2.0, 2.5])
    assert stats.compare(x, y, paired=True).direction == 1
    assert stats.compare(y, x, paired=True).direction == -1
    assert stats.compare(x, x, paired=True).direction == 0


def test_agreement_by_gives_each_groupings_agreement_exactly():
    """The per-unit work shared between groupings changes no figure: every array equals a separate
    :func:`stats.agreement` call bit for bit."""
    rng = np.random.default_rng(3)
    unit = np.repeat(np.arange(300), rng.integers(1, 6, 300))
    counts = stats.unit_value_counts(unit, rng.integers(1, 6, unit.size), 300)
    by_sys, by_aspect = rng.integers(0, 12, 300), rng.integers(0, 4, 300)
    for got, (grp, n) in zip(stats.agreement_by(counts, [(by_sys, 12), (by_aspect, 4)]), [(by_sys, 12), (by_aspect, 4)]):
        want = stats.agreement(counts, grp, n)
        for name in ("alpha_ordinal", "alpha_interval", "units", "pairable", "exact", "within_one"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_integer_ranks_are_scipys_average_ranks():
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 5, 1000).astype(np.float64)
    np.testing.assert_array_equal(stats._average_ranks(x, integers=True), sps.rankdata(x))
    np.testing.assert_array_equal(stats._average_ranks(x, integers=True), stats._average_ranks(x))


@pytest.mark.parametrize("n_keys", [10, 300, 70_000])
def test_stable_order_is_a_stable_argsort(n_keys):
    from mturk_eval.analysis.inference import stable_order

    keys = np.random.default_rng(5).integers(0, n_keys, 20_000)
    np.testing.assert_array_equal(stable_order(keys, n_keys), np.argsort(keys, kind="stable"))
