"""Statistics for the report, vectorised with numpy and scipy.stats.

Written here rather than imported, and why:
- Krippendorff's alpha: the ``krippendorff`` package is GPL-3.0 and this project is MIT, so alpha is
  computed from per-unit value counts with the coincidence-matrix definition (Krippendorff 2011,
  "Computing Krippendorff's alpha-reliability"); the package is used only in tests, as an oracle.
  One pass of ``np.bincount`` per cell of the 5x5 coincidence matrix handles every group at once.
- Holm's step-down correction: five lines, simpler than statsmodels' ``multipletests`` with NaN handling.
- The rank tests (Wilcoxon signed-rank, Mann-Whitney U): scipy's exact nulls ignore ties and its
  permutation fallback costs 0.5 s per call; the report needs the exact null *conditional on ties and
  zeros* for thousands of tests at once (the planner), which a DP over doubled ranks gives. scipy is the
  oracle where its method is the same (tests/test_rank_tests.py). Spearman's rho comes from scipy.stats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

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
    return coincidences_by(counts, [(unit_group, n_groups)])[0]


def coincidences_by(counts: np.ndarray, groupings: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
    """:func:`coincidences` for several groupings (unit_group, n_groups) of the same units: each unit's
    term is computed once and summed per grouping."""
    m = counts.sum(axis=1)
    keep = m >= 2
    cnt = counts[keep].astype(np.float64)
    w = 1.0 / (m[keep] - 1)
    K = counts.shape[1]
    grps = [(unit_group[keep], n_groups) for unit_group, n_groups in groupings]
    out = [np.zeros((n_groups, K, K)) for _, n_groups in groupings]
    for c in range(K):
        for k in range(c, K):
            prod = cnt[:, c] * cnt[:, k] if c != k else cnt[:, c] * (cnt[:, c] - 1)
            term = prod * w
            for o, (grp, n_groups) in zip(out, grps):
                o[:, c, k] = np.bincount(grp, weights=term, minlength=n_groups)
                o[:, k, c] = o[:, c, k]
    return out


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
    return agreement_by(counts, [(unit_group, n_groups)])[0]


def agreement_by(counts: np.ndarray, groupings: list[tuple[np.ndarray, int]]) -> list[Agreement]:
    """:func:`agreement` for several groupings (unit_group, n_groups) of the same units, the per-unit
    work done once (the report groups its units by system x aspect and by aspect)."""
    coinc = coincidences_by(counts, groupings)
    m = counts.sum(axis=1)
    keep = m >= 2
    # Share of unordered rating pairs within a unit, every pair counted once (not the 1/(m_u - 1)
    # weighting of the coincidence matrix, which would weigh a unit's pairs by its number of ratings):
    # per unit, m(m-1)/2 pairs, sum_c n_c(n_c-1)/2 equal, plus sum_c n_c n_(c+1) one point apart.
    cnt = counts[keep].astype(np.float64)
    mk = m[keep].astype(np.float64)
    same_u = (cnt * (cnt - 1)).sum(axis=1) / 2.0
    near_u = same_u + (cnt[:, :-1] * cnt[:, 1:]).sum(axis=1)
    pairs_u = mk * (mk - 1) / 2.0
    out = []
    for o, (unit_group, n_groups) in zip(coinc, groupings):
        grp = unit_group[keep]
        total = np.bincount(grp, weights=pairs_u, minlength=n_groups)
        same = np.bincount(grp, weights=same_u, minlength=n_groups)
        near = np.bincount(grp, weights=near_u, minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            exact = same / total
            within = near / total
        out.append(Agreement(
            alpha_ordinal=np.array([alpha_from_coincidences(o[g], "ordinal") for g in range(n_groups)]),
            alpha_interval=np.array([alpha_from_coincidences(o[g], "interval") for g in range(n_groups)]),
            units=np.bincount(grp, minlength=n_groups),
            pairable=np.bincount(grp, weights=m[keep], minlength=n_groups).astype(np.int64),
            exact=exact,
            within_one=within,
        ))
    return out


def leave_one_out_spearman(rating_unit: np.ndarray, score: np.ndarray, unit_sum: np.ndarray,
                           unit_count: np.ndarray) -> float:
    """Spearman's rho between each rating and the mean of the other ratings of the same unit.

    A correlation-style companion to alpha (units with at least two ratings only).
    """
    m = unit_count[rating_unit]
    keep = m >= 2
    x = score[keep].astype(np.float64)
    rest = (unit_sum[rating_unit][keep] - x) / (m[keep] - 1)
    return spearman_of_ratings(x, rest)


def spearman_of_ratings(x: np.ndarray, rest: np.ndarray) -> float:
    """Spearman's rho of ratings ``x`` (integer points of a scale, as floats) against ``rest`` (the mean of
    the other ratings of each one's unit), as :func:`leave_one_out_spearman` computes it from the units;
    NaN below three ratings or when either side is constant."""
    if x.size < 3:
        return float("nan")
    if np.all(x == x[0]) or np.all(rest == rest[0]):
        return float("nan")
    # scipy's spearmanr is np.corrcoef of the two rankdata(average) columns; the ranks here are the same
    # floats, found by counting the few distinct values instead of sorting millions of them.
    # (n, 2) laid out as np.apply_along_axis leaves it in spearmanr, so the sums run in the same order.
    ranked = np.vstack((_average_ranks(x, integers=True), _average_ranks(rest))).T
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def _average_ranks(values: np.ndarray, integers: bool = False) -> np.ndarray:
    """``scipy.stats.rankdata(values)`` (ties get their average rank) in O(n) for data with few
    distinct values: 0.5 * (c_k + c_(k-1) + 1) from the cumulative counts, as rankdata computes it.
    ``integers``: the values are integers (scale points), counted by ``np.bincount`` over their range
    (values that do not occur add nothing to the counts), else found by hashing."""
    if integers:
        low = values.min()
        codes = (values - low).astype(np.int64)
        counts = np.bincount(codes)
        cum = np.cumsum(counts)
        return (0.5 * (cum + (cum - counts) + 1))[codes]
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
# Exact values: per-item means and their differences as integers, so that ties are ties


def _lcm_fits(counts: np.ndarray, sums: np.ndarray) -> int | None:
    """The least common multiple of ``counts`` when every ``sum * lcm / count`` fits in an int64 with
    room for differences; None otherwise."""
    lcm = 1
    for c in np.unique(counts[counts > 0]).tolist():
        lcm = lcm * int(c) // math.gcd(lcm, int(c))
        if lcm > 2 ** 40:
            return None
    top = int(np.abs(sums).max(initial=0)) * lcm
    return lcm if top < 2 ** 61 else None


def mean_keys(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Integers that order and tie exactly as the means ``sums / counts`` do (int64).

    ``sums * (L / counts)`` with L the least common multiple of the counts (so 13/3 and 10/3 + 1 are the
    same integer, where the floats differ); when that would overflow, the dense rank of the exact
    :class:`fractions.Fraction` values (still exact, slower)."""
    sums = np.asarray(sums).astype(np.int64)
    counts = np.asarray(counts).astype(np.int64)
    lcm = _lcm_fits(counts, sums)
    if lcm is not None:
        return sums * (lcm // np.maximum(counts, 1))
    fr = [Fraction(int(s), int(c)) for s, c in zip(sums.tolist(), counts.tolist())]
    order = {v: k for k, v in enumerate(sorted(set(fr)))}
    return np.array([order[v] for v in fr], dtype=np.int64)


def difference_keys(sum_a: np.ndarray, cnt_a: np.ndarray, sum_b: np.ndarray, cnt_b: np.ndarray) -> np.ndarray:
    """Integers with the sign of ``sum_a/cnt_a - sum_b/cnt_b``, whose absolute values order and tie
    exactly as the absolute differences do (int64): the differences scaled by the least common multiple
    of all counts, or (on overflow) signed dense ranks of the exact fractions."""
    sa, ca = np.asarray(sum_a).astype(np.int64), np.asarray(cnt_a).astype(np.int64)
    sb, cb = np.asarray(sum_b).astype(np.int64), np.asarray(cnt_b).astype(np.int64)
    lcm = _lcm_fits(np.concatenate([ca, cb]), np.concatenate([sa, sb]))
    if lcm is not None:
        return sa * (lcm // np.maximum(ca, 1)) - sb * (lcm // np.maximum(cb, 1))
    fr = [Fraction(int(a), int(c)) - Fraction(int(b), int(d))
          for a, c, b, d in zip(sa.tolist(), ca.tolist(), sb.tolist(), cb.tolist())]
    order = {v: k + 1 for k, v in enumerate(sorted({abs(x) for x in fr if x != 0}))}
    return np.array([0 if x == 0 else (order[abs(x)] if x > 0 else -order[abs(x)]) for x in fr], dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Rank tests with exact conditional nulls
#
# One rule for both tests and both paths (docs/report.md, "Tests"):
# - Zero differences (paired) are dropped before ranking (Wilcoxon's rule, scipy's zero_method="wilcox");
#   the test is undefined when none is left. Unpaired: undefined when a side is empty or all values tie.
# - Ties get mid-ranks. Ranks are doubled so they are integers, and every computation is on integers.
# - Exact p-values, conditional on the observed ties (and zeros), by counting sign assignments
#   (signed-rank) or subsets (rank-sum) with a dynamic programme over the doubled rank sums, up to
#   EXACT_MAX_PAIRS non-zero pairs / EXACT_MAX_POOLED pooled values; the counts stay exact integers in
#   float64 (2**50 and C(50, 25) are below 2**53).
# - Two-sided p = min(1, 2 min(P(T <= t), P(T >= t))): the observed value counts on both tails. The normal
#   approximation beyond the exact range uses the exact conditional mean and variance (tie-corrected) and
#   the continuity correction that mirrors counting the observed value: half the spacing between
#   attainable values of the statistic (0.5 without ties, as in scipy).

EXACT_MAX_PAIRS = 25
EXACT_MAX_POOLED = 50


@dataclass
class TestResult:
    test: str          # "wilcoxon" (paired) or "mannwhitney"
    n_a: int
    n_b: int
    statistic: float   # Wilcoxon: min(R+, R-) of the non-zero differences; Mann-Whitney: U of a
    p: float           # NaN when undefined
    # Which side the test found higher: +1 a, -1 b, 0 neither. Wilcoxon: the signed-rank sums R+ vs R-
    # of a - b; Mann-Whitney: U of a vs n_a n_b / 2. Read off the same per-item values the test uses.
    direction: int = 0
    method: str = ""   # "exact" or "normal"; "" when undefined
    n_used: int = 0    # pairs with a non-zero difference (Wilcoxon) or pooled values (Mann-Whitney)
    zeros: int = 0     # zero differences dropped (Wilcoxon)
    undefined: str = ""  # why the test could not be computed ("" when it could)

    @property
    def defined(self) -> bool:
        return not self.undefined


@dataclass
class ManyResults:
    """Many tests at once (one per row): what :func:`signed_rank_many` and :func:`rank_sum_many` return."""

    statistic: np.ndarray
    p: np.ndarray          # NaN where undefined
    direction: np.ndarray  # int8
    exact: np.ndarray      # bool: exact path used
    n_used: np.ndarray
    defined: np.ndarray


def _doubled_midranks(sorted_vals: np.ndarray) -> np.ndarray:
    """Row-wise doubled mid-ranks (int64) of values already sorted along axis 1."""
    b, n = sorted_vals.shape
    idx = np.broadcast_to(np.arange(n), (b, n))
    diff = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    starts = np.concatenate([np.ones((b, 1), bool), diff], axis=1)
    ends = np.concatenate([diff, np.ones((b, 1), bool)], axis=1)
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, idx, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return (first + last + 2).astype(np.int64)


def _signed_rank_lower(ranks: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """P(T <= limit) per row, T the doubled sum of the ranks given a + sign, over the 2**n equally likely
    sign assignments (ranks 0 = not present). Counts only up to each row's limit: the null is symmetric
    (T and sum(R) - T have the same distribution), so the two-sided p needs the lower tail at
    min(t, sum(R) - t) only. Rows are processed in blocks of similar limits, one DP pass per position
    grouped by the rank value there."""
    b, n = ranks.shape
    out = np.empty(b)
    order = np.argsort(limit, kind="stable")
    for block in np.array_split(order, min(8, b)):
        if block.size == 0:
            continue
        r = ranks[block]
        width = int(limit[block].max()) + 1
        counts = np.zeros((block.size, width))
        counts[:, 0] = 1.0
        for j in range(n):
            v = r[:, j]
            new = counts.copy()
            for val in np.unique(v[(v > 0) & (v < width)]).tolist():
                rows = np.flatnonzero(v == val)
                new[rows, val:] += counts[rows, :width - val]
            counts = new
        cum = np.cumsum(counts, axis=1)
        present = (r > 0).sum(axis=1)
        out[block] = cum[np.arange(block.size), limit[block]] / np.exp2(present)
    return out


# Rows per block of the exact rank-sum count (``_rank_sum_count``): enough to spread the per-position Python
# work over many tests, few enough that a block's live states stay small (measured at 20 + 20 items, against
# 128: 32-row blocks up to 1.3x slower, 400-800-row blocks up to 1.6x; docs/benchmarks.md, study planner).
RANK_SUM_BLOCK = 128


def _rank_sum_count(rs: np.ndarray, k: int, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``rs`` (doubled mid-ranks sorted ascending, B x N): how many of its k-subsets have a sum
    <= ``limit`` and how many exactly ``limit`` (exact integers in float64).

    A 0/1 knapsack over the positions in ascending order on the state (c ranks chosen, t = S - c(c + 1)),
    S their sum: c(c + 1) is the least sum of any c doubled mid-ranks, so t >= 0. Only live states are
    counted: at position j a state can still end at or below the limit only if S plus the k - c smallest
    ranks from j on is <= limit, and it is non-zero only if S is at most the c largest ranks before j; each
    step covers the c and t of those states (the block's widest) and nothing else. A live state's
    predecessors are live, so a state left out (or miscounted for want of one left out) never reaches a
    live one, and only live counts are read at the end. Choosing rank v moves (c, t) to
    (c + 1, t + v - 2(c + 1)): one fixed memory offset if row c + 1 is addressed with a stride two shorter
    than a row, so one array operation (on the rows of the block whose rank at j is v) updates every c at
    once, in place; what a step moves past a row's window lands in that row's unread margin."""
    b, n = rs.shape
    at_most, equal = np.empty(b), np.empty(b)
    jj = np.arange(n)[:, None]
    cc = np.arange(k)[None, :]
    reach = (cc <= jj) & (jj + k - cc <= n)        # c chosen before position j can still become k
    order = np.argsort(limit, kind="stable")       # blocks of similar limits: similar windows
    for start in range(0, b, RANK_SUM_BLOCK):
        blk = order[start:start + RANK_SUM_BLOCK]
        r, lim, nb = rs[blk], limit[blk], blk.size
        pre = np.zeros((nb, n + 1), np.int64)
        np.cumsum(r, axis=1, out=pre[:, 1:])
        rest = pre[:, np.where(reach, jj + k - cc, 0)] - pre[:, jj]     # the k - c smallest ranks from j on
        most = pre[:, jj] - pre[:, np.maximum(jj - cc, 0)]              # the c largest ranks before j
        live = np.where(reach, (np.minimum(lim[:, None, None] - rest, most) - cc * (cc + 1)).max(axis=0), -1)
        final = lim - k * (k + 1)                  # t of a k-subset summing to the limit
        width = int(max(live.max(), final.max())) + 1
        row = width + 2 * n + 2                    # room for a step's overshoot (never read) either side
        counts = np.zeros((nb, k + 1, row))
        counts[:, 0, 0] = 1.0
        strides = ((k + 1) * row * 8, (row - 2) * 8, 8)
        for j in range(n):
            cs = np.flatnonzero(live[j] >= 0)
            if cs.size == 0:
                continue
            lo, hi = int(cs[0]), int(cs[-1])
            span = int(live[j, lo:hi + 1].max()) + 1
            src = counts[:, lo:hi + 1, :span]
            shape = (nb, hi - lo + 1, span)
            base = (lo + 1) * (row - 2)            # + v: the offset in a block row where (lo, 0) moves to
            v = r[:, j]
            if (v == v[0]).all():
                dst = np.ndarray(shape, np.float64, counts, (base + int(v[0])) * 8, strides)
                dst += src    # overlapping operands: numpy adds as if src had been copied first
                continue
            by = np.argsort(v, kind="stable")
            sv = v[by]
            cut = (np.flatnonzero(sv[1:] != sv[:-1]) + 1).tolist()
            for a, z in zip([0] + cut, cut + [nb]):
                rows = by[a:z]
                dst = np.ndarray(shape, np.float64, counts, (base + int(sv[a])) * 8, strides)
                dst[rows] += src[rows]
        ends = counts[np.arange(nb), k]
        at_most[blk] = np.cumsum(ends[:, :width], axis=1)[np.arange(nb), final]
        equal[blk] = ends[np.arange(nb), final]
    return at_most, equal


def _rank_sum_exact_p(ranks: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
    """Exact two-sided p per row of ``ranks`` (B x N pooled doubled mid-ranks), ``w`` the doubled rank sum of
    the k values of one side: counts the k-subsets at or beyond ``w`` on the nearer tail of the null (mean
    k(N + 1)); the other tail follows, P(W >= w) = 1 - P(W <= w) + P(W = w). The upper tail is counted as
    the lower tail of the reflected ranks 2(N + 1) - r (the doubled mid-ranks of the reversed order)."""
    n = ranks.shape[1]
    rs = np.sort(ranks, axis=1)
    centre = k * (n + 1)
    low = w <= centre
    rows = np.where(low[:, None], rs, 2 * (n + 1) - rs[:, ::-1])
    at_most, equal = _rank_sum_count(rows, k, np.where(low, w, 2 * centre - w))
    total = float(math.comb(n, k))
    other = total - at_most + equal
    return np.minimum(1.0, 2.0 * np.minimum(at_most, other) / total)


def signed_rank_many(d: np.ndarray, exact_max: int = EXACT_MAX_PAIRS) -> ManyResults:
    """Two-sided Wilcoxon signed-rank tests, one per row of ``d`` (B x n exact integer differences, e.g.
    from :func:`difference_keys`), by the rules above. Vectorised: the planner runs thousands at once."""
    d = np.atleast_2d(np.asarray(d, dtype=np.int64))
    b, n = d.shape
    absd = np.abs(d)
    nz = absd > 0
    n_used = nz.sum(axis=1)
    sentinel = int(absd.max(initial=0)) + 1
    key = np.where(nz, absd, sentinel)
    order = np.argsort(key, axis=1, kind="stable")
    sk = np.take_along_axis(key, order, axis=1)
    sign = np.take_along_axis(np.sign(d), order, axis=1)
    ranks = np.where(sk < sentinel, _doubled_midranks(sk), 0)
    total = ranks.sum(axis=1)
    t_plus = (ranks * (sign > 0)).sum(axis=1)          # doubled R+
    statistic = np.minimum(t_plus, total - t_plus) / 2.0
    direction = np.sign(2 * t_plus - total).astype(np.int8)
    defined = n_used > 0
    p = np.full(b, np.nan)
    exact = defined & (n_used <= exact_max)
    if exact.any():
        low = np.minimum(t_plus[exact], total[exact] - t_plus[exact])
        p[exact] = np.minimum(1.0, 2.0 * _signed_rank_lower(ranks[exact], low))
    approx = defined & ~exact
    if approx.any():
        r = ranks[approx].astype(np.float64)
        mu = r.sum(axis=1) / 2.0
        sd = np.sqrt((r * r).sum(axis=1) / 4.0)
        half_step = np.gcd.reduce(ranks[approx], axis=1) / 2.0
        z = np.maximum(np.abs(t_plus[approx] - mu) - half_step, 0.0) / sd
        p[approx] = np.minimum(1.0, 2.0 * sps.norm.sf(z))
    return ManyResults(statistic=statistic, p=p, direction=direction, exact=exact, n_used=n_used, defined=defined)


def rank_sum_many(x: np.ndarray, y: np.ndarray, exact_max: int = EXACT_MAX_POOLED) -> ManyResults:
    """Two-sided Mann-Whitney U (rank-sum) tests, one per row of ``x`` (B x m) against ``y`` (B x n),
    exact integer values (e.g. :func:`mean_keys` of the pooled means), by the rules above."""
    x = np.atleast_2d(np.asarray(x, dtype=np.int64))
    y = np.atleast_2d(np.asarray(y, dtype=np.int64))
    b, m = x.shape
    n = y.shape[1]
    stat = np.full(b, np.nan)
    p = np.full(b, np.nan)
    zeros_b = np.zeros(b, dtype=bool)
    if m == 0 or n == 0:
        return ManyResults(stat, p, np.zeros(b, np.int8), zeros_b, np.full(b, m + n), zeros_b)
    pooled = np.concatenate([x, y], axis=1)
    order = np.argsort(pooled, axis=1, kind="stable")
    sv = np.take_along_axis(pooled, order, axis=1)
    ranks_sorted = _doubled_midranks(sv)
    ranks = np.empty_like(ranks_sorted)
    np.put_along_axis(ranks, order, ranks_sorted, axis=1)
    w_x = ranks[:, :m].sum(axis=1)                      # doubled rank sum of x
    u = w_x / 2.0 - m * (m + 1) / 2.0
    direction = np.sign(2.0 * u - m * n).astype(np.int8)
    defined = sv[:, 0] != sv[:, -1]
    big = m + n
    exact = defined & (big <= exact_max)
    if exact.any():
        # Count subsets of the smaller side; the two-sided p is the same from either side.
        r = ranks[exact]
        p[exact] = _rank_sum_exact_p(r, m, w_x[exact]) if m <= n else _rank_sum_exact_p(r, n, r[:, m:].sum(axis=1))
    approx = defined & ~exact
    if approx.any():
        r = ranks[approx].astype(np.float64)
        mu = m * r.sum(axis=1) / big
        var = m * n / (big * (big - 1.0)) * ((r - r.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        half_step = np.gcd.reduce(ranks[approx] - ranks[approx][:, :1], axis=1) / 2.0
        z = np.maximum(np.abs(w_x[approx] - mu) - half_step, 0.0) / np.sqrt(var)
        p[approx] = np.minimum(1.0, 2.0 * sps.norm.sf(z))
    stat = u
    return ManyResults(statistic=stat, p=p, direction=direction, exact=exact, n_used=np.full(b, big),
                       defined=defined)


def signed_rank(d: np.ndarray) -> TestResult:
    """One paired test on exact integer differences (:func:`difference_keys`)."""
    d = np.asarray(d, dtype=np.int64).reshape(-1)
    r = signed_rank_many(d[None, :]) if d.size else None
    zeros = int((d == 0).sum())
    if r is None or not r.defined[0]:
        why = "no pairs" if d.size == 0 else "every difference is zero"
        return TestResult("wilcoxon", int(d.size), int(d.size), float("nan"), float("nan"), 0, "", 0, zeros, why)
    return TestResult("wilcoxon", int(d.size), int(d.size), float(r.statistic[0]), float(r.p[0]),
                      int(r.direction[0]), "exact" if r.exact[0] else "normal", int(r.n_used[0]), zeros)


def rank_sum(x: np.ndarray, y: np.ndarray) -> TestResult:
    """One unpaired test on exact integer values (:func:`mean_keys` over both sides together)."""
    x = np.asarray(x, dtype=np.int64).reshape(-1)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if x.size == 0 or y.size == 0:
        return TestResult("mannwhitney", int(x.size), int(y.size), float("nan"), float("nan"), 0, "",
                          int(x.size + y.size), 0, "a side has no items")
    r = rank_sum_many(x[None, :], y[None, :])
    if not r.defined[0]:
        return TestResult("mannwhitney", int(x.size), int(y.size), float(r.statistic[0]), float("nan"), 0, "",
                          int(x.size + y.size), 0, "every value is tied")
    return TestResult("mannwhitney", int(x.size), int(y.size), float(r.statistic[0]), float(r.p[0]),
                      int(r.direction[0]), "exact" if r.exact[0] else "normal", int(x.size + y.size))


def compare_items(sum_a: np.ndarray, cnt_a: np.ndarray, sum_b: np.ndarray, cnt_b: np.ndarray,
                  paired: bool) -> TestResult:
    """The report's test between two systems from per-item score sums and counts: Wilcoxon signed-rank on
    the exact per-prompt differences of means (rows aligned) or Mann-Whitney U on exact per-item means."""
    if paired:
        return signed_rank(difference_keys(sum_a, cnt_a, sum_b, cnt_b))
    keys = mean_keys(np.concatenate([sum_a, sum_b]), np.concatenate([cnt_a, cnt_b]))
    return rank_sum(keys[:len(sum_a)], keys[len(sum_a):])


def compare(a: np.ndarray, b: np.ndarray, paired: bool) -> TestResult:
    """The tests on values given as floats that are exact (integers or multiples of a common step):
    kept for callers with plain values; the report uses :func:`compare_items`."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    fr = [Fraction(v).limit_denominator(10 ** 6) for v in np.concatenate([a, b]).tolist()]
    den = 1
    for f in fr:
        den = den * f.denominator // math.gcd(den, f.denominator)
    ints = np.array([int(f * den) for f in fr], dtype=np.int64)
    ia, ib = ints[:a.size], ints[a.size:]
    if paired:
        return signed_rank(ia - ib)
    return rank_sum(ia, ib)
