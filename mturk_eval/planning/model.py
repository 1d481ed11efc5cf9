"""The rating model the planner simulates: per aspect, score = clip(round(mu + system + item + rater +
residual), low, high) on the aspect's integer scale (the paper's 1-5, or a config's or pilot's own, e.g.
1-4 or 1-7) with normal item, rater and residual effects.

From a pilot (:func:`model_from_pilot`): the report's exclusions (``core.prepare``), then the crossed
mixed model (``analysis.mixed_model.fit_crossed``) per aspect with the systems as fixed effects; its
variance components and their 95% intervals are on the observed (integer) scale. The simulation rounds
and clips itself, so the simulation's latent normal is the one
whose rounded, clipped ratings have the observed mean and total variance, split in the observed
components' proportions.

Without a pilot (:func:`default_model`): the paper's Table 2 standard deviations (the Persona-Chat human
row as this repository records it: fluency 1.07, engagingness 1.06, relevance 0.92; persona
consideration, which Table 2 does not report, their mean 1.02) and means (4.31, 4.25, 4.36, 4.31), split
into item 35%, rater 15% and residual 50% of the variance. The split is an assumption, not a figure from
the paper (Table 2 gives only totals): an item share of 0.35 is an interval alpha of about 0.35, typical
of crowd Likert ratings of dialogue responses; a pilot replaces it. An aspect the paper does not rate, or a
paper aspect on another scale, gets the paper's figures mapped linearly onto its scale
(:func:`scaled_default`): the mean at the same relative position, (4.31 - 1) / 4 = 83% of the way up, and
the SD times (high - low) / 4 -- an assumption too.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

from mturk_eval.errors import UserError

SCALE = (1, 5)           # the paper's scale, where the Table 2 figures live
PAPER_TABLE2 = {"fluency": (4.31, 1.07), "engagingness": (4.25, 1.06), "relevance": (4.36, 0.92),
                "persona": (4.31, 1.02)}
DEFAULT_SHARES = {"item": 0.35, "rater": 0.15, "residual": 0.50}


@dataclass
class AspectModel:
    """One aspect: observed mean and variance components (observed scale) with their intervals."""

    aspect: str
    mean: float
    item: float
    rater: float
    residual: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    low: int = 1
    high: int = 5
    # Share of the item variance that is the prompt's (shared by the systems' responses to one prompt):
    # from a paired pilot (:func:`prompt_shares`), else 0 (no shared part: the paired test's worst case).
    prompt_share: float = 0.0

    @property
    def scale(self) -> tuple[int, int]:
        return self.low, self.high

    @property
    def total(self) -> float:
        return self.item + self.rater + self.residual

    def latent(self) -> tuple[float, float, float, float]:
        """(latent mean, sd item, sd rater, sd residual) for the simulation: the latent normal whose
        rounded, clipped ratings have this aspect's observed mean and total variance, its variance split
        in the proportions of the observed components."""
        mu, sd = latent_for(self.mean, math.sqrt(self.total), self.scale)
        f = sd * sd / self.total
        return mu, math.sqrt(self.item * f), math.sqrt(self.rater * f), math.sqrt(self.residual * f)


@dataclass
class RatingModel:
    aspects: list[AspectModel]
    source: str                        # "defaults (paper Table 2 SDs)" or the pilot's description
    systems: list[str] = field(default_factory=list)
    ratings_per_rater: float = 20.0    # how many items one rater rates (pilot) -> size of the rater pool
    work_time_s: float | None = None   # median work time per task in the pilot
    excluded_share: float = 0.0        # share of the kept raters' rating rows the report's exclusions removed
    excluded_worker_share: float = 0.0  # share of the pilot's raters the report excluded whole
    design: str | None = None          # what the report would run on the pilot: "paired", "unpaired", None (no pair)
    design_reason: str = ""
    notes: list[str] = field(default_factory=list)

    def aspect(self, name: str) -> AspectModel:
        for a in self.aspects:
            if a.aspect == name:
                return a
        raise UserError(f"--aspect: expected one of {', '.join(a.aspect for a in self.aspects)}, got {name!r}")

    def pessimistic(self) -> "RatingModel | None":
        """The same model with every variance component at the upper end of its 95% interval (None
        without intervals): how much power is left if the pilot was lucky."""
        if not all(a.intervals for a in self.aspects):
            return None
        aspects = [AspectModel(a.aspect, a.mean, *(min(a.intervals[k][1], float(a.high - a.low))
                                                   for k in ("item", "rater", "residual")),
                               a.intervals, a.low, a.high, prompt_share=0.0) for a in self.aspects]
        return RatingModel(aspects=aspects, source=self.source + " (components at their upper 95% bounds, no "
                           "shared prompt part)", systems=self.systems, ratings_per_rater=self.ratings_per_rater,
                           work_time_s=self.work_time_s, excluded_share=self.excluded_share,
                           excluded_worker_share=self.excluded_worker_share, design=self.design,
                           design_reason=self.design_reason)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "aspects": [asdict(a) for a in self.aspects]}


def observed_mean(mu: float, sd: float, scale: tuple[int, int] = SCALE) -> float:
    """E[clip(round(mu + N(0, sd^2)), low, high)] exactly from the normal distribution function."""
    lo, hi = scale
    edges = np.concatenate([[-np.inf], np.arange(lo, hi) + 0.5, [np.inf]])
    return float((np.diff(sps.norm.cdf((edges - mu) / sd)) * np.arange(lo, hi + 1)).sum())


def observed_var(mu: float, sd: float, scale: tuple[int, int] = SCALE) -> float:
    lo, hi = scale
    edges = np.concatenate([[-np.inf], np.arange(lo, hi) + 0.5, [np.inf]])
    pk = np.diff(sps.norm.cdf((edges - mu) / sd))
    v = np.arange(lo, hi + 1)
    m = (pk * v).sum()
    return float((pk * (v - m) ** 2).sum())


@functools.lru_cache(maxsize=1024)
def latent_for(mean: float, sd_obs: float, scale: tuple[int, int] = SCALE) -> tuple[float, float]:
    """Latent (mean, sd) whose rounded, clipped ratings on ``scale`` have observed ``mean`` and SD ``sd_obs``
    (the SD is capped at the largest one reachable with that mean)."""
    def var_at(sd: float) -> float:
        return observed_var(latent_mean_for(mean, sd, scale), sd, scale)

    target = sd_obs * sd_obs
    lo, hi = 1e-3, 1.0
    while var_at(hi) < target and hi < 50:
        hi *= 2
    if var_at(hi) < target:
        sd = hi
    elif var_at(lo) >= target:
        sd = lo
    else:
        sd = float(optimize.brentq(lambda s: var_at(s) - target, lo, hi, xtol=1e-6))
    return latent_mean_for(mean, sd, scale), sd


def latent_mean_for(target: float, sd: float, scale: tuple[int, int] = SCALE) -> float:
    """The latent mean whose rounded, clipped ratings on ``scale`` have mean ``target``."""
    lo, hi = scale
    target = min(max(target, lo + 1e-3), hi - 1e-3)
    return float(optimize.brentq(lambda m: observed_mean(m, sd, scale) - target, lo - 10 * sd - 5,
                                 hi + 10 * sd + 5))


def scaled_default(name: str, low: int, high: int) -> tuple[float, float]:
    """(mean, SD) of the defaults for aspect ``name`` on ``low``-``high``: the paper's Table 2 figures for
    that aspect (the mean of the four for an aspect the paper does not rate) mapped linearly from 1-5."""
    mean, sd = PAPER_TABLE2.get(name, (float(np.mean([m for m, _ in PAPER_TABLE2.values()])),
                                       float(np.mean([s for _, s in PAPER_TABLE2.values()]))))
    f = (high - low) / (SCALE[1] - SCALE[0])
    return low + (mean - SCALE[0]) * f, sd * f


def default_model(aspects=None) -> RatingModel:
    """The defaults for ``aspects`` (:class:`~mturk_eval.analysis.aspects.Aspect` list; the paper's four on
    1-5 when None): Table 2's SDs (mapped onto each aspect's scale), split in :data:`DEFAULT_SHARES`."""
    from mturk_eval.analysis.aspects import PAPER_ASPECTS

    out, rescaled = [], []
    for a in aspects or PAPER_ASPECTS:
        mean, sd = scaled_default(a.name, a.low, a.high)
        if (a.low, a.high) != SCALE or a.name not in PAPER_TABLE2:
            rescaled.append(f"{a.name} ({a.low}-{a.high}: mean {mean:.2f}, SD {sd:.2f})")
        v = sd * sd
        out.append(AspectModel(a.name, mean, v * DEFAULT_SHARES["item"], v * DEFAULT_SHARES["rater"],
                               v * DEFAULT_SHARES["residual"], low=a.low, high=a.high))
    source = ("defaults: the paper's Table 2 SDs, split item 35% / rater 15% / residual 50% (an assumption; see "
              "docs/planning.md)")
    if rescaled:
        source += "; mapped linearly onto other scales / aspects the paper does not rate: " + ", ".join(rescaled)
    return RatingModel(aspects=out, source=source)


def _pilot_pairs(p, responses) -> tuple[str, str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """What the report would run on the pilot (its own rule, ``inference._design``: paired on the prompts
    both systems answered, given a responses file with pair ids) and, paired, the aligned units of every
    pair of systems of an eval set per aspect: [(aspect, units of a, units of b)]."""
    from mturk_eval.analysis.inference import _design, _pair_keys, _units_by_group

    pair_key, _ = _pair_keys(p, responses)
    units_of = _units_by_group(p)
    design, reason, pairs = None, "", []
    for es in dict.fromkeys(s.eval_set for s in p.systems):
        members = [i for i, s in enumerate(p.systems) if s.eval_set == es]
        for a in range(p.A):
            for n_i, i in enumerate(members):
                for j in members[n_i + 1:]:
                    paired, ua, ub, why, _, _ = _design(units_of(i * p.A + a), units_of(j * p.A + a), pair_key,
                                                        p.unit_item)
                    if design is None and (paired or why.startswith("unpaired")):
                        design, reason = ("paired" if paired else "unpaired"), why
                    if paired:
                        pairs.append((a, ua, ub))
    return design, reason, pairs


def prompt_shares(p, pairs, rater_var: dict[int, float], item_var: dict[int, float]) -> dict[int, float]:
    """Per aspect, the share of the item variance shared by two systems' responses to one prompt, by
    moments: the covariance over prompts of the two item means, less what shared raters add (s2_rater x
    common raters / (k_a k_b)), over the item variance, averaged over the pairs of systems; clipped to
    [0, 0.95]."""
    rater = p.r.worker[p.keep]
    raters_of: dict[int, set] = {}
    for u, w in zip(p.unit.tolist(), rater.tolist()):
        raters_of.setdefault(u, set()).add(w)
    mean = np.where(p.has, p.unit_sum / np.maximum(p.unit_cnt, 1), np.nan)
    got: dict[int, list[float]] = {}
    for a, ua, ub in pairs:
        if ua.size < 3 or item_var.get(a, 0) <= 0:
            continue
        shared = np.mean([len(raters_of[x] & raters_of[y]) / (p.unit_cnt[x] * p.unit_cnt[y])
                          for x, y in zip(ua.tolist(), ub.tolist())])
        cov = float(np.cov(mean[ua], mean[ub])[0, 1]) - rater_var[a] * shared
        got.setdefault(a, []).append(cov / item_var[a])
    return {a: float(min(max(np.mean(v), 0.0), 0.95)) for a, v in got.items()}


def model_from_pilot(r, cfg, source: str, responses=None) -> RatingModel:
    """Variance components per aspect from pilot ratings (:class:`~mturk_eval.analysis.ratings.Ratings`),
    after the report's exclusions; with a responses file that pairs the systems' prompts, the prompt's
    share of the item variance too. Refuses a pilot with an item rated by fewer than two raters."""
    from mturk_eval.analysis.core import prepare
    from mturk_eval.analysis.mixed_model import fit_crossed

    p = prepare(r, cfg)
    rater = r.worker[p.keep]
    # Raters per item (and aspect): at least two, or item and rater variance cannot be told apart.
    unit = p.unit
    pairs = np.unique(np.stack([unit, rater], axis=1), axis=0)
    per_unit = np.bincount(pairs[:, 0], minlength=p.n_units)
    bad = np.flatnonzero(p.has & (per_unit < 2))
    if bad.size:
        u = int(bad[0])
        raise UserError(f"{source}: item {r.item_ids[u // p.A]!r} ({r.aspect_names[u % p.A]}) has "
                        f"{per_unit[u]} rater after exclusions; expected at least 2 raters on every item of a "
                        f"pilot ({bad.size} item-aspect(s) short)")
    sys_code = p.item_sys[p.item]
    design, reason, pairs = _pilot_pairs(p, responses)
    aspects = []
    for a, name in enumerate(r.aspect_names):
        sel = p.aspect == a
        if sel.sum() < 4:
            continue
        f = fit_crossed(p.score[sel], np.unique(sys_code[sel], return_inverse=True)[1].reshape(-1), p.item[sel],
                        rater[sel])
        asp = r.aspects[a]
        aspects.append(AspectModel(name, float(p.score[sel].mean()), f.variance["item"], f.variance["rater"],
                                   f.variance["residual"], {k: tuple(v) for k, v in f.variance_ci.items()},
                                   low=asp.low, high=asp.high))
    if not aspects:
        raise UserError(f"{source}: expected pilot ratings on at least one aspect, got none usable")
    index = {name: a for a, name in enumerate(r.aspect_names)}
    shares = prompt_shares(p, pairs, {index[m.aspect]: m.rater for m in aspects},
                           {index[m.aspect]: m.item for m in aspects})
    for m in aspects:
        m.prompt_share = shares.get(index[m.aspect], 0.0)
    n_items_rated = np.unique(np.stack([p.item, rater], axis=1), axis=0)
    per_rater = np.bincount(n_items_rated[:, 1])
    wt = None
    if np.isfinite(r.work_time_s).any():
        first = np.unique(r.assignment, return_index=True)[1]
        w = r.work_time_s[first]
        w = w[np.isfinite(w)]
        wt = float(np.median(w)) if w.size else None
    # Exclusions split as the report makes them: raters excluded whole (below the attention pass rate),
    # and the share of the other raters' rating rows dropped (rejected, failed checks, duplicates).
    bad = p.attention_excluded
    rating_rows = ~r.attention_check
    others = rating_rows & ~bad[r.worker]
    return RatingModel(aspects=aspects, source=source, systems=[s.label for s in p.systems],
                       ratings_per_rater=float(per_rater[per_rater > 0].mean()), work_time_s=wt,
                       excluded_share=max(0.0, 1.0 - float((p.keep & others).sum()) / max(int(others.sum()), 1)),
                       excluded_worker_share=float(bad[np.unique(r.worker[rating_rows])].mean()),
                       design=design, design_reason=reason, notes=list(p.warnings))
