"""Power of a design by simulating the report's analysis on many studies at once, and an analytic
approximation beside it.

One simulated study: ``systems`` systems answer the same ``items`` prompts; each response is rated by
``raters`` raters on every aspect, drawn as the platform hands tasks out (consecutive raters of a pool
from a random start, so raters overlap across items and systems; pool size = ratings / ratings per
rater); every rating is dropped with the pilot's exclusion share (the report's exclusions); scores are
rounded and clipped to 1-5. The analysis is the report's: per aspect and pair of systems, the paired
Wilcoxon signed-rank test on the exact per-prompt differences of item means (``stats.signed_rank_many``,
the very function the report calls, exact up to 25 pairs), Holm over the family the report would use
(every pair x aspect of the eval set, undefined tests left out), and a rejection counts when the
system given the effect is found higher on the target aspect.

All studies of a design are drawn as arrays (studies x systems x items x raters) in chunks; a plain
per-study loop (:func:`simulate_power_loop`) is kept as the baseline the benchmark and the tests compare
against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats as sps

from mturk_eval.analysis import stats
from mturk_eval.planning.model import SCALE, RatingModel, latent_mean_for, observed_mean


@dataclass(frozen=True)
class Design:
    items: int          # prompts per eval set (every system answers each)
    raters: int         # raters per response

    def ratings(self, systems: int, aspects: int = 1) -> int:
        return self.items * self.raters * systems * aspects


def holm_many(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p per row of ``p`` (studies x comparisons); NaN (undefined) left out of the family."""
    p = np.asarray(p, dtype=np.float64)
    finite = np.isfinite(p)
    m = finite.sum(axis=1, keepdims=True)
    order = np.argsort(np.where(finite, p, np.inf), axis=1, kind="stable")
    ps = np.take_along_axis(p, order, axis=1)
    rank = np.arange(p.shape[1])[None, :]
    adj = np.where(np.isfinite(ps), (m - rank) * ps, np.nan)
    adj = np.fmax.accumulate(np.nan_to_num(adj, nan=-np.inf), axis=1)
    adj = np.minimum(adj, 1.0)
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, axis=1)
    return np.where(finite, out, np.nan)


def _lcm_upto(k: int) -> int:
    out = 1
    for c in range(1, k + 1):
        out = out * c // math.gcd(out, c)
    return out


def _shift_for(effect: float, mu: float, sd_total: float) -> float:
    """Latent shift giving an observed mean difference of ``effect`` above a system at latent ``mu``."""
    if effect == 0:
        return 0.0
    return latent_mean_for(observed_mean(mu, sd_total) + effect, sd_total) - mu


@dataclass
class Setting:
    """What the simulation needs besides the design: the model, systems, the target, the test family."""

    model: RatingModel
    systems: int = 3
    aspect: str = "fluency"
    alpha: float = 0.05
    family: str = "eval_set"          # Holm over every pair x aspect ("eval_set") or one aspect
    excluded_share: float | None = None
    ratings_per_rater: float | None = None

    @property
    def aspects(self) -> list[str]:
        if self.family == "eval_set":
            return [a.aspect for a in self.model.aspects]
        return [self.aspect]

    @property
    def comparisons(self) -> int:
        return len(list(combinations(range(self.systems), 2))) * len(self.aspects)


def _pool(design: Design, setting: Setting) -> int:
    """Raters in the pool: all ratings of the eval set over the ratings one rater gives (at least k)."""
    per_rater = setting.ratings_per_rater or setting.model.ratings_per_rater
    return max(design.raters, int(round(setting.systems * design.items * design.raters / max(per_rater, 1.0))))


def _excluded(setting: Setting) -> float:
    return setting.model.excluded_share if setting.excluded_share is None else setting.excluded_share


def _draw_aspect(rng: np.random.Generator, n_studies: int, design: Design, setting: Setting, aspect: str,
                 shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Item score sums and rating counts (studies x systems x items) of one aspect; system 0 is shifted."""
    am = setting.model.aspect(aspect)
    mu, s_item, s_rater, s_resid = am.latent()
    S, n, k = setting.systems, design.items, design.raters
    pool, excl = _pool(design, setting), _excluded(setting)
    f32 = np.float32
    item_eff = rng.standard_normal((n_studies, S, n), dtype=f32) * f32(s_item) + f32(mu)
    item_eff[:, 0] += f32(shift)
    rater_eff = rng.standard_normal((n_studies, pool), dtype=f32) * f32(s_rater)
    start = rng.integers(0, pool, (n_studies, S, n))
    # Raters start, start + 1, ... (mod pool) of each response: windows over the pool, wrapped.
    wrapped = np.concatenate([rater_eff, rater_eff[:, :k - 1]], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(wrapped, k, axis=1)     # studies x pool x k
    latent = rng.standard_normal((n_studies, S, n, k), dtype=f32)
    latent *= f32(s_resid)
    latent += item_eff[..., None]
    latent += windows[np.arange(n_studies)[:, None, None], start]
    y = np.clip(np.rint(latent, out=latent), *SCALE, out=latent)
    if excl > 0:
        keep = rng.random(y.shape) >= excl
        y *= keep
        return y.sum(axis=3).astype(np.int64), keep.sum(axis=3).astype(np.int64)
    return y.sum(axis=3).astype(np.int64), np.full((n_studies, S, n), k, dtype=np.int64)


def _study_pvalues(sums: dict[str, np.ndarray], counts: dict[str, np.ndarray], setting: Setting,
                   lcm: int) -> tuple[np.ndarray, np.ndarray]:
    """p-values and directions (studies x comparisons) of the family; comparison 0 is the target. All
    comparisons of all studies go through one ``signed_rank_many`` call."""
    ds = []
    order = [setting.aspect] + [a for a in setting.aspects if a != setting.aspect]
    for aspect in order:
        s, c = sums[aspect], counts[aspect]
        for i, j in combinations(range(setting.systems), 2):
            ca, cb = c[:, i], c[:, j]
            both = (ca > 0) & (cb > 0)    # a prompt without kept ratings on one side is dropped
            # exact differences of item means times lcm(1..k); zero where a side has no kept rating
            # (zero differences are dropped by the test, like the report's unmatched prompts)
            ds.append(np.where(both, s[:, i] * (lcm // np.maximum(ca, 1)) - s[:, j] * (lcm // np.maximum(cb, 1)), 0))
    d = np.stack(ds, axis=1)                      # studies x comparisons x items
    b, m, n = d.shape
    r = stats.signed_rank_many(d.reshape(b * m, n))
    return r.p.reshape(b, m), r.direction.reshape(b, m)


def simulate_power(design: Design, setting: Setting, effect: float, studies: int = 1000, seed: int = 0,
                   chunk: int = 250) -> float:
    """Share of simulated studies in which the report finds system 0 higher than system 1 on the target
    aspect (Holm-adjusted p < alpha) when the true difference of mean ratings there is ``effect``; at
    ``effect = 0`` the share finding *any* difference there (the false-positive rate)."""
    rng = np.random.default_rng([seed, design.items, design.raters])
    lcm = _lcm_upto(design.raters)
    target_model = setting.model.aspect(setting.aspect)
    mu, si, sr, se = target_model.latent()
    shift = _shift_for(effect, mu, math.sqrt(si * si + sr * sr + se * se))
    hits = 0
    done = 0
    while done < studies:
        b = min(chunk, studies - done)
        sums, counts = {}, {}
        for aspect in setting.aspects:
            sums[aspect], counts[aspect] = _draw_aspect(rng, b, design, setting, aspect,
                                                        shift if aspect == setting.aspect else 0.0)
        p, direction = _study_pvalues(sums, counts, setting, lcm)
        adj = holm_many(p)
        found = adj[:, 0] < setting.alpha
        hits += int((found & (direction[:, 0] > 0)).sum() if effect != 0 else found.sum())
        done += b
    return hits / studies


def simulate_power_loop(design: Design, setting: Setting, effect: float, studies: int = 200, seed: int = 1) -> float:
    """The same study, one at a time in plain numpy, each analysed with the report's single-test functions
    (``stats.compare_items``, ``stats.holm``): the baseline for the benchmark and the tests."""
    rng = np.random.default_rng(seed)
    S, n, k = setting.systems, design.items, design.raters
    pool, excl = _pool(design, setting), _excluded(setting)
    params = {a: setting.model.aspect(a).latent() for a in setting.aspects}
    mu, si, sr, se = params[setting.aspect]
    shift = _shift_for(effect, mu, math.sqrt(si * si + sr * sr + se * se))
    order = [setting.aspect] + [a for a in setting.aspects if a != setting.aspect]
    hits = 0
    for _ in range(studies):
        results = []
        for aspect in order:
            mu_a, s_i, s_r, s_e = params[aspect]
            raters = rng.normal(0.0, s_r, pool)
            sums = np.zeros((S, n))
            cnts = np.zeros((S, n))
            for s in range(S):
                for i in range(n):
                    who = (int(rng.integers(0, pool)) + np.arange(k)) % pool
                    y = mu_a + rng.normal(0.0, s_i) + raters[who] + rng.normal(0.0, s_e, k)
                    if s == 0 and aspect == setting.aspect:
                        y = y + shift
                    y = np.clip(np.rint(y), *SCALE)
                    kept = rng.random(k) >= excl if excl > 0 else np.ones(k, bool)
                    sums[s, i], cnts[s, i] = y[kept].sum(), kept.sum()
            for i, j in combinations(range(S), 2):
                both = (cnts[i] > 0) & (cnts[j] > 0)
                results.append(stats.compare_items(sums[i][both], cnts[i][both], sums[j][both], cnts[j][both], True))
        p = np.array([r.p for r in results])
        finite = np.isfinite(p)
        adj = np.full(p.size, np.nan)
        adj[finite] = stats.holm(p[finite])
        hits += bool(adj[0] < setting.alpha and (results[0].direction > 0 or effect == 0))
    return hits / studies


def _sd_and_z(design: Design, setting: Setting) -> tuple[float, float]:
    """SD of one paired difference of item means, sqrt(2 (s2_item + (s2_rater + s2_resid) / k_kept)),
    and the critical z of Holm's first step."""
    am = setting.model.aspect(setting.aspect)
    k = max(design.raters * (1 - _excluded(setting)), 1e-9)
    sd_d = math.sqrt(2 * (am.item + (am.rater + am.residual) / k))
    return sd_d, float(sps.norm.ppf(1 - setting.alpha / (2 * setting.comparisons)))


def analytic_power(design: Design, setting: Setting, effect: float) -> float:
    """Normal approximation: the signed-rank test's efficiency against the t test is 3/pi; Holm's first
    step (alpha / m) stands in for the whole procedure."""
    sd_d, z_a = _sd_and_z(design, setting)
    return float(sps.norm.cdf(abs(effect) * math.sqrt(design.items * 3 / math.pi) / sd_d - z_a))


def analytic_mdd(design: Design, setting: Setting, power: float) -> float:
    sd_d, z_a = _sd_and_z(design, setting)
    return float((z_a + sps.norm.ppf(power)) * sd_d / math.sqrt(design.items * 3 / math.pi))


def simulated_mdd(design: Design, setting: Setting, power: float, studies: int = 1000, seed: int = 0,
                  hi: float = 2.0, steps: int = 8) -> float:
    """Smallest difference of mean ratings reaching ``power`` by bisection over simulated power (the same
    random numbers at every step: the seed is fixed). NaN when even ``hi`` is not enough."""
    lo = 0.0
    if simulate_power(design, setting, hi, studies, seed) < power:
        return float("nan")
    for _ in range(steps):
        mid = (lo + hi) / 2
        if simulate_power(design, setting, mid, studies, seed) >= power:
            hi = mid
        else:
            lo = mid
    return hi
