"""The rating model the planner simulates: per aspect, score = clip(round(mu + system + item + rater +
residual), 1, 5) with normal item, rater and residual effects.

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
of crowd Likert ratings of dialogue responses; a pilot replaces it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

from mturk_eval.config import ASPECTS
from mturk_eval.errors import UserError

SCALE = (1, 5)
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

    @property
    def total(self) -> float:
        return self.item + self.rater + self.residual

    def latent(self) -> tuple[float, float, float, float]:
        """(latent mean, sd item, sd rater, sd residual) for the simulation: the latent normal whose
        rounded, clipped ratings have this aspect's observed mean and total variance, its variance split
        in the proportions of the observed components."""
        mu, sd = latent_for(self.mean, math.sqrt(self.total))
        f = sd * sd / self.total
        return mu, math.sqrt(self.item * f), math.sqrt(self.rater * f), math.sqrt(self.residual * f)


@dataclass
class RatingModel:
    aspects: list[AspectModel]
    source: str                        # "defaults (paper Table 2 SDs)" or the pilot's description
    systems: list[str] = field(default_factory=list)
    ratings_per_rater: float = 20.0    # how many items one rater rates (pilot) -> size of the rater pool
    work_time_s: float | None = None   # median work time per task in the pilot
    excluded_share: float = 0.0        # share of the pilot's rating rows the report's exclusions removed
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
        aspects = [AspectModel(a.aspect, a.mean, *(min(a.intervals[k][1], 4.0) for k in ("item", "rater", "residual")),
                               a.intervals) for a in self.aspects]
        return RatingModel(aspects=aspects, source=self.source + " (components at their upper 95% bounds)",
                           systems=self.systems, ratings_per_rater=self.ratings_per_rater,
                           work_time_s=self.work_time_s, excluded_share=self.excluded_share)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "aspects": [asdict(a) for a in self.aspects]}


def observed_mean(mu: float, sd: float) -> float:
    """E[clip(round(mu + N(0, sd^2)), 1, 5)] exactly from the normal distribution function."""
    lo, hi = SCALE
    edges = np.concatenate([[-np.inf], np.arange(lo, hi) + 0.5, [np.inf]])
    return float((np.diff(sps.norm.cdf((edges - mu) / sd)) * np.arange(lo, hi + 1)).sum())


def observed_var(mu: float, sd: float) -> float:
    lo, hi = SCALE
    edges = np.concatenate([[-np.inf], np.arange(lo, hi) + 0.5, [np.inf]])
    pk = np.diff(sps.norm.cdf((edges - mu) / sd))
    v = np.arange(lo, hi + 1)
    m = (pk * v).sum()
    return float((pk * (v - m) ** 2).sum())


@functools.lru_cache(maxsize=1024)
def latent_for(mean: float, sd_obs: float) -> tuple[float, float]:
    """Latent (mean, sd) whose rounded, clipped ratings have observed ``mean`` and SD ``sd_obs`` (the SD is
    capped at the largest one reachable with that mean)."""
    def var_at(sd: float) -> float:
        return observed_var(latent_mean_for(mean, sd), sd)

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
    return latent_mean_for(mean, sd), sd


def latent_mean_for(target: float, sd: float) -> float:
    """The latent mean whose rounded, clipped ratings have mean ``target``."""
    lo, hi = SCALE
    target = min(max(target, lo + 1e-3), hi - 1e-3)
    return float(optimize.brentq(lambda m: observed_mean(m, sd) - target, lo - 10 * sd - 5, hi + 10 * sd + 5))


def default_model() -> RatingModel:
    aspects = []
    for a in ASPECTS:
        mean, sd = PAPER_TABLE2[a]
        v = sd * sd
        aspects.append(AspectModel(a, mean, v * DEFAULT_SHARES["item"], v * DEFAULT_SHARES["rater"],
                                   v * DEFAULT_SHARES["residual"]))
    return RatingModel(aspects=aspects, source="defaults: the paper's Table 2 SDs, split item 35% / rater 15% / "
                       "residual 50% (an assumption; see docs/planning.md)")


def model_from_pilot(r, cfg, source: str) -> RatingModel:
    """Variance components per aspect from pilot ratings (:class:`~mturk_eval.analysis.ratings.Ratings`),
    after the report's exclusions. Refuses a pilot with an item rated by fewer than two raters."""
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
    aspects = []
    for a, name in enumerate(r.aspect_names):
        sel = p.aspect == a
        if sel.sum() < 4:
            continue
        f = fit_crossed(p.score[sel], np.unique(sys_code[sel], return_inverse=True)[1].reshape(-1), p.item[sel],
                        rater[sel])
        aspects.append(AspectModel(name, float(p.score[sel].mean()), f.variance["item"], f.variance["rater"],
                                   f.variance["residual"], {k: tuple(v) for k, v in f.variance_ci.items()}))
    if not aspects:
        raise UserError(f"{source}: expected pilot ratings on at least one aspect, got none usable")
    n_items_rated = np.unique(np.stack([p.item, rater], axis=1), axis=0)
    per_rater = np.bincount(n_items_rated[:, 1])
    wt = None
    if np.isfinite(r.work_time_s).any():
        first = np.unique(r.assignment, return_index=True)[1]
        w = r.work_time_s[first]
        w = w[np.isfinite(w)]
        wt = float(np.median(w)) if w.size else None
    return RatingModel(aspects=aspects, source=source, systems=[s.label for s in p.systems],
                       ratings_per_rater=float(per_rater[per_rater > 0].mean()), work_time_s=wt,
                       excluded_share=max(0.0, 1.0 - p.counts["used_rows"]
                                          / max(p.counts["rows"] - p.counts["attention_check_rows"], 1)),
                       notes=list(p.warnings))
