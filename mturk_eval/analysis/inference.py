"""The report's inference stages: intervals of the Table 2 means, the tests between systems (with the
difference of means and its interval), and the crossed mixed model per eval set and aspect.

Called from :mod:`mturk_eval.analysis.core` (``tables_stage`` takes its intervals from
:func:`mean_intervals`; ``tests_stage`` and ``mixed_model_stage`` are these functions). Every choice is
stated with its reason in docs/report.md ("Tests", "Confidence intervals", "Mixed-effects model").
"""
from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from mturk_eval.analysis import intervals, stats
from mturk_eval.analysis.mixed_model import fit_crossed


if TYPE_CHECKING:
    from mturk_eval.analysis.core import Prepared, Tables
    from mturk_eval.analysis.ratings import ResponseIndex


def group_key(p: "Prepared", g: int) -> str:
    """The stream key of group g (system x aspect): depends on nothing else in the input."""
    s = p.systems[g // p.A]
    return f"{s.eval_set}/{s.method}/{s.model}/{p.r.aspect_names[g % p.A]}"


def _cached(p: "Prepared", name: str, make):
    """One computation per Prepared (the stages share it): kept in the object's own dict."""
    cache = p.__dict__.setdefault("_inference_cache", {})
    if name not in cache:
        cache[name] = make()
    return cache[name]


def _raters(p: "Prepared") -> np.ndarray:
    """The rater (worker code) of every kept row, made once: each use would copy the mask's rows again."""
    return _cached(p, "raters", lambda: p.r.worker[p.keep])


def stable_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for integer keys 0..n_keys-1: as 8- or 16-bit integers numpy
    sorts them by radix, in linear time (a quarter of the time for millions of rows), same order."""
    if n_keys <= 1 << 8:
        keys = keys.astype(np.uint8)
    elif n_keys <= 1 << 16:
        keys = keys.astype(np.uint16)
    return np.argsort(keys, kind="stable")


def rows_by_group(p: "Prepared") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every kept row's group (system x aspect), the rows in group order and each group's bounds."""
    def make():
        group = p.item_sys[p.item] * p.A + p.aspect
        order = stable_order(group, p.S * p.A)
        return group, order, np.searchsorted(group[order], np.arange(p.S * p.A + 1))
    return _cached(p, "rows", make)


def group_ordered(p: "Prepared") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept rows' item, rater and score laid out in group order (:func:`rows_by_group`), made once:
    a group's rows are then one slice, the same values in the same order as gathering them."""
    def make():
        _, order, _ = rows_by_group(p)
        return p.item[order], _raters(p)[order], p.score[order]
    return _cached(p, "group_ordered", make)


def _bootstrap_draws(p: "Prepared", g: int) -> np.ndarray:
    """Group g's bootstrap means over its items, drawn once: the group's own stream gives the same draws
    for its interval and for every difference it is in."""
    def make():
        units = _units_by_group(p)(g)
        return intervals.item_bootstrap_draws(p.unit_sum[units], p.unit_cnt[units].astype(np.float64),
                                              p.cfg.report.bootstrap_samples, intervals.stream(p.seed, group_key(p, g)))
    return _cached(p, f"bootstrap/{g}", make)


def _units_by_group(p: "Prepared"):
    """A function from group to its units (item x aspect codes with ratings), the grouping made once."""
    def make():
        unit_group = p.unit_group
        order = stable_order(unit_group, p.S * p.A)
        unit_idx = np.flatnonzero(p.has)[order]
        bounds = np.searchsorted(unit_group[order], np.arange(p.S * p.A + 1))
        return lambda g: unit_idx[bounds[g]:bounds[g + 1]]
    return _cached(p, "units_by_group", make)


def mean_intervals(p: "Prepared") -> tuple[np.ndarray, np.ndarray]:
    """95% interval of every group's mean over ratings: "crossed" (items and raters random) or
    "item_bootstrap" (each group with its own stream)."""
    rc = p.cfg.report
    n_groups = p.S * p.A
    if rc.intervals == "crossed":
        group, _, _ = rows_by_group(p)
        lo, hi, _, _ = intervals.crossed_mean_ci(group, p.item, _raters(p), p.score, n_groups)
        return lo, hi
    lo, hi = np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    if rc.bootstrap_samples <= 0:
        return lo, hi
    units_of = _units_by_group(p)
    for g in range(n_groups):
        units = units_of(g)
        if units.size >= 2:
            lo[g], hi[g] = intervals.percentile_ci(_bootstrap_draws(p, g))
    return lo, hi


def _pair_keys(p: "Prepared", responses: "ResponseIndex | None") -> tuple[np.ndarray | None, list[str]]:
    """Per item code: its prompt, (persona_id, pair_id) from the responses file, as an integer (-1 none)."""
    if responses is None:
        return None, []
    keys: dict[tuple, int] = {}
    pk = np.full(len(p.r.item_ids), -1, dtype=np.int64)
    for i, iid in enumerate(p.r.item_ids):
        meta = responses.items.get(iid)
        if meta is not None and meta.get("pair_id") is not None:
            pk[i] = keys.setdefault((meta.get("persona_id"), meta["pair_id"]), len(keys))
    names = [f"{k[0]}/{k[1]}" if k[0] is not None else str(k[1]) for k in keys]
    return pk, names


def _design(ua: np.ndarray, ub: np.ndarray, pair_key: np.ndarray | None, unit_item: np.ndarray):
    """Paired on the prompts both systems answered, or unpaired, and why.

    Returns (paired, ua, ub, reason, only_a, only_b): only_a/only_b the prompt keys answered by one system,
    dropped from a paired test."""
    none = np.array([], dtype=np.int64)
    if ua.size == 0 or ub.size == 0:
        return False, ua, ub, "no test: a system has no ratings on this aspect", none, none
    if pair_key is None:
        return False, ua, ub, "unpaired: no responses file to pair prompts", none, none
    ka, kb = pair_key[unit_item[ua]], pair_key[unit_item[ub]]
    if (ka < 0).any() or (kb < 0).any():
        return False, ua, ub, "unpaired: some items have no pair id in the responses file", none, none
    if np.unique(ka).size != ka.size or np.unique(kb).size != kb.size:
        return False, ua, ub, "unpaired: a system answered one prompt more than once", none, none
    common, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    if common.size == 0:
        return False, ua, ub, "unpaired: the systems share no prompt", none, none
    only_a = np.setdiff1d(ka, common, assume_unique=True)
    only_b = np.setdiff1d(kb, common, assume_unique=True)
    if only_a.size or only_b.size:
        reason = (f"paired on the {common.size} prompts both systems answered "
                  f"({only_a.size + only_b.size} answered by one system left out)")
    else:
        reason = f"paired: both systems answered the same {common.size} prompts"
    return True, ua[ia], ub[ib], reason, only_a, only_b


def _difference_interval(p: "Prepared", i: int, j: int, a: int, rows, units_of) -> tuple[float, float, float]:
    """Mean(i) - mean(j) over ratings on aspect a and its 95% interval (by the report's interval method)."""
    rc = p.cfg.report
    gi, gj = i * p.A + a, j * p.A + a
    _, order, bounds = rows
    ri, rj = order[bounds[gi]:bounds[gi + 1]], order[bounds[gj]:bounds[gj + 1]]
    if rc.intervals == "crossed":
        # Each pair's rows: two slices of the group-ordered columns.
        item, rater, score = (np.concatenate([c[bounds[gi]:bounds[gi + 1]], c[bounds[gj]:bounds[gj + 1]]])
                              for c in group_ordered(p))
        side = np.r_[np.ones(ri.size, bool), np.zeros(rj.size, bool)]
        d, lo, hi, _, _ = intervals.crossed_difference_ci(item, rater, score, side)
        return d, lo, hi
    d = float(p.score[ri].mean() - p.score[rj].mean()) if ri.size and rj.size else float("nan")
    ui, uj = units_of(gi), units_of(gj)
    if rc.bootstrap_samples <= 0 or ui.size < 2 or uj.size < 2:
        return d, float("nan"), float("nan")
    lo, hi = intervals.percentile_ci(_bootstrap_draws(p, gi) - _bootstrap_draws(p, gj))
    return d, lo, hi


def tests_stage(p: "Prepared", tables: "Tables", responses: "ResponseIndex | None" = None):
    """Within each eval set, every pair of systems on every aspect: the test on exact per-item means
    (paired on shared prompts, else unpaired), the difference of means with its interval, Holm over the
    configured family (undefined tests left out), the better-than letters and one sentence per eval set."""
    from mturk_eval.analysis.core import Tests, eval_set_name

    rc, systems, A = p.cfg.report, p.systems, p.A
    unit_item = p.unit_item
    item_mean = np.full(p.n_units, np.nan)
    item_mean[p.has] = p.unit_sum[p.has] / p.unit_cnt[p.has]
    pair_key, prompt_names = _pair_keys(p, responses)
    units_of = _units_by_group(p)
    rows = rows_by_group(p)
    tests: list[dict[str, Any]] = []
    unmatched: dict[tuple, list[str]] = {}
    eval_sets_in = list(dict.fromkeys(s.eval_set for s in systems))
    for es in eval_sets_in:
        members = [i for i, s in enumerate(systems) if s.eval_set == es]
        for a in range(A):
            for i, j in combinations(members, 2):
                paired, ua, ub, reason, only_a, only_b = _design(units_of(i * A + a), units_of(j * A + a),
                                                                 pair_key, unit_item)
                if only_a.size or only_b.size:
                    key = (es, i, j, tuple(only_a.tolist()), tuple(only_b.tolist()))
                    unmatched.setdefault(key, []).append(p.r.aspect_names[a])
                res = stats.compare_items(p.unit_sum[ua], p.unit_cnt[ua], p.unit_sum[ub], p.unit_cnt[ub], paired)
                diff, dlo, dhi = _difference_interval(p, i, j, a, rows, units_of)
                tests.append({
                    "eval_set": es, "aspect": p.r.aspect_names[a],
                    "a": systems[i].letter, "b": systems[j].letter,
                    "system_a": systems[i].label, "system_b": systems[j].label,
                    "mean_a": float(tables.mean[i * A + a]), "mean_b": float(tables.mean[j * A + a]),
                    "item_mean_a": float(item_mean[ua].mean()) if ua.size else float("nan"),
                    "item_mean_b": float(item_mean[ub].mean()) if ub.size else float("nan"),
                    "test": res.test, "n_a": res.n_a, "n_b": res.n_b,
                    "statistic": res.statistic, "p": res.p, "direction": res.direction,
                    "method": res.method, "n_used": res.n_used, "zeros": res.zeros, "undefined": res.undefined,
                    "design": reason, "difference": diff, "difference_ci_low": dlo, "difference_ci_high": dhi,
                })
    for (es, i, j, oa, ob), aspects in unmatched.items():
        names = [f"{prompt_names[k]} (only ({systems[i].letter}))" for k in oa] + \
                [f"{prompt_names[k]} (only ({systems[j].letter}))" for k in ob]
        shown = "; ".join(names[:10]) + ("; ..." if len(names) > 10 else "")
        p.warnings.append(
            f"{eval_set_name(es)}: ({systems[i].letter}) vs ({systems[j].letter}): {len(names)} prompt(s) answered "
            f"by only one system were left out of the paired test ({', '.join(aspects)}): {shown}")
    n_undefined = sum(1 for t in tests if t["undefined"])
    if n_undefined:
        p.warnings.append(f"{n_undefined} test(s) could not be computed (no data, every difference zero, or every "
                          "value tied) and are reported as undefined, outside the Holm family.")
    families: dict[Any, list[int]] = {}
    for k, t in enumerate(tests):
        if np.isfinite(t["p"]):
            fam = t["eval_set"] if rc.holm_family == "eval_set" else (t["eval_set"], t["aspect"])
            families.setdefault(fam, []).append(k)
    for idx in families.values():
        for k, pv in zip(idx, stats.holm([tests[k]["p"] for k in idx])):
            tests[k]["p_holm"] = float(pv)
    for t in tests:
        t.setdefault("p_holm", float("nan"))
        t["significant"] = bool(np.isfinite(t["p_holm"]) and t["p_holm"] < rc.alpha)
        # The better system is the one the test found higher on the per-item means it was given, not the
        # one with the higher mean over ratings: with uneven ratings per item the two can disagree.
        t["better"] = (t["a"] if t["direction"] > 0 else t["b"] if t["direction"] < 0 else "") \
            if t["significant"] else ""

    better: dict[tuple[int, int], list[str]] = {}
    by_label = {s.label: k for k, s in enumerate(systems)}
    for t in tests:
        if not t["better"]:
            continue
        i, j = by_label[t["system_a"]], by_label[t["system_b"]]
        a = p.r.aspect_names.index(t["aspect"])
        hi, lo = (i, j) if t["direction"] > 0 else (j, i)
        better.setdefault((hi, a), []).append(systems[lo].letter)

    summary = []
    for es in eval_sets_in:
        ts = [t for t in tests if t["eval_set"] == es]
        defined = [t for t in ts if not t["undefined"]]
        undefined = len(ts) - len(defined)
        sig = [t for t in defined if t["significant"]]
        name = eval_set_name(es)
        extra = f", {undefined} undefined" if undefined else ""
        if not ts:
            sentence = f"{name}: only one system, nothing to compare."
        elif not defined:
            sentence = f"{name}: no test could be computed ({len(ts)} undefined)."
        elif not sig:
            pmin = min((t["p_holm"] for t in defined if np.isfinite(t["p_holm"])), default=float("nan"))
            sentence = (f"{name}: no significant differences between systems on any aspect "
                        f"({len(defined)} tests{extra}, smallest Holm-adjusted p = {pmin:.3g} >= {rc.alpha}).")
        else:
            parts = [f"{t['aspect']}: ({t['a']}) vs ({t['b']}), p_holm = {t['p_holm']:.3g}" for t in sig]
            sentence = (f"{name}: {len(sig)} of {len(defined)} comparisons significant at {rc.alpha}{extra} "
                        f"({'; '.join(parts)}).")
        summary.append({"eval_set": es, "tests": len(defined), "undefined": undefined, "significant": len(sig),
                        "sentence": sentence})
    return Tests(tests=tests, summary=summary, better=better)


def _subsample_items(item: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Mask of rows of whole items, taken in random order until ``cap`` ratings are reached. ``item``:
    non-negative integer codes (the distinct ones found by counting, as ``np.unique`` would sort them)."""
    cnt_all = np.bincount(item)
    present = cnt_all > 0
    inv = (np.cumsum(present) - 1)[item]
    cnt = cnt_all[present]
    order = rng.permutation(cnt.size)
    take = np.zeros(cnt.size, dtype=bool)
    take[order[: int(np.searchsorted(np.cumsum(cnt[order]), cap, side="right"))]] = True
    return take[inv]


def mixed_model_stage(p: "Prepared") -> list[dict[str, Any]]:
    """score ~ system + (1|item) + (1|rater) per eval set and aspect (systems of one eval set): system
    differences with Wald intervals and p, variance components with intervals."""
    rc = p.cfg.report
    if not rc.mixed_model:
        return []
    out = []
    sys_of_row = p.item_sys[p.item]
    rater = _raters(p)
    eval_sets = list(dict.fromkeys(s.eval_set for s in p.systems))
    # Each kept row's fit (eval set x aspect), in one pass over the rows instead of one per fit.
    es_of_sys = np.array([eval_sets.index(s.eval_set) for s in p.systems], dtype=np.int64)
    fit_of_row = es_of_sys[sys_of_row] * p.A + p.aspect
    for es_i, es in enumerate(eval_sets):
        members = [k for k, s in enumerate(p.systems) if s.eval_set == es]
        if len(members) < 2:
            continue
        local = np.full(p.S, -1, dtype=np.int64)
        local[members] = np.arange(len(members))
        for a, aspect in enumerate(p.r.aspect_names):
            sel = np.flatnonzero(fit_of_row == es_i * p.A + a)     # the fit's rows, in file order
            n_all = int(sel.size)
            row = {"eval_set": es, "aspect": aspect, "ratings": n_all, "subsampled_from": 0}
            if rc.mixed_model_max_ratings and n_all > rc.mixed_model_max_ratings:
                keep = _subsample_items(p.item[sel], rc.mixed_model_max_ratings,
                                        intervals.stream(p.seed, f"mixed/{es}/{aspect}"))
                sel = sel[keep]
                row.update(ratings=int(sel.size), subsampled_from=n_all)
            codes = local[sys_of_row[sel]]
            if np.unique(codes).size < len(members) or np.unique(rater[sel]).size < 2:
                row["not_fitted"] = "a system without ratings or fewer than two raters"
                out.append(row)
                continue
            try:
                f = fit_crossed(p.score[sel], codes, p.item[sel], rater[sel],
                                systems=[p.systems[k].letter for k in members])
            except (np.linalg.LinAlgError, ValueError) as e:
                row["not_fitted"] = str(e)
                out.append(row)
                continue
            row.update(items=f.n_items, raters=f.n_raters, converged=f.converged,
                       variance=f.variance, variance_ci={k: list(v) for k, v in f.variance_ci.items()},
                       differences=[{"a": p.systems[members[i]].letter, "b": p.systems[members[j]].letter,
                                     **f.difference(i, j)} for i, j in combinations(range(len(members)), 2)])
            out.append(row)
    return out
