"""Intervals that account for raters as well as items: coverage by simulation (the default against the
item-only bootstrap, same studies), the moment estimates against plain pair sums, per-group streams."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from mturk_eval.analysis import intervals

SD_ITEM, SD_RATER, SD_RESID = 0.7, 0.5, 0.8


def population_mean(mu: float = 3.0) -> float:
    """Mean of clip(round(mu + item + rater + resid), 1, 5) over the population: the latent sum is
    normal, so the mean is exact from its distribution function (no Monte Carlo error)."""
    sd = np.sqrt(SD_ITEM ** 2 + SD_RATER ** 2 + SD_RESID ** 2)
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    return float((np.diff(sps.norm.cdf((edges - mu) / sd)) * np.arange(1, 6)).sum())


def simulate(studies: int, items: int, per_item: int, raters: int, seed: int, shift: float = 0.0):
    """``studies`` studies at once: each item rated by ``per_item`` of ``raters`` raters (all of them when
    equal), on the 1-5 scale (rounded, clipped). Returns flat (study, item, rater, score)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, SD_ITEM, (studies, items))
    b = rng.normal(0, SD_RATER, (studies, raters))
    if raters == per_item:
        who = np.broadcast_to(np.arange(raters), (studies, items, per_item))
    else:
        who = np.argsort(rng.random((studies, items, raters)), axis=2)[:, :, :per_item]
    latent = 3.0 + shift + a[:, :, None] + np.take_along_axis(b[:, None, :], who.reshape(studies, -1)[:, None, :],
                                                             axis=2).reshape(studies, items, per_item)
    y = np.clip(np.rint(latent + rng.normal(0, SD_RESID, latent.shape)), 1, 5)
    study = np.repeat(np.arange(studies), items * per_item)
    item = np.tile(np.repeat(np.arange(items), per_item), studies)
    return study, item, who.reshape(-1), y.reshape(-1)


@pytest.mark.parametrize("items,per_item,raters", [(50, 5, 5), (50, 5, 25)])
def test_default_intervals_cover_and_item_bootstrap_does_not(items, per_item, raters):
    """The audit's case (the same five raters on every item) and a platform-like pool of 25 raters."""
    studies = 2000
    truth = population_mean()
    study, item, rater, y = simulate(studies, items, per_item, raters, seed=items + raters)
    lo, hi, _, _ = intervals.crossed_mean_ci(study, item, rater, y, studies)
    crossed = float(((lo <= truth) & (truth <= hi)).mean())
    assert 0.93 <= crossed <= 0.97, crossed
    sums = y.reshape(studies, items, per_item).sum(axis=2)
    hits = []
    for s in range(400):
        draws = intervals.item_bootstrap_draws(sums[s], np.full(items, float(per_item)), 400, intervals.stream(1, str(s)))
        l, h = intervals.percentile_ci(draws)
        hits.append(l <= truth <= h)
    item_only = float(np.mean(hits))
    assert item_only < 0.88, item_only   # raters differ: resampling items alone is too narrow


def test_difference_interval_covers_with_shared_raters():
    studies, items, k, raters = 600, 40, 4, 20
    truth = population_mean(3.3) - population_mean(3.0)
    sa, ia, ra, ya = simulate(studies, items, k, raters, seed=7, shift=0.3)
    # System B: same raters as A (same seed for the rater effects), its own items.
    rng = np.random.default_rng(8)
    b = np.random.default_rng(7).normal(0, SD_ITEM, (studies, items))  # consume A's item draws
    b_r = np.random.default_rng(7)
    b_r.normal(0, SD_ITEM, (studies, items))
    rater_eff = b_r.normal(0, SD_RATER, (studies, raters))
    who = np.argsort(rng.random((studies, items, raters)), axis=2)[:, :, :k]
    latent = (3.0 + rng.normal(0, SD_ITEM, (studies, items))[:, :, None]
              + np.take_along_axis(rater_eff[:, None, :], who.reshape(studies, -1)[:, None, :], axis=2)
              .reshape(studies, items, k))
    yb = np.clip(np.rint(latent + rng.normal(0, SD_RESID, latent.shape)), 1, 5).reshape(-1)
    del b
    hits = 0
    n = items * k
    for s in range(studies):
        sl = slice(s * n, (s + 1) * n)
        _, lo, hi, _, _ = intervals.crossed_difference_ci(
            np.concatenate([ia[sl], ia[sl]]), np.concatenate([ra[sl], who[s].reshape(-1)]),
            np.concatenate([ya[sl], yb[sl]]), np.r_[np.ones(n, bool), np.zeros(n, bool)])
        hits += lo <= truth <= hi
    assert 0.92 <= hits / studies <= 0.98, hits / studies


def test_components_equal_plain_pair_sums():
    rng = np.random.default_rng(2)
    rows = [(i, r, float(rng.integers(1, 6))) for i in range(8) for r in rng.choice(6, 3, replace=False)]
    same_item, same_rater, neither = [], [], []
    for (i, r, y), (j, q, z) in itertools.combinations(rows, 2):
        (same_item if i == j else same_rater if r == q else neither).append((y - z) ** 2 / 2)
    a, b, c = np.mean(same_item), np.mean(same_rater), np.mean(neither)
    item, rater, y = (np.array(x) for x in zip(*rows))
    comp = intervals.components(np.zeros(len(rows), int), item, rater, y, 1)
    assert comp.item[0] == pytest.approx(max(c - a, 0)) and comp.rater[0] == pytest.approx(max(c - b, 0))
    assert comp.resid[0] == pytest.approx(max(a + b - c, 0))


def test_balanced_crossed_interval_equals_the_anova_formula():
    """Fully crossed, balanced: Var(mean) = (MS_item + MS_rater - MS_resid) / (I J) (Cornfield-Tukey)."""
    rng = np.random.default_rng(4)
    I, J = 12, 4
    y = np.clip(rng.integers(1, 4, (I, 1)) + rng.integers(0, 3, (1, J)) + rng.integers(0, 2, (I, J)), 1, 5).astype(float)
    g = y.mean()
    ms_i = J * ((y.mean(1) - g) ** 2).sum() / (I - 1)
    ms_r = I * ((y.mean(0) - g) ** 2).sum() / (J - 1)
    res = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + g
    ms_e = (res ** 2).sum() / ((I - 1) * (J - 1))
    var = (ms_i + ms_r - ms_e) / (I * J)
    item, rater = np.repeat(np.arange(I), J), np.tile(np.arange(J), I)
    _, _, se, _ = intervals.crossed_mean_ci(np.zeros(I * J, int), item, rater, y.reshape(-1), 1)
    assert ms_i > ms_e and ms_r > ms_e      # no component estimate truncated at 0 with this seed
    assert se[0] ** 2 == pytest.approx(var)


def test_streams_depend_only_on_seed_and_key():
    a = intervals.stream(42, "persona/prompt_tuning/tiny/fluency").random(3)
    assert (a == intervals.stream(42, "persona/prompt_tuning/tiny/fluency").random(3)).all()
    assert not (a == intervals.stream(42, "persona/finetune_none/tiny/fluency").random(3)).any()
    assert not (a == intervals.stream(43, "persona/prompt_tuning/tiny/fluency").random(3)).any()


@pytest.mark.parametrize("low", [1, -3])
def test_distinct_pairs_are_numpys_unique_rows(low):
    """The bootstrap's distinct (item sum, item count) pairs by one integer key: the rows and
    frequencies of np.unique(axis=0), also for negative sums and non-integer values (the fallback)."""
    from mturk_eval.analysis.intervals import _distinct_pairs

    rng = np.random.default_rng(0)
    count = rng.integers(1, 6, 500).astype(np.float64)
    total = np.array([rng.integers(low, low + 5, int(c)).sum() for c in count], dtype=np.float64)
    for s, c in ((total, count), (total + 0.5, count)):
        want, want_freq = np.unique(np.stack([s, c], axis=1), axis=0, return_counts=True)
        got, got_freq = _distinct_pairs(s, c)
        assert got.dtype == want.dtype and np.array_equal(got, want) and np.array_equal(got_freq, want_freq)
