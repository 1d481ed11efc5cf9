"""Confidence intervals of mean ratings and of differences between systems that account for raters as
well as items (the report's default), and the item-only bootstrap (an option).

Ratings of one study are crossed: every item is rated by several raters and every rater rates several
items, so a mean over ratings carries item-to-item *and* rater-to-rater variation. Resampling items only
treats the raters as fixed and is too narrow whenever raters differ (with the same five raters on every
item and a rater SD of 0.5 it covered the mean in about 65% of simulated studies, issue #17).

Default ("crossed", model-based): the random-effects model y = mu + a_item + b_rater + e, whose
variance of the mean over N ratings is

    Var = s2_item * sum_i n_i^2 / N^2 + s2_rater * sum_r m_r^2 / N^2 + s2_resid / N

(n_i ratings of item i, m_r of rater r). The three components are moment (U-statistic) estimates from
pairs of ratings (Owen 2007, "The pigeonhole bootstrap"; the same pairs Henderson's method uses):
half the mean squared difference of two ratings of the same item by different raters estimates
s2_rater + s2_resid, of the same rater on different items s2_item + s2_resid, of neither
s2_item + s2_rater + s2_resid. The interval is mean +- t(df) sqrt(Var) with Satterthwaite's df as in the
balanced two-way ANOVA (each mean square's df its effective number of items or raters minus one): with
five raters the rater term has four df, and the interval widens as it must. Computed per group with ``np.bincount`` (no resampling):
milliseconds for a million ratings, and no random stream at all.

Differences between two systems: the same model over both systems' ratings (each centred on its own
mean); the rater term counts each rater's share of A's ratings minus its share of B's, so raters who
rate both systems equally cancel, as they do in the difference.

Option ("item_bootstrap"): the percentile bootstrap over items (:func:`item_bootstrap_draws`: resampling
n items with replacement only matters through how many times each distinct (item sum, item count) pair
is drawn, which is one multinomial draw over those few categories, the same distribution as the
textbook resampling loop at O(B x K) instead of O(B x n)), each group with its own random stream seeded by the report's seed and the group's own key, so removing one
system from the input leaves every other interval byte-identical.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

INTERVAL_METHODS = ("crossed", "item_bootstrap")


def stream(seed: int, key: str) -> np.random.Generator:
    """A random stream that depends only on the seed and ``key`` (e.g. "persona/prompt_tuning/gpt2/fluency")."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


@dataclass
class Components:
    """Per group: moment estimates of the item, rater and residual variances, and the effective numbers
    of items and raters behind them."""

    item: np.ndarray
    rater: np.ndarray
    resid: np.ndarray


def _codes(group: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Dense codes of the (group, x) pairs present, their number, and each code's group."""
    g = np.asarray(group, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    if x.size == 0:
        return x, 0, x
    span = int(x.max()) + 1
    key = g * span + x
    space = (int(g.max()) + 1) * span
    if space <= 50_000_000:          # a presence table beats sorting
        present = np.zeros(space, dtype=bool)
        present[key] = True
        idx = np.cumsum(present) - 1
        code = idx[key]
        cells = np.flatnonzero(present)
    else:
        cells, code = np.unique(key, return_inverse=True)
        code = code.reshape(-1)
    return code, int(cells.size), cells // span


def _pair_ss(cell: np.ndarray, group_of_cell: np.ndarray, y: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: sum over unordered pairs of ratings in the same cell of (y - y')^2, and their number."""
    n_cells = int(group_of_cell.size)
    c = np.bincount(cell, minlength=n_cells).astype(np.float64)
    s = np.bincount(cell, weights=y, minlength=n_cells)
    q = np.bincount(cell, weights=y * y, minlength=n_cells)
    ss = c * q - s * s
    pairs = c * (c - 1) / 2
    return (np.bincount(group_of_cell, weights=ss, minlength=n_groups),
            np.bincount(group_of_cell, weights=pairs, minlength=n_groups))


def components(group: np.ndarray, item: np.ndarray, rater: np.ndarray, y: np.ndarray, n_groups: int,
               codes: tuple | None = None) -> Components:
    """Moment estimates of s2_item, s2_rater, s2_resid per group (negative estimates set to 0; a
    component that the design cannot separate is folded into the residual or the item term)."""
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(group, dtype=np.int64)
    (ic, n_ic, g_of_ic), (rc, n_rc, g_of_rc) = codes or (_codes(g, item), _codes(g, rater))
    ss_all, p_all = _pair_ss(g, np.arange(n_groups), y, n_groups)
    ss_i, p_i = _pair_ss(ic, g_of_ic, y, n_groups)
    ss_r, p_r = _pair_ss(rc, g_of_rc, y, n_groups)
    p_none = p_all - p_i - p_r
    ss_none = ss_all - ss_i - ss_r
    with np.errstate(invalid="ignore", divide="ignore"):
        a = ss_i / (2 * p_i)          # s2_rater + s2_resid
        b = ss_r / (2 * p_r)          # s2_item + s2_resid
        c = ss_none / (2 * p_none)    # all three
    item_v = np.where(np.isfinite(a) & np.isfinite(c), c - a, np.where(np.isfinite(b), b, np.nan))
    rater_v = np.where(np.isfinite(b) & np.isfinite(c), c - b, 0.0)
    resid_v = np.where(np.isfinite(a) & np.isfinite(b) & np.isfinite(c), a + b - c,
                       np.where(np.isfinite(a), a, 0.0))
    # No pair of ratings by the same rater in the group: rater effects cannot be told from the residual.
    rater_v = np.where(np.isfinite(b), rater_v, 0.0)
    resid_v = np.where(~np.isfinite(b) & np.isfinite(a), a, resid_v)
    item_v = np.where(~np.isfinite(b) & np.isfinite(a) & np.isfinite(c), c - a, item_v)
    # Every group with ratings but no within-item pair: the item term takes everything.
    only = ~np.isfinite(a) & ~np.isfinite(b) & np.isfinite(c)
    item_v = np.where(only, c, item_v)
    return Components(item=np.maximum(item_v, 0.0), rater=np.maximum(rater_v, 0.0), resid=np.maximum(resid_v, 0.0))


def _term(cell: np.ndarray, weight: np.ndarray, group_of_cell: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: sum over cells of (sum of the cell's weights)^2, and the effective number of cells
    (sum c^2)^2 / sum c^4."""
    w = np.bincount(cell, weights=weight, minlength=group_of_cell.size)
    s2 = np.bincount(group_of_cell, weights=w * w, minlength=n_groups)
    s4 = np.bincount(group_of_cell, weights=w ** 4, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = s2 * s2 / s4
    return s2, eff


def _interval(est: np.ndarray, t_item: np.ndarray, t_rater: np.ndarray, t_resid: np.ndarray,
              df_item: np.ndarray, df_rater: np.ndarray, df_resid: np.ndarray,
              level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """est +- t(df) sqrt(T_item + T_rater + T_resid), Satterthwaite's df taken, as in the balanced
    two-way ANOVA, over the mean-square-like sums Q_item = T_item + T_resid, Q_rater = T_rater + T_resid
    and Q_resid = T_resid (Var = Q_item + Q_rater - Q_resid): the rater term's df then also counts the
    noise of the residual subtracted from it, which the terms alone would not."""
    var = t_item + t_rater + t_resid
    with np.errstate(invalid="ignore", divide="ignore"):
        den = sum(np.where(q > 0, q * q / np.maximum(d, 1e-12), 0.0)
                  for q, d in ((t_item + t_resid, df_item), (t_rater + t_resid, df_rater), (t_resid, df_resid)))
        df = np.where(den > 0, var * var / den, np.inf)
    df = np.maximum(df, 1.0)
    se = np.sqrt(var)
    q = sps.t.ppf((1 + level) / 2, df)
    return est - q * se, est + q * se, se, df


def crossed_mean_ci(group: np.ndarray, item: np.ndarray, rater: np.ndarray, y: np.ndarray, n_groups: int,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model-based interval of each group's mean over its ratings, items and raters both random.
    Returns (low, high, standard error, df); NaN for groups with fewer than two ratings."""
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(group, dtype=np.int64)
    n = np.bincount(g, minlength=n_groups).astype(np.float64)
    mean = np.bincount(g, weights=y, minlength=n_groups) / np.where(n > 0, n, np.nan)
    codes = (_codes(g, item), _codes(g, rater))
    (ic, n_ic, g_of_ic), (rc, n_rc, g_of_rc) = codes
    comp = components(g, item, rater, y, n_groups, codes)
    w = 1.0 / np.where(n > 0, n, np.nan)[g]
    si, ei = _term(ic, w, g_of_ic, n_groups)
    sr, er = _term(rc, w, g_of_rc, n_groups)
    n_items = np.bincount(g_of_ic, minlength=n_groups)
    n_raters = np.bincount(g_of_rc, minlength=n_groups)
    df_resid = np.maximum(n - n_items - n_raters + 1, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi, se, df = _interval(mean, comp.item * si, comp.rater * sr, comp.resid / n, ei - 1, er - 1, df_resid,
                                   level)
    bad = n < 2
    for a in (lo, hi, se, df):
        a[bad] = np.nan
    return lo, hi, se, df


def crossed_difference_ci(item: np.ndarray, rater: np.ndarray, y: np.ndarray, side: np.ndarray,
                          level: float = 0.95) -> tuple[float, float, float, float, float]:
    """Model-based interval of mean(A) - mean(B) over ratings (``side`` True for A's ratings), items and
    raters random, raters shared between the systems. Returns (difference, low, high, se, df)."""
    y = np.asarray(y, dtype=np.float64)
    side = np.asarray(side, dtype=bool)
    na, nb = int(side.sum()), int((~side).sum())
    if na < 2 or nb < 2:
        nan = float("nan")
        return nan, nan, nan, nan, nan
    ma, mb = y[side].mean(), y[~side].mean()
    centred = y - np.where(side, ma, mb)
    zero = np.zeros(y.size, dtype=np.int64)
    # Items are distinct between the systems; code them apart in case ids repeat.
    item2 = np.asarray(item, dtype=np.int64) * 2 + side
    codes = (_codes(zero, item2), _codes(zero, rater))
    (ic, n_ic, g_of_ic), (rc, n_rc, g_of_rc) = codes
    comp = components(zero, item2, rater, centred, 1, codes)
    coef = np.where(side, 1.0 / na, -1.0 / nb)
    si, ei = _term(ic, coef, g_of_ic, 1)
    sr, er = _term(rc, coef, g_of_rc, 1)
    df_resid = np.array([max(na + nb - n_ic - n_rc + 1, 1)], dtype=np.float64)
    lo, hi, se, df = _interval(np.array([ma - mb]), comp.item * si, comp.rater * sr, comp.resid * (1 / na + 1 / nb),
                               ei - 1, er - 1, df_resid, level)
    return float(ma - mb), float(lo[0]), float(hi[0]), float(se[0]), float(df[0])


def item_bootstrap_draws(unit_sum: np.ndarray, unit_count: np.ndarray, samples: int,
                         rng: np.random.Generator) -> np.ndarray:
    """``samples`` bootstrap means over ratings of one group, resampling its items (units) with
    replacement: one multinomial draw over the distinct (sum, count) pairs (see ``stats``)."""
    if unit_sum.size < 2 or samples <= 0:
        return np.full(max(samples, 0), np.nan)
    pairs, freq = _distinct_pairs(unit_sum, unit_count)
    draws = rng.multinomial(unit_sum.size, freq / unit_sum.size, size=samples).astype(np.float64)
    return (draws @ pairs[:, 0]) / (draws @ pairs[:, 1])


def _distinct_pairs(unit_sum: np.ndarray, unit_count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique`` of the (sum, count) rows with their frequencies, rows in lexicographic order. Integer
    sums and counts (scores are scale points) are unique'd as one int64 key each, which orders the same
    way at a fraction of the cost of sorting rows."""
    lo = unit_sum.min()
    span = unit_count.max() + 1
    if (np.all(unit_sum == np.round(unit_sum)) and np.all(unit_count == np.round(unit_count))
            and unit_count.min() >= 0 and (unit_sum.max() - lo + 1) * span < 2 ** 52):
        keys, freq = np.unique(((unit_sum - lo) * span + unit_count).astype(np.int64), return_counts=True)
        return np.stack([keys // int(span) + lo, (keys % int(span)).astype(np.float64)], axis=1), freq
    return np.unique(np.stack([unit_sum, unit_count], axis=1), axis=0, return_counts=True)


def percentile_ci(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if draws.size == 0 or not np.isfinite(draws).all():
        return float("nan"), float("nan")
    lo, hi = np.percentile(draws, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)
