"""Power of a design by simulating the report's analysis on many studies at once, and an analytic
approximation beside it.

One simulated study: ``systems`` systems answer the same ``items`` prompts; each response is rated by
``raters`` raters on every aspect, drawn as the platform hands tasks out (consecutive raters of a pool
from a random start, so raters overlap across items and systems; pool size = ratings / ratings per
rater); the pilot's excluded raters are dropped whole (worker-level exclusions) and every other rating
with the pilot's remaining exclusion share; scores are rounded and clipped to each aspect's scale. A
paired design (every system answers the same prompts) may share a part of the item variance across the
systems' responses to one prompt (the prompt share); an unpaired one gives each system its own prompts.
The analysis is the report's: per aspect and pair of systems, the paired Wilcoxon signed-rank test on the
exact per-prompt differences of item means (``stats.signed_rank_many``, the very function the report
calls, exact up to 25 pairs) or, unpaired, the Mann-Whitney rank-sum test on the exact item means
(``stats.rank_sum_many``, exact up to 50 pooled items), Holm over the family the report would use (every
pair x aspect of the eval set, undefined tests left out), and a rejection counts when the system given
the effect is found different in the direction of the effect on the target aspect.

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
from mturk_eval.planning.model import AspectModel, RatingModel, latent_mean_for, observed_mean
from mturk_eval.errors import UserError

DESIGNS = ("paired", "unpaired")
# Rows per rank_sum_many call: its exact path (<= 50 pooled items) holds rows x (m + 1) x (rank sum) counts.
RANK_SUM_ROWS = 100


@dataclass(frozen=True)
class Design:
    items: int          # prompts per eval set (every system answers each) -- per system when unpaired
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


MARGIN = 0.01   # how close to the end of the scale a system's mean rating may be planned


def effect_room(am: AspectModel) -> float:
    """The largest difference of mean ratings that fits on ``am``'s scale from its mean (above or below)."""
    return max(am.high - MARGIN - am.mean, am.mean - am.low - MARGIN)


def target_shift(am: AspectModel, effect: float) -> float:
    """Signed latent shift of system 0 giving an observed mean difference of ``effect`` from the others at
    ``am``'s mean: upwards where that fits on the scale, else downwards (the test is two-sided; the power
    counts a rejection in the shifted direction). Raises when it fits neither way."""
    if effect == 0:
        return 0.0
    mu, si, sr, se = am.latent()
    sd = math.sqrt(si * si + sr * sr + se * se)
    base = observed_mean(mu, sd, am.scale)
    if base + effect <= am.high - MARGIN:
        return latent_mean_for(base + effect, sd, am.scale) - mu
    if base - effect >= am.low + MARGIN:
        return latent_mean_for(base - effect, sd, am.scale) - mu
    raise UserError(f"--effect: {am.aspect} (scale {am.low}-{am.high}) has mean rating {am.mean:.2f}, so a difference "
                    f"of {effect:g} fits neither above nor below it; expected at most {effect_room(am):.2f}")


@dataclass
class Setting:
    """What the simulation needs besides the design: the model, systems, the target, the test family, the
    design (paired: every system answers the same prompts; unpaired: each its own) and the share of the
    item variance that is the prompt's, shared by the systems' responses to it (paired designs only)."""

    model: RatingModel
    systems: int = 3
    aspect: str = "fluency"
    alpha: float = 0.05
    family: str = "eval_set"          # Holm over every pair x aspect ("eval_set") or one aspect
    excluded_share: float | None = None
    ratings_per_rater: float | None = None
    design: str = "paired"
    prompt_share: float | None = None
    excluded_worker_share: float | None = None

    def __post_init__(self):
        if self.design not in DESIGNS:
            raise UserError(f"--design: expected one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.prompt_share is not None and not 0 <= self.prompt_share < 1:
            raise UserError(f"--prompt-share: expected a share of the item variance from 0 to below 1, got "
                            f"{self.prompt_share:g}")

    @property
    def paired(self) -> bool:
        return self.design == "paired"

    def prompt(self, aspect: str) -> float:
        """The prompt share in use on ``aspect``: the given one, else the model's (a paired pilot's estimate,
        0 by default); 0 when unpaired (each system's prompts are its own)."""
        if not self.paired:
            return 0.0
        return self.model.aspect(aspect).prompt_share if self.prompt_share is None else self.prompt_share

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


def _excluded_workers(setting: Setting) -> float:
    return (setting.model.excluded_worker_share if setting.excluded_worker_share is None
            else setting.excluded_worker_share)


def _draw_aspect(rng: np.random.Generator, n_studies: int, design: Design, setting: Setting, aspect: str,
                 shift: float, rater_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Item score sums and rating counts (studies x systems x items) of one aspect; system 0 is shifted.
    ``rater_out`` (studies x pool, bool): raters the report excludes whole (worker-level exclusions)."""
    am = setting.model.aspect(aspect)
    mu, s_item, s_rater, s_resid = am.latent()
    S, n, k = setting.systems, design.items, design.raters
    pool, excl = _pool(design, setting), _excluded(setting)
    f32 = np.float32
    rho = setting.prompt(aspect)
    item_eff = rng.standard_normal((n_studies, S, n), dtype=f32) * f32(s_item * math.sqrt(1 - rho)) + f32(mu)
    if rho > 0:   # the prompt's part, the same for every system's response to it
        item_eff += (rng.standard_normal((n_studies, 1, n), dtype=f32) * f32(s_item * math.sqrt(rho)))
    item_eff[:, 0] += f32(shift)
    rater_eff = rng.standard_normal((n_studies, pool), dtype=f32) * f32(s_rater)
    start = rng.integers(0, pool, (n_studies, S, n))
    # Raters start, start + 1, ... (mod pool) of each response: windows over the pool, wrapped.
    wrapped = np.concatenate([rater_eff, rater_eff[:, :k - 1]], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(wrapped, k, axis=1)     # studies x pool x k
    latent = rng.standard_normal((n_studies, S, n, k), dtype=f32)
    latent *= f32(s_resid)
    latent += item_eff[..., None]
    studies = np.arange(n_studies)[:, None, None]
    latent += windows[studies, start]
    y = np.clip(np.rint(latent, out=latent), am.low, am.high, out=latent)
    keep = None
    if excl > 0:
        keep = rng.random(y.shape) >= excl
    if rater_out is not None:
        out_w = np.lib.stride_tricks.sliding_window_view(
            np.concatenate([rater_out, rater_out[:, :k - 1]], axis=1), k, axis=1)[studies, start]
        keep = ~out_w if keep is None else keep & ~out_w
    if keep is not None:
        y *= keep
        return y.sum(axis=3).astype(np.int64), keep.sum(axis=3).astype(np.int64)
    return y.sum(axis=3).astype(np.int64), np.full((n_studies, S, n), k, dtype=np.int64)


def rank_sum_rows(x: np.ndarray, x_ok: np.ndarray, y: np.ndarray, y_ok: np.ndarray) -> stats.ManyResults:
    """``stats.rank_sum_many`` row by row on the values of ``x`` and ``y`` where ``*_ok`` (the items with a
    kept rating, as the report tests them): rows grouped by their two sizes, in blocks of RANK_SUM_ROWS."""
    b = x.shape[0]
    p = np.full(b, np.nan)
    direction = np.zeros(b, np.int8)
    exact = np.zeros(b, bool)
    defined = np.zeros(b, bool)
    m, n = x_ok.sum(axis=1), y_ok.sum(axis=1)
    # valid values first, in order (a stable sort on "not ok")
    xs = np.take_along_axis(x, np.argsort(~x_ok, axis=1, kind="stable"), axis=1)
    ys = np.take_along_axis(y, np.argsort(~y_ok, axis=1, kind="stable"), axis=1)
    sizes = m * (y.shape[1] + 1) + n
    for size in np.unique(sizes).tolist():
        mm, nn = divmod(size, y.shape[1] + 1)
        rows = np.flatnonzero(sizes == size)
        if mm == 0 or nn == 0:
            continue   # a side without items: undefined, as the report leaves it
        for block in np.array_split(rows, max(1, math.ceil(rows.size / RANK_SUM_ROWS))):
            r = stats.rank_sum_many(xs[block, :mm], ys[block, :nn])
            p[block], direction[block], exact[block], defined[block] = r.p, r.direction, r.exact, r.defined
    return stats.ManyResults(statistic=np.full(b, np.nan), p=p, direction=direction, exact=exact,
                             n_used=m + n, defined=defined)


def _study_pvalues(sums: dict[str, np.ndarray], counts: dict[str, np.ndarray], setting: Setting,
                   lcm: int) -> tuple[np.ndarray, np.ndarray]:
    """p-values and directions (studies x comparisons) of the family; comparison 0 is the target. All
    comparisons of all studies go through one ``signed_rank_many`` call (paired) or ``rank_sum_many`` per
    size of the two sides (unpaired)."""
    ds, xs, ys = [], [], []
    order = [setting.aspect] + [a for a in setting.aspects if a != setting.aspect]
    for aspect in order:
        s, c = sums[aspect], counts[aspect]
        # exact item means times lcm(1..k) (the report's keys up to a common factor: same order and ties)
        keys = s * (lcm // np.maximum(c, 1))
        for i, j in combinations(range(setting.systems), 2):
            ca, cb = c[:, i], c[:, j]
            if setting.paired:
                both = (ca > 0) & (cb > 0)    # a prompt without kept ratings on one side is dropped
                # zero where a side has no kept rating (zero differences are dropped by the test, like
                # the report's unmatched prompts)
                ds.append(np.where(both, keys[:, i] - keys[:, j], 0))
            else:
                xs.append((keys[:, i], ca > 0, keys[:, j], cb > 0))
    if setting.paired:
        d = np.stack(ds, axis=1)                      # studies x comparisons x items
        b, m, n = d.shape
        r = stats.signed_rank_many(d.reshape(b * m, n))
        return r.p.reshape(b, m), r.direction.reshape(b, m)
    b, m = sums[setting.aspect].shape[0], len(xs)
    x, xo, y, yo = (np.stack([t[q] for t in xs], axis=1).reshape(b * m, -1) for q in range(4))
    r = rank_sum_rows(x, xo, y, yo)
    return r.p.reshape(b, m), r.direction.reshape(b, m)


def _rater_out(rng: np.random.Generator, n_studies: int, design: Design, setting: Setting) -> np.ndarray | None:
    w = _excluded_workers(setting)
    return rng.random((n_studies, _pool(design, setting))) < w if w > 0 else None


def simulate_power(design: Design, setting: Setting, effect: float, studies: int = 1000, seed: int = 0,
                   chunk: int = 250) -> float:
    """Share of simulated studies in which the report finds system 0 higher than system 1 on the target
    aspect (Holm-adjusted p < alpha) when the true difference of mean ratings there is ``effect``; at
    ``effect = 0`` the share finding *any* difference there (the false-positive rate)."""
    rng = np.random.default_rng([seed, design.items, design.raters])
    lcm = _lcm_upto(design.raters)
    shift = target_shift(setting.model.aspect(setting.aspect), effect)
    sign = 1 if shift >= 0 else -1
    hits = 0
    done = 0
    while done < studies:
        b = min(chunk, studies - done)
        sums, counts = {}, {}
        out = _rater_out(rng, b, design, setting)
        for aspect in setting.aspects:
            sums[aspect], counts[aspect] = _draw_aspect(rng, b, design, setting, aspect,
                                                        shift if aspect == setting.aspect else 0.0, out)
        p, direction = _study_pvalues(sums, counts, setting, lcm)
        adj = holm_many(p)
        found = adj[:, 0] < setting.alpha
        hits += int((found & (direction[:, 0] * sign > 0)).sum() if effect != 0 else found.sum())
        done += b
    return hits / studies


def simulate_power_loop(design: Design, setting: Setting, effect: float, studies: int = 200, seed: int = 1) -> float:
    """The same study, one at a time in plain numpy, each analysed with the report's single-test functions
    (``stats.compare_items``, ``stats.holm``): the baseline for the benchmark and the tests."""
    rng = np.random.default_rng(seed)
    S, n, k = setting.systems, design.items, design.raters
    pool, excl, w_out = _pool(design, setting), _excluded(setting), _excluded_workers(setting)
    params = {a: setting.model.aspect(a).latent() for a in setting.aspects}
    scales = {a: setting.model.aspect(a).scale for a in setting.aspects}
    shift = target_shift(setting.model.aspect(setting.aspect), effect)
    order = [setting.aspect] + [a for a in setting.aspects if a != setting.aspect]
    hits = 0
    for _ in range(studies):
        results = []
        out = rng.random(pool) < w_out if w_out > 0 else np.zeros(pool, bool)
        for aspect in order:
            mu_a, s_i, s_r, s_e = params[aspect]
            rho = setting.prompt(aspect)
            raters = rng.normal(0.0, s_r, pool)
            prompt = rng.normal(0.0, s_i * math.sqrt(rho), n) if rho > 0 else np.zeros(n)
            sums = np.zeros((S, n))
            cnts = np.zeros((S, n))
            for s in range(S):
                for i in range(n):
                    who = (int(rng.integers(0, pool)) + np.arange(k)) % pool
                    y = mu_a + prompt[i] + rng.normal(0.0, s_i * math.sqrt(1 - rho)) + raters[who] + rng.normal(0.0, s_e, k)
                    if s == 0 and aspect == setting.aspect:
                        y = y + shift
                    y = np.clip(np.rint(y), *scales[aspect])
                    kept = (rng.random(k) >= excl if excl > 0 else np.ones(k, bool)) & ~out[who]
                    sums[s, i], cnts[s, i] = y[kept].sum(), kept.sum()
            for i, j in combinations(range(S), 2):
                if setting.paired:
                    both = (cnts[i] > 0) & (cnts[j] > 0)
                    results.append(stats.compare_items(sums[i][both], cnts[i][both], sums[j][both], cnts[j][both], True))
                else:
                    a, b = cnts[i] > 0, cnts[j] > 0
                    results.append(stats.compare_items(sums[i][a], cnts[i][a], sums[j][b], cnts[j][b], False))
        p = np.array([r.p for r in results])
        finite = np.isfinite(p)
        adj = np.full(p.size, np.nan)
        adj[finite] = stats.holm(p[finite])
        hits += bool(adj[0] < setting.alpha and (results[0].direction * (1 if shift >= 0 else -1) > 0 or effect == 0))
    return hits / studies


def _sd_and_z(design: Design, setting: Setting) -> tuple[float, float]:
    """SD of the difference of two systems' item means on one prompt, sqrt(2 (s2_item (1 - prompt share)
    + (s2_rater + s2_resid) / k_kept)) (unpaired: prompt share 0, two independent items), and the critical
    z of Holm's first step."""
    am = setting.model.aspect(setting.aspect)
    k = max(design.raters * (1 - _excluded(setting)) * (1 - _excluded_workers(setting)), 1e-9)
    sd_d = math.sqrt(2 * (am.item * (1 - setting.prompt(setting.aspect)) + (am.rater + am.residual) / k))
    return sd_d, float(sps.norm.ppf(1 - setting.alpha / (2 * setting.comparisons)))


def analytic_power(design: Design, setting: Setting, effect: float) -> float:
    """Normal approximation: the signed-rank and rank-sum tests' efficiency against the t tests is 3/pi;
    Holm's first step (alpha / m) stands in for the whole procedure."""
    sd_d, z_a = _sd_and_z(design, setting)
    return float(sps.norm.cdf(abs(effect) * math.sqrt(design.items * 3 / math.pi) / sd_d - z_a))


def analytic_mdd(design: Design, setting: Setting, power: float) -> float:
    sd_d, z_a = _sd_and_z(design, setting)
    return float((z_a + sps.norm.ppf(power)) * sd_d / math.sqrt(design.items * 3 / math.pi))


def simulated_mdd(design: Design, setting: Setting, power: float, studies: int = 1000, seed: int = 0,
                  hi: float | None = None, steps: int = 8) -> float:
    """Smallest difference of mean ratings reaching ``power`` by bisection over simulated power (the same
    random numbers at every step: the seed is fixed). NaN when even ``hi`` (default: 2 points on a 1-5
    scale, scaled to the aspect's, at most what fits on it) is not enough."""
    am = setting.model.aspect(setting.aspect)
    if hi is None:
        hi = min(2.0 * (am.high - am.low) / 4, effect_room(am))
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
