"""Statistics for the report, vectorised with numpy and scipy.stats.

Written here rather than imported, and why:
- Krippendorff's alpha: the ``krippendorff`` package is GPL-3.0 and this project is MIT, so alpha is
  computed from per-unit value counts with the coincidence-matrix definition (Krippendorff 2011,
  "Computing Krippendorff's alpha-reliability"); the package is used only in tests, as an oracle.
  One pass of ``np.bincount`` per cell of the 5x5 coincidence matrix handles every group at once.
- Holm's step-down correction: statsmodels is not a dependency and the method is five lines.
- The item (cluster) bootstrap of a mean: resampling n items with replacement only matters through how
  many times each distinct (item sum, item count) pair is drawn, which is one multinomial draw over
  those few categories. That is the same distribution as the textbook resampling loop, at O(B x K)
  instead of O(B x n): 1,000 resamples of 200,000 items cost milliseconds.
Mann-Whitney U, Wilcoxon signed-rank and Spearman's rho come from scipy.stats.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

NUM_VALUES = 5  # Likert points 1..5


def holm(pvalues: np.ndarray | list[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given), capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def group_mean_sd(group: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: count, mean and sample SD (ddof=1; NaN with fewer than 2 values)."""
    n = np.bincount(group, minlength=n_groups).astype(np.float64)
    s = np.bincount(group, weights=values, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        dev = values - mean[group]
        ss = np.bincount(group, weights=dev * dev, minlength=n_groups)
        sd = np.sqrt(ss / (n - 1))
    sd[n < 2] = np.nan
    return n.astype(np.int64), mean, sd


def cluster_bootstrap_ci(
    unit_group: np.ndarray,
    unit_sum: np.ndarray,
    unit_count: np.ndarray,
    n_groups: int,
    samples: int,
    rng: np.random.Generator,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI of each group's mean over all ratings, resampling units (items) with replacement.

    ``unit_sum`` / ``unit_count``: each unit's score sum and number of ratings; the group's mean is
    sum(sums) / sum(counts). Exact multinomial formulation of the resampling loop (module docstring).
    """
    lo = np.full(n_groups, np.nan)
    hi = np.full(n_groups, np.nan)
    if samples <= 0 or unit_group.size == 0:
        return lo, hi
    # Distinct (group, sum, count) triples and how many units share each.
    s_max = int(unit_sum.max()) + 1
    c_max = int(unit_count.max()) + 1
    key = (unit_group.astype(np.int64) * s_max + unit_sum.astype(np.int64)) * c_max + unit_count.astype(np.int64)
    uniq, freq = np.unique(key, return_counts=True)
    g = uniq // (s_max * c_max)
    s = (uniq // c_max) % s_max
    c = uniq % c_max
    bounds = np.searchsorted(g, np.arange(n_groups + 1))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    for gi in range(n_groups):
        a, b = bounds[gi], bounds[gi + 1]
        if b <= a:
            continue
        f = freq[a:b]
        n_units = int(f.sum())
        if n_units < 2:
            continue
        draws = rng.multinomial(n_units, f / n_units, size=samples).astype(np.float64)
        means = (draws @ s[a:b].astype(np.float64)) / (draws @ c[a:b].astype(np.float64))
        lo[gi], hi[gi] = np.percentile(means, q)
    return lo, hi


# --------------------------------------------------------------------------------------------------
# Agreement


@dataclass
class Agreement:
    """Per group: Krippendorff's alpha (ordinal, interval), pairable units and values, agreement rates."""

    alpha_ordinal: np.ndarray
    alpha_interval: np.ndarray
    units: np.ndarray          # units with at least two ratings
    pairable: np.ndarray       # values in those units
    exact: np.ndarray          # share of within-unit rating pairs that agree exactly: sum over units of
                               # agreeing pairs / sum of m_u (m_u - 1) / 2, each pair counted once
    within_one: np.ndarray     # ... that differ by at most one point


def unit_value_counts(unit: np.ndarray, score: np.ndarray, n_units: int, values: int = NUM_VALUES) -> np.ndarray:
    """(n_units, values) matrix: how many times each unit got each value 1..values (a scale's points,
    counted from 1: a 0-6 scale is given as score + 1 with values = 7)."""
    flat = np.bincount(unit * values + (score - 1), minlength=n_units * values)
    return flat.reshape(n_units, values)


def coincidences(counts: np.ndarray, unit_group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the 5x5 coincidence matrix o_ck = sum_u n_uc (n_uk - [c=k]) / (m_u - 1) over units
    with m_u >= 2 values. Returns shape (n_groups, K, K) for K = counts.shape[1] scale points."""
    m = counts.sum(axis=1)
    keep = m >= 2
    cnt = counts[keep].astype(np.float64)
    grp = unit_group[keep]
    w = 1.0 / (m[keep] - 1)
    K = counts.shape[1]
    o = np.zeros((n_groups, K, K))
    for c in range(K):
        for k in range(c, K):
            prod = cnt[:, c] * cnt[:, k] if c != k else cnt[:, c] * (cnt[:, c] - 1)
            o[:, c, k] = np.bincount(grp, weights=prod * w, minlength=n_groups)
            o[:, k, c] = o[:, c, k]
    return o


def _delta2(n_c: np.ndarray, metric: str) -> np.ndarray:
    """Squared difference function for values 1..K given the value totals ``n_c`` (K = its length)."""
    K = n_c.size
    v = np.arange(1, K + 1, dtype=np.float64)
    if metric == "interval":
        return (v[:, None] - v[None, :]) ** 2
    if metric == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        i = np.arange(K)
        lo = np.minimum(i[:, None], i[None, :])
        hi = np.maximum(i[:, None], i[None, :])
        # sum_{g=lo}^{hi} n_g - (n_lo + n_hi) / 2
        d = cum[hi + 1] - cum[lo] - (n_c[lo] + n_c[hi]) / 2.0
        return d * d
    if metric == "nominal":
        return 1.0 - np.eye(K)
    raise ValueError(metric)


def alpha_from_coincidences(o: np.ndarray, metric: str) -> float:
    """Krippendorff's alpha = 1 - D_o / D_e from one KxK coincidence matrix."""
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n < 2:
        return float("nan")
    d2 = _delta2(n_c, metric)
    d_o = (o * d2).sum() / n
    d_e = (np.outer(n_c, n_c) * d2).sum() / (n * (n - 1))
    if d_e == 0:
        return float("nan")
    return float(1.0 - d_o / d_e)


def agreement(counts: np.ndarray, unit_group: np.ndarray, n_groups: int) -> Agreement:
    """Krippendorff's alpha and pairwise agreement rates for each group of units."""
    o = coincidences(counts, unit_group, n_groups)
    m = counts.sum(axis=1)
    keep = m >= 2
    units = np.bincount(unit_group[keep], minlength=n_groups)
    pairable = np.bincount(unit_group[keep], weights=m[keep], minlength=n_groups).astype(np.int64)
    # Share of unordered rating pairs within a unit, every pair counted once (not the 1/(m_u - 1)
    # weighting of the coincidence matrix, which would weigh a unit's pairs by its number of ratings):
    # per unit, m(m-1)/2 pairs, sum_c n_c(n_c-1)/2 equal, plus sum_c n_c n_(c+1) one point apart.
    cnt = counts[keep].astype(np.float64)
    grp = unit_group[keep]
    mk = m[keep].astype(np.float64)
    same_u = (cnt * (cnt - 1)).sum(axis=1) / 2.0
    near_u = same_u + (cnt[:, :-1] * cnt[:, 1:]).sum(axis=1)
    total = np.bincount(grp, weights=mk * (mk - 1) / 2.0, minlength=n_groups)
    same = np.bincount(grp, weights=same_u, minlength=n_groups)
    near = np.bincount(grp, weights=near_u, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = same / total
        within = near / total
    return Agreement(
        alpha_ordinal=np.array([alpha_from_coincidences(o[g], "ordinal") for g in range(n_groups)]),
        alpha_interval=np.array([alpha_from_coincidences(o[g], "interval") for g in range(n_groups)]),
        units=units,
        pairable=pairable,
        exact=exact,
        within_one=within,
    )


def leave_one_out_spearman(rating_unit: np.ndarray, score: np.ndarray, unit_sum: np.ndarray,
                           unit_count: np.ndarray) -> float:
    """Spearman's rho between each rating and the mean of the other ratings of the same unit.

    A correlation-style companion to alpha (units with at least two ratings only).
    """
    m = unit_count[rating_unit]
    keep = m >= 2
    if keep.sum() < 3:
        return float("nan")
    x = score[keep].astype(np.float64)
    rest = (unit_sum[rating_unit][keep] - x) / (m[keep] - 1)
    if np.all(x == x[0]) or np.all(rest == rest[0]):
        return float("nan")
    # scipy's spearmanr is np.corrcoef of the two rankdata(average) columns; the ranks here are the same
    # floats, found by hashing the few distinct values instead of sorting millions of them.
    # (n, 2) laid out as np.apply_along_axis leaves it in spearmanr, so the sums run in the same order.
    ranked = np.vstack((_average_ranks(x), _average_ranks(rest))).T
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(values)`` (ties get their average rank) in O(n) for data with few
    distinct values: 0.5 * (c_k + c_(k-1) + 1) from the cumulative counts, as rankdata computes it."""
    import pandas as pd

    codes, uniq = pd.factorize(values)
    order = np.argsort(uniq, kind="stable")
    cum = np.cumsum(np.bincount(codes, minlength=uniq.size)[order])
    prev = np.concatenate(([0], cum[:-1]))
    rank_sorted = 0.5 * (cum + prev + 1)
    rank = np.empty(uniq.size)
    rank[order] = rank_sorted
    return rank[codes]


# --------------------------------------------------------------------------------------------------
# Tests between systems


@dataclass
class TestResult:
    test: str          # "wilcoxon" (paired) or "mannwhitney"
    n_a: int
    n_b: int
    statistic: float
    p: float
    # Which side the test found higher: +1 a, -1 b, 0 neither. Wilcoxon: the signed-rank sums R+ vs R-
    # of a - b; Mann-Whitney: U of a vs n_a n_b / 2. Read off the same per-item means the test uses.
    direction: int = 0


def compare(a: np.ndarray, b: np.ndarray, paired: bool) -> TestResult:
    """Two-sided Wilcoxon signed-rank on paired per-prompt means, or Mann-Whitney U on per-item means."""
    if paired:
        if a.size < 1 or np.all(a == b):
            return TestResult("wilcoxon", int(a.size), int(b.size), 0.0, 1.0)
        d = a - b
        nz = d[d != 0]
        # scipy's "auto" falls back to a permutation test for n <= 13 with ties (0.5 s per call);
        # use the exact null without ties and the tie-corrected normal approximation otherwise.
        exact = 0 < nz.size <= 50 and np.unique(np.abs(nz)).size == nz.size and nz.size == d.size
        r = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided",
                         method="exact" if exact else "approx", correction=not exact)
        ranks = sps.rankdata(np.abs(nz))
        direction = int(np.sign(ranks[nz > 0].sum() - ranks[nz < 0].sum()))
        return TestResult("wilcoxon", int(a.size), int(b.size), float(r.statistic), float(r.pvalue), direction)
    if a.size < 1 or b.size < 1:
        return TestResult("mannwhitney", int(a.size), int(b.size), float("nan"), float("nan"))
    r = sps.mannwhitneyu(a, b, alternative="two-sided")  # statistic: U of a
    direction = int(np.sign(float(r.statistic) - a.size * b.size / 2.0))
    return TestResult("mannwhitney", int(a.size), int(b.size), float(r.statistic), float(r.pvalue), direction)
