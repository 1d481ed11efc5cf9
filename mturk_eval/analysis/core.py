"""From checked ratings to every figure of the report: exclusions, Tables 2/3 (7/8), confidence
intervals, tests between systems, agreement, worker figures and under-rated items.

:func:`analyze` runs :func:`prepare` (exclusions, systems, per-unit sums), then one function per stage:
:func:`tables_stage` (Tables 2/3 and intervals), :func:`tests_stage` (tests between systems, Holm),
:func:`agreement_stage` and :func:`workers_stage`. Everything is computed on integer codes with
``np.bincount`` so a million rating rows take seconds.
The result is a plain :class:`Analysis` of lists and dicts that the renderers (``render.py``,
``plots.py``) turn into Markdown, LaTeX, CSV, JSON and PNG without further arithmetic.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mturk_eval.analysis import inference, stats
from mturk_eval.analysis.aspects import NAMES as ASPECT_NAMES, PAPER_ASPECTS  # noqa: F401 (ASPECT_NAMES: kept for importers)
from mturk_eval.analysis.ratings import Ratings, ResponseIndex
from mturk_eval.config import ASPECTS, EVAL_SETS, METHODS, ExperimentConfig
from mturk_eval.errors import UserError, where

METHOD_NAMES = {"prompt_tuning": "Prompt-tuning", "finetune_none": "Fine-tuning (none)",
                "finetune_added": "Fine-tuning (added)"}
EVAL_SET_NAMES = {"persona": "Persona", "general": "General"}
TABLE2_ASPECTS = ("fluency", "engagingness", "relevance")
BINS = ("[1,2)", "[2,3)", "[3,4)", "[4,5]")


def method_name(m: str) -> str:
    return METHOD_NAMES.get(m, m)


def eval_set_name(e: str) -> str:
    return EVAL_SET_NAMES.get(e, e)


@dataclass
class System:
    """One row of the paper's tables: an eval set x training method x model."""

    eval_set: str
    method: str
    model: str
    letter: str = ""  # a, b, c ... within its eval set, used to mark significant differences

    @property
    def label(self) -> str:
        return f"{eval_set_name(self.eval_set)} / {method_name(self.method)} / {self.model}"

    def as_dict(self) -> dict[str, str]:
        return {"eval_set": self.eval_set, "method": self.method, "model": self.model,
                "eval_set_name": eval_set_name(self.eval_set), "method_name": method_name(self.method),
                "letter": self.letter}


@dataclass
class Analysis:
    experiment: str
    language: str
    systems: list[System]
    table2: list[dict[str, Any]]        # per system: per aspect n, items, mean, sd, ci_low, ci_high, better_than
    table3: list[dict[str, Any]]        # per system: bins counts, n (the first Table 3 aspect's)
    tests: list[dict[str, Any]]
    test_summary: list[dict[str, Any]]  # per eval set: number of tests, significant ones, a sentence
    agreement: list[dict[str, Any]]
    workers: dict[str, Any]
    underrated: list[dict[str, Any]]
    planned_ratings: int
    counts: dict[str, int]
    simulated_rows: int
    warnings: list[str] = field(default_factory=list)
    human_reference: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    aspects: list[str] = field(default_factory=lambda: list(ASPECTS))   # every aspect rated, in order
    bins: tuple[str, ...] = BINS                                        # Table 3's bins
    worker_table: list[dict[str, Any]] = field(default_factory=list)    # one row per worker
    aspect_info: tuple = PAPER_ASPECTS                                  # names, scales and tables
    mixed_models: list[dict[str, Any]] = field(default_factory=list)  # per eval set x aspect (inference.py)
    table3s: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # every Table 3 aspect's rows

    @property
    def table2_aspects(self) -> list[str]:
        return [a.name for a in self.aspect_info if a.table2]

    @property
    def table3_aspect(self) -> Any:
        """The first aspect binned as Table 3 (None when none is)."""
        return next((a for a in self.aspect_info if a.table3), None)

    @property
    def table3_aspects(self) -> list[Any]:
        """Every aspect binned as Table 3, in the aspects' order: one Table 3 each."""
        return [a for a in self.aspect_info if a.table3]

    def aspect_title(self, name: str) -> str:
        return next((a.title for a in self.aspect_info if a.name == name), name)

    @property
    def table_numbers(self) -> dict[str, int]:
        """The paper numbers its English tables 1-3 and the Japanese ones 6-8."""
        return {"auto": 1, "human": 2, "persona": 3} if self.language != "ja" else {"auto": 6, "human": 7, "persona": 8}


# --------------------------------------------------------------------------------------------------


def _order(values: list[str], preferred: tuple[str, ...] | list[str]) -> list[int]:
    """Indices of ``values`` with the preferred names first (in their order), the rest as they came."""
    pos = {v: i for i, v in enumerate(preferred)}
    return sorted(range(len(values)), key=lambda i: (pos.get(values[i], len(pos)), i))


def _exclusions(r: Ratings, min_pass_rate: float) -> tuple[np.ndarray, dict[str, Any], list[dict[str, Any]],
                                                             np.ndarray]:
    """Mask of rows that count, the counts of what was excluded, the excluded workers with reasons, and the
    mask (per worker code) of those excluded below the attention-check pass rate."""
    n_assign = len(r.assignment_ids)
    n_workers = len(r.worker_ids)
    rejected_codes = [i for i, s in enumerate(r.statuses) if s.strip().lower() == "rejected"]
    rejected = np.isin(r.status, rejected_codes) if rejected_codes else np.zeros(len(r), bool)

    # Per assignment: -1 no check, 0 failed, 1 passed (a failure anywhere in the assignment wins).
    ap = np.full(n_assign, 2, dtype=np.int64)
    has = r.attention_passed >= 0
    np.minimum.at(ap, r.assignment[has], r.attention_passed[has].astype(np.int64))
    ap[ap == 2] = -1
    # Per worker: assignments with a check, and passed, rejected or not. Rejection must not hide a
    # failed check (``review --reject-failed-attention`` rejects exactly those assignments); it only
    # decides which rating rows count.
    a_worker = np.zeros(n_assign, dtype=np.int64)
    a_worker[r.assignment] = r.worker
    a_rejected = np.zeros(n_assign, dtype=bool)
    a_rejected[r.assignment[rejected]] = True
    valid = ~a_rejected
    checked = np.bincount(a_worker[ap >= 0], minlength=n_workers)
    passed = np.bincount(a_worker[ap == 1], minlength=n_workers)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = passed / checked
    bad_worker = (checked > 0) & (rate < min_pass_rate)
    excluded_workers = []
    w_assign = np.bincount(a_worker[valid], minlength=n_workers)
    for w in np.flatnonzero(bad_worker).tolist():
        excluded_workers.append({
            "worker_id": r.worker_ids[w],
            "reason": f"passed {passed[w]} of {checked[w]} attention checks ({rate[w]:.0%}), "
                      f"below the minimum {min_pass_rate:.0%}",
            "assignments": int(w_assign[w]),
        })
    all_rejected = (np.bincount(a_worker, minlength=n_workers) > 0) & (w_assign == 0) & ~bad_worker
    for w in np.flatnonzero(all_rejected).tolist():
        excluded_workers.append({"worker_id": r.worker_ids[w], "reason": "every assignment was rejected",
                                 "assignments": 0})

    failed = ap[r.assignment] == 0
    check_rows = r.attention_check
    worker_out = bad_worker[r.worker]
    keep = ~rejected & ~check_rows & ~failed & ~worker_out
    counts = {
        "rows": len(r),
        "rejected_rows": int(rejected.sum()),
        "rejected_assignments": int(a_rejected.sum()),
        "attention_check_rows": int((check_rows & ~rejected).sum()),
        "failed_check_assignments": int((valid & (ap == 0)).sum()),
        "failed_check_rows": int((failed & ~rejected & ~check_rows).sum()),
        "excluded_worker_rows": int((worker_out & ~rejected & ~check_rows & ~failed).sum()),
        "failed_check_assignments_of_excluded_workers": int((valid & (ap == 0) & bad_worker[a_worker]).sum()),
    }
    return keep, counts, excluded_workers, bad_worker


def _failed_check_warning(c: dict[str, int]) -> str:
    n, rows, by_excluded = (c["failed_check_assignments"], c["failed_check_rows"],
                            c["failed_check_assignments_of_excluded_workers"])
    text = f"{n} assignment(s) failed their attention check; "
    if rows:
        text += f"their {rows} rating rows were excluded"
    else:
        text += "they held no rating rows besides the check itself (nothing more to exclude)"
    if by_excluded:
        who = "all of them" if by_excluded == n else f"{by_excluded} of them"
        text += (f"; {who} by excluded workers, whose other rating rows were excluded with them "
                 "(see Workers)")
    return text + "."


def _drop_duplicates(r: Ratings, keep: np.ndarray, policy: str) -> tuple[np.ndarray, int, list[str]]:
    """A worker rating the same item's aspect twice: keep the first row (policy "first") or fail."""
    every = bool(keep.all())       # the usual file: then the columns themselves, not copies of them
    idx = None if every else np.flatnonzero(keep)
    names = r.aspect_names
    worker, item, aspect = (r.worker, r.item, r.aspect) if every else (r.worker[idx], r.item[idx], r.aspect[idx])
    key = (worker * len(r.item_ids) + item) * len(names) + aspect
    # Most files have no duplicate, which a sort proves: numpy's stable sort finds the runs that ratings
    # files come in (one worker's assignment, one item's raters), a tenth of the time of hashing every key
    # at 4e6 rows and still faster for keys in random order. Only a file with duplicates is hashed
    # (pandas, keeping each first row).
    ordered = np.sort(key, kind="stable")
    if not (ordered[1:] == ordered[:-1]).any():
        return keep.copy(), 0, []
    if idx is None:
        idx = np.arange(len(r))
    is_first = ~pd.Index(key).duplicated(keep="first")
    dups = idx[~is_first]

    def first_of(j: int) -> int:
        return int(np.flatnonzero(key == key[j])[0])

    examples = []
    for j in np.flatnonzero(~is_first)[:5].tolist():
        row = idx[j]
        orig = idx[first_of(j)]
        examples.append(
            f"worker {r.worker_ids[r.worker[row]]} rated item {r.item_ids[r.item[row]]} "
            f"({names[r.aspect[row]]}) again on line {r.lines[row]} (first on line {r.lines[orig]})"
        )
    if dups.size and policy == "error":
        row = int(dups[0])
        orig = int(idx[first_of(int(np.flatnonzero(~is_first)[0]))])
        raise UserError(
            f"{where(r.source, int(r.lines[row]))}: worker_id: expected one rating per worker, item and aspect, "
            f"got a second rating of item {r.item_ids[r.item[row]]!r} ({names[r.aspect[row]]}) by worker "
            f"{r.worker_ids[r.worker[row]]!r} (first on line {int(r.lines[orig])})"
        )
    out = keep.copy()
    out[dups] = False
    return out, int(dups.size), examples


@dataclass
class Prepared:
    """The rating rows that count, coded for every later stage: the output of :func:`prepare`.

    Units are (item x aspect); groups are (system x aspect), ``g = s * A + a``."""

    r: Ratings
    cfg: ExperimentConfig
    seed: int
    keep: np.ndarray              # mask over r's rows: the rows that count
    counts: dict[str, int]        # what was read, excluded and used
    excluded_workers: list[dict[str, Any]]
    attention_excluded: np.ndarray  # per worker code: excluded whole, below the attention-check pass rate
    warnings: list[str]
    systems: list[System]
    item_sys: np.ndarray          # per item code: its system (only meaningful for used items)
    item: np.ndarray              # kept rows: item code, aspect index, score (float)
    aspect: np.ndarray
    score: np.ndarray
    unit: np.ndarray              # kept rows: unit code
    unit_sum: np.ndarray          # per unit (n_items x A): score sum and number of ratings
    unit_cnt: np.ndarray
    has: np.ndarray               # units with at least one kept rating

    @property
    def A(self) -> int:
        return len(self.r.aspects)

    @property
    def S(self) -> int:
        return len(self.systems)

    @property
    def n_units(self) -> int:
        return self.unit_sum.size

    @property
    def unit_item(self) -> np.ndarray:
        return np.arange(self.n_units) // self.A

    @property
    def unit_aspect(self) -> np.ndarray:
        return np.arange(self.n_units) % self.A

    @property
    def unit_group(self) -> np.ndarray:
        """The group of each unit in ``has``."""
        return self.item_sys[self.unit_item[self.has]] * self.A + self.unit_aspect[self.has]


@dataclass
class Tables:
    """Table 2 cells (per group) and Table 3 bins (per system): the output of :func:`tables_stage`."""

    n: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    items: np.ndarray
    ci_low: np.ndarray | None     # None until filled (tables_stage(intervals=False))
    ci_high: np.ndarray | None
    bins: dict[int, np.ndarray]   # per Table 3 aspect (index): (S, bins of its scale)


@dataclass
class Tests:
    """Every comparison, the per-eval-set sentences, and which cells beat which: :func:`tests_stage`."""

    tests: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    better: dict[tuple[int, int], list[str]]   # (system, aspect) -> letters it is significantly better than


def analyze(
    r: Ratings,
    cfg: ExperimentConfig,
    responses: ResponseIndex | None = None,
    *,
    seed: int | None = None,
    spend: Any = None,
) -> Analysis:
    """Compute every table, interval, test and agreement figure of the report from ``r``: the four
    stages (:func:`tables_stage`, :func:`tests_stage`, :func:`agreement_stage`, :func:`workers_stage`)
    on the rows :func:`prepare` keeps.

    ``spend`` (:class:`mturk_eval.analysis.cost.Spend`, from the ledger) adds bonuses to the effective
    hourly pay and the total cost to the worker figures."""
    r = with_table3_aspects(r, cfg)
    p = prepare(r, cfg, seed=seed)
    # Agreement and the mixed model run in a thread while the tests and the worker figures run here:
    # their numpy work releases the GIL, so the second core takes about half the statistics (0.9 s at 4e6
    # rows). So do the crossed intervals of the Table 2 means (0.3 s at 4e6), which the tests do not need
    # (they take the means); the bootstrap's draws are shared with the tests' differences, so those
    # intervals are drawn here first. Nothing in the thread touches p.warnings (the tests and the worker
    # figures add to it, in this order, here) and the groupings it shares with the tests are made first,
    # so the results are the same values as one stage after the other. OpenBLAS keeps one thread
    # meanwhile: its second thread spins on the core the two stages share (0.4-0.5 s more of the
    # statistics at 4e6 rows with it).
    inference.group_ordered(p)
    side_intervals = cfg.report.intervals == "crossed"
    with ThreadPoolExecutor(max_workers=1) as pool, threadpool_limits(1, user_api="blas"):
        side = pool.submit(lambda: (inference.mean_intervals(p) if side_intervals else None, agreement_stage(p),
                                    mixed_model_stage(p)))
        tables = tables_stage(p, intervals=not side_intervals)
        tests = tests_stage(p, tables, responses)
        workers, underrated, planned = workers_stage(p, spend)
        worker_table = worker_rows(p)
        intervals, agreement_rows, mixed = side.result()
    if side_intervals:
        tables.ci_low, tables.ci_high = intervals
    rc = cfg.report
    return Analysis(
        experiment=cfg.name, language=cfg.language, systems=p.systems,
        table2=table2_records(p, tables, tests), table3=table3_records(p, tables, first_table3(r.aspects)),
        tests=tests.tests, test_summary=tests.summary, agreement=agreement_rows, workers=workers,
        underrated=underrated, planned_ratings=planned, counts=p.counts,
        simulated_rows=int(r.simulated.sum()), warnings=p.warnings,
        human_reference=dict(rc.human_reference),
        settings={"bootstrap_samples": rc.bootstrap_samples, "alpha": rc.alpha,
                  "min_attention_pass_rate": rc.min_attention_pass_rate, "duplicates": rc.duplicates,
                  "seed": p.seed, "intervals": rc.intervals, "holm_family": rc.holm_family,
                  "mixed_model": rc.mixed_model, "mixed_model_max_ratings": rc.mixed_model_max_ratings},
        worker_table=worker_table, aspects=r.aspect_names, bins=table3_bins(r.aspects),
        aspect_info=r.aspects, mixed_models=mixed,
        table3s={a.name: table3_records(p, tables, i) for i, a in enumerate(r.aspects) if a.table3},
    )


def with_table3_aspects(r: Ratings, cfg: ExperimentConfig) -> Ratings:
    """``r`` with the aspects ``[report] table3_aspects`` names binned as Table 3 (unset: as marked)."""
    names = cfg.report.table3_aspects
    if names is None:
        return r
    from dataclasses import replace

    from mturk_eval.analysis.aspects import mark_table3

    return replace(r, aspects=mark_table3(r.aspects, names,
                                          f"{cfg.source_path or '<config>'}: report.table3_aspects"))


def prepare(r: Ratings, cfg: ExperimentConfig, *, seed: int | None = None) -> Prepared:
    """Exclusions (rejected, attention checks, failed checks, excluded workers, duplicates), the systems
    and their letters, and per-unit sums: everything the four stages share."""
    rc = cfg.report
    warnings: list[str] = list(r.notes) + _status_and_item_warnings(r)
    table2_aspects = [a.name for a in r.aspects if a.table2]
    for k in rc.human_reference:
        if k not in table2_aspects:
            raise UserError(
                f"{cfg.source_path or '<config>'}: report.human_reference.{k}: expected one of "
                f"{', '.join(table2_aspects)}, got an unknown aspect"
            )
    keep, counts, excluded_workers, attention_excluded = _exclusions(r, rc.min_attention_pass_rate)
    keep, n_dup, dup_examples = _drop_duplicates(r, keep, rc.duplicates)
    counts["duplicate_rows"] = n_dup
    if n_dup:
        warnings.append(
            f"{n_dup} duplicate rating(s) (a worker rating the same item and aspect twice) were dropped, "
            f"keeping each first rating: " + "; ".join(dup_examples) + ("; ..." if n_dup > len(dup_examples) else "")
        )
    if counts["rejected_rows"]:
        warnings.append(f"{counts['rejected_assignments']} rejected assignment(s) ({counts['rejected_rows']} "
                        "rating rows) were excluded.")
    if counts["failed_check_assignments"]:
        warnings.append(_failed_check_warning(counts))
    if excluded_workers:
        warnings.append(f"{len(excluded_workers)} worker(s) were excluded ({counts['excluded_worker_rows']} further "
                        "rating rows); see Workers.")
    counts["used_rows"] = int(keep.sum())
    if counts["used_rows"] == 0:
        raise UserError(f"{r.source}: expected at least one usable rating after exclusions, got none "
                        f"({counts['rows']} rows: {counts['rejected_rows']} rejected, "
                        f"{counts['attention_check_rows']} attention checks, {counts['failed_check_rows']} failed checks)")

    n_items = len(r.item_ids)
    item = r.item[keep]
    aspect = r.aspect[keep]
    score = r.score[keep].astype(np.float64)
    A = len(r.aspects)
    systems, item_sys = _systems(r, cfg, item)
    unit = item * A + aspect
    n_units = n_items * A
    unit_sum = np.bincount(unit, weights=score, minlength=n_units)
    unit_cnt = np.bincount(unit, minlength=n_units)
    return Prepared(r=r, cfg=cfg, seed=cfg.seed if seed is None else seed, keep=keep, counts=counts,
                    excluded_workers=excluded_workers, attention_excluded=attention_excluded, warnings=warnings,
                    systems=systems, item_sys=item_sys,
                    item=item, aspect=aspect, score=score, unit=unit, unit_sum=unit_sum, unit_cnt=unit_cnt,
                    has=unit_cnt > 0)


def _systems(r: Ratings, cfg: ExperimentConfig, item: np.ndarray) -> tuple[list[System], np.ndarray]:
    """Systems (eval set x method x model) of the items that have used ratings, in the paper's order
    (eval sets persona, general; methods and models in the config's order), lettered within each eval
    set; and each item's system."""
    used_item = np.zeros(len(r.item_ids), dtype=bool)
    used_item[item] = True
    es_rank = np.empty(len(r.eval_sets), dtype=np.int64)
    es_rank[_order(r.eval_sets, EVAL_SETS)] = np.arange(len(r.eval_sets))
    me_rank = np.empty(len(r.methods), dtype=np.int64)
    me_rank[_order(r.methods, cfg.methods or METHODS)] = np.arange(len(r.methods))
    mo_rank = np.empty(len(r.models), dtype=np.int64)
    mo_rank[_order(r.models, cfg.models)] = np.arange(len(r.models))
    sys_key = (es_rank[r.item_eval_set] * len(r.methods) + me_rank[r.item_method]) * len(r.models) + mo_rank[r.item_model]
    uniq_keys, item_sys = np.unique(np.where(used_item, sys_key, -1), return_inverse=True)
    # Drop the -1 "unused" bucket if present.
    if uniq_keys[0] == -1:
        item_sys = item_sys - 1
        uniq_keys = uniq_keys[1:]
    inv_es = np.argsort(es_rank)
    inv_me = np.argsort(me_rank)
    inv_mo = np.argsort(mo_rank)
    systems: list[System] = []
    for k in uniq_keys.tolist():
        mo = k % len(r.models)
        me = (k // len(r.models)) % len(r.methods)
        es = k // (len(r.models) * len(r.methods))
        systems.append(System(r.eval_sets[inv_es[es]], r.methods[inv_me[me]], r.models[inv_mo[mo]]))
    letters = "abcdefghijklmnopqrstuvwxyz"
    per_es: dict[str, int] = {}
    for s in systems:
        i = per_es.get(s.eval_set, 0)
        s.letter = letters[i] if i < 26 else f"s{i}"
        per_es[s.eval_set] = i + 1
    return systems, item_sys.reshape(-1)


def tables_stage(p: Prepared, intervals: bool = True) -> Tables:
    """Table 2/7 (mean and SD over all answers, items, the interval of every mean, the persona aspect
    too for the plots) and Table 3/8 (each response's persona mean, binned). ``intervals=False`` leaves
    ``ci_low``/``ci_high`` None, for the caller to fill from :func:`inference.mean_intervals`."""
    S, A = p.S, p.A
    group, _, _ = inference.rows_by_group(p)   # each kept row's system x aspect, made once
    n_g, mean_g, sd_g = stats.group_mean_sd(group, p.score, S * A)
    unit_group = p.unit_group
    items_g = np.bincount(unit_group, minlength=S * A)
    ci_lo, ci_hi = inference.mean_intervals(p) if intervals else (None, None)
    # Table 3, per marked aspect (persona by default): each response's mean on it, binned with exact
    # integer comparisons (sum >= k * count) at each point of the aspect's scale above its lowest.
    bins: dict[int, np.ndarray] = {}
    for t3, asp in enumerate(p.r.aspects):
        if not asp.table3:
            continue
        nb = asp.width - 1
        pu = np.flatnonzero(p.has & (p.unit_aspect == t3))
        ps, pc = p.unit_sum[pu], p.unit_cnt[pu]
        bin_idx = np.zeros(pu.size, dtype=np.int64)
        for k in range(asp.low + 1, asp.high):
            bin_idx += ps >= k * pc
        bins[t3] = np.bincount(p.item_sys[p.unit_item[pu]] * nb + bin_idx, minlength=S * nb).reshape(S, nb)
    return Tables(n=n_g, mean=mean_g, sd=sd_g, items=items_g, ci_low=ci_lo, ci_high=ci_hi, bins=bins)


def tests_stage(p: Prepared, tables: Tables, responses: ResponseIndex | None = None) -> Tests:
    """Tests between systems of one eval set, per aspect (see :func:`inference.tests_stage`)."""
    return inference.tests_stage(p, tables, responses)


def mixed_model_stage(p: Prepared) -> list[dict[str, Any]]:
    """The crossed mixed model per eval set and aspect (see :func:`inference.mixed_model_stage`)."""
    return inference.mixed_model_stage(p)


def table2_records(p: Prepared, tables: Tables, tests: Tests) -> list[dict[str, Any]]:
    """Per system: its names and, per aspect, n, items, mean, sd, ci_low, ci_high, better_than."""
    out = []
    for k, s in enumerate(p.systems):
        row: dict[str, Any] = {**s.as_dict(), "aspects": {}}
        for a, name in enumerate(p.r.aspect_names):
            g = k * p.A + a
            row["aspects"][name] = {
                "n": int(tables.n[g]), "items": int(tables.items[g]), "mean": float(tables.mean[g]),
                "sd": float(tables.sd[g]), "ci_low": float(tables.ci_low[g]), "ci_high": float(tables.ci_high[g]),
                "better_than": sorted(tests.better.get((k, a), [])),
            }
        out.append(row)
    return out


def first_table3(aspects) -> int | None:
    """The index of the first aspect binned as Table 3 (None when none is)."""
    return next((i for i, a in enumerate(aspects) if a.table3), None)


def table3_bins(aspects) -> tuple[str, ...]:
    """The first Table 3 aspect's bins (none when no aspect is marked for Table 3)."""
    i = first_table3(aspects)
    return aspects[i].bins if i is not None else ()


def table3_records(p: Prepared, tables: Tables, aspect: int | None) -> list[dict[str, Any]]:
    """Per system: its names, the bin counts of Table 3 aspect ``aspect`` (its index; none for None) and
    their sum."""
    bins = p.r.aspects[aspect].bins if aspect is not None else ()
    counts = tables.bins[aspect] if aspect is not None else np.zeros((p.S, 0), dtype=np.int64)
    return [{**s.as_dict(), "bins": dict(zip(bins, counts[k].tolist())), "n": int(counts[k].sum())}
            for k, s in enumerate(p.systems)]


def agreement_stage(p: Prepared) -> list[dict[str, Any]]:
    """Agreement per aspect: all systems pooled, then per system (alpha, pairwise shares, LOO rho)."""
    S, A, has = p.S, p.A, p.has
    # Scores as points 1..K of their aspect's scale (K the widest scale), so one matrix serves all.
    low = np.array([a.low for a in p.r.aspects])
    K = max(a.width for a in p.r.aspects)
    counts_u = stats.unit_value_counts(p.unit, p.r.score[p.keep] - low[p.aspect] + 1, p.n_units, K)
    ag_sys, ag_all = stats.agreement_by(counts_u[has], [(p.unit_group, S * A), (p.unit_aspect[has], A)])
    # Each rating and the mean of the other ratings of its unit, once for the pooled and the per-system
    # figures (leave_one_out_spearman computes the same values group by group).
    m_row = p.unit_cnt[p.unit]
    paired = m_row >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        rest = (p.unit_sum[p.unit] - p.score) / (m_row - 1)
    _, order_r, rb = inference.rows_by_group(p)   # the tests' grouping of the rows, made once
    score_g, rest_g, paired_g = inference.group_ordered(p)[2], rest[order_r], paired[order_r]
    rows = []
    for a, name in enumerate(p.r.aspect_names):
        sel = (p.aspect == a) & paired
        rho = stats.spearman_of_ratings(p.score[sel], rest[sel])
        rows.append(_agreement_row("all systems", None, name, ag_all, a, rho))
    for k, s in enumerate(p.systems):
        for a, name in enumerate(p.r.aspect_names):
            g = k * A + a
            ok = paired_g[rb[g]:rb[g + 1]]
            rho = stats.spearman_of_ratings(score_g[rb[g]:rb[g + 1]][ok], rest_g[rb[g]:rb[g + 1]][ok])
            rows.append(_agreement_row(s.label, s, name, ag_sys, g, rho))
    return rows


def workers_stage(p: Prepared, spend: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Worker figures (see :func:`_workers`), the items with fewer than the planned ratings, and that
    plan; adds the under-rated warning to ``p.warnings``."""
    r, cfg = p.r, p.cfg
    workers = _workers(r, p.keep, cfg, p.excluded_workers, spend)
    p.warnings.extend(_per_assignment_conflicts(r))
    planned = cfg.report.planned_ratings or cfg.hit.assignments_per_hit
    n_items = len(r.item_ids)
    per_item = p.unit_cnt.reshape(n_items, p.A).max(axis=1)
    seen = np.zeros(n_items, dtype=bool)
    seen[r.item[~r.attention_check]] = True
    short = np.flatnonzero(seen & (per_item < planned))
    underrated = [{"item_id": r.item_ids[i], "ratings": int(per_item[i]), "planned": planned,
                   "eval_set": r.eval_sets[r.item_eval_set[i]], "method": r.methods[r.item_method[i]],
                   "model": r.models[r.item_model[i]]} for i in short.tolist()]
    if underrated:
        p.warnings.append(f"{len(underrated)} item(s) have fewer than the planned {planned} ratings; see Workers.")
    return workers, underrated, planned


def _first_rows(r: Ratings) -> np.ndarray:
    """Per assignment code: its first row (-1 for a code without rows)."""
    first = np.full(len(r.assignment_ids), -1, dtype=np.int64)
    first[r.assignment[::-1]] = np.arange(len(r) - 1, -1, -1)
    return first


def _per_assignment(r: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per assignment present in ``r``: its first row, the presence mask over assignment codes, its
    worker, whether it was rejected, and its check result (2 no check, 1 passed, 0 failed)."""
    n_assign = len(r.assignment_ids)
    first = _first_rows(r)
    present = first >= 0
    fa = first[present]
    rejected_codes = [i for i, s in enumerate(r.statuses) if s.strip().lower() == "rejected"]
    ap = np.full(n_assign, 2, dtype=np.int64)
    hasp = r.attention_passed >= 0
    np.minimum.at(ap, r.assignment[hasp], r.attention_passed[hasp].astype(np.int64))
    return fa, present, r.worker[fa], np.isin(r.status[fa], rejected_codes), ap[present]


def worker_rows(p: Prepared) -> list[dict[str, Any]]:
    """One row per worker: assignments (rejected), rating rows read and used, attention checks met and
    passed, median work time per assignment, and the exclusion with its reason."""
    r = p.r
    n_w = len(r.worker_ids)
    fa, _, a_worker, a_rejected, a_ap = _per_assignment(r)
    assignments = np.bincount(a_worker, minlength=n_w)
    rejected = np.bincount(a_worker[a_rejected], minlength=n_w)
    checks = np.bincount(a_worker[a_ap <= 1], minlength=n_w)
    passed = np.bincount(a_worker[a_ap == 1], minlength=n_w)
    rows_read = np.bincount(r.worker, minlength=n_w)
    rows_used = np.bincount(r.worker[p.keep], minlength=n_w)
    # Median work time per worker over their assignments with a known time.
    wt = r.work_time_s[fa]
    ok = np.isfinite(wt)
    order = np.lexsort((wt[ok], a_worker[ok]))
    w_sorted, t_sorted = a_worker[ok][order], wt[ok][order]
    bounds = np.searchsorted(w_sorted, np.arange(n_w + 1))
    # Each worker's median from the two middle values of its sorted times, all workers at once: the
    # (a + b) / 2 that np.median gives (a == b for an odd number), without one call per worker.
    size = np.diff(bounds)
    has = size > 0
    median = np.full(n_w, np.nan)
    start = bounds[:-1][has]
    median[has] = (t_sorted[start + (size[has] - 1) // 2] + t_sorted[start + size[has] // 2]) / 2
    median = median.tolist()
    reasons = {e["worker_id"]: e["reason"] for e in p.excluded_workers}
    out = []
    for wid, n_a, n_rej, n_read, n_used, n_chk, n_pass, med in zip(
            r.worker_ids, assignments.tolist(), rejected.tolist(), rows_read.tolist(), rows_used.tolist(),
            checks.tolist(), passed.tolist(), median):
        out.append({
            "worker_id": wid, "assignments": n_a, "rejected_assignments": n_rej,
            "rating_rows": n_read, "rows_used": n_used, "attention_checks": n_chk, "attention_passed": n_pass,
            "median_work_time_s": med, "excluded": wid in reasons, "reason": reasons.get(wid, ""),
        })
    return out


def _per_assignment_conflicts(r: Ratings) -> list[str]:
    """Counted warnings for values that must be one per assignment but differ between its rows (work time,
    reward, status, worker, attention-check result), and for check rows whose assignment has no result:
    each says how the report resolved it."""
    out = []
    # Each row against its assignment's first row (no sort: every assignment code's first row).
    first_of_row = _first_rows(r)[r.assignment]

    def differing(values: np.ndarray) -> np.ndarray:
        """The assignments with a row whose value differs from the assignment's first row's."""
        first = values[first_of_row]
        same = values == first
        if values.dtype.kind == "f":
            same |= np.isnan(values) & np.isnan(first)
        return np.unique(r.assignment[~same])

    for name, values, unit in (("work_time_s", r.work_time_s, " s"), ("reward", r.reward, "")):
        if values is None:
            continue
        bad = differing(values)
        if bad.size:
            ex = []
            for a in bad[:3].tolist():
                vals = sorted({float(x) for x in values[r.assignment == a].tolist() if x == x})
                ex.append(f"{r.assignment_ids[a]}: {', '.join(f'{x:g}{unit}' for x in vals)}"
                          + (" and empty" if np.isnan(values[r.assignment == a]).any() else ""))
            out.append(f"{bad.size} assignment(s) have different {name} values on different rows (e.g. "
                       f"{'; '.join(ex)}); the worker figures use each assignment's first row.")

    def coded_examples(bad: np.ndarray, codes: np.ndarray, vocab: list[str]) -> str:
        ex = []
        for a in bad[:3].tolist():
            ex.append(f"{r.assignment_ids[a]}: "
                      + ", ".join(repr(vocab[c]) for c in pd.unique(codes[r.assignment == a]).tolist()))
        return "; ".join(ex)

    bad = differing(r.status)
    if bad.size:
        out.append(f"{bad.size} assignment(s) have different status values on different rows (e.g. "
                   f"{coded_examples(bad, r.status, r.statuses)}); only the rows marked Rejected were excluded, "
                   "and the assignment counts as rejected in the worker figures when its first row is.")
    bad = differing(r.worker)
    if bad.size:
        out.append(f"{bad.size} assignment(s) have rows from different workers (e.g. "
                   f"{coded_examples(bad, r.worker, r.worker_ids)}); each rating row counts for its own worker, "
                   "the assignment's attention checks and worker figures for one of them.")
    # Attention-check results: 1 on some rows and 0 on others; check rows with no result anywhere.
    n_a = len(r.assignment_ids)
    failed = np.bincount(r.assignment[r.attention_passed == 0], minlength=n_a) > 0
    passed = np.bincount(r.assignment[r.attention_passed == 1], minlength=n_a) > 0
    mixed = np.flatnonzero(failed & passed)
    if mixed.size:
        out.append(f"{mixed.size} assignment(s) have attention_passed 1 on some rows and 0 on others (e.g. "
                   f"{', '.join(r.assignment_ids[a] for a in mixed[:3].tolist())}); read as failed (a failure "
                   "anywhere in the assignment wins).")
    with_check = np.bincount(r.assignment[r.attention_check], minlength=n_a) > 0
    unresolved = np.flatnonzero(with_check & ~failed & ~passed)
    if unresolved.size:
        rows = int(np.isin(r.assignment[r.attention_check], unresolved).sum())
        out.append(f"{unresolved.size} assignment(s) hold attention-check rows ({rows}) but no attention_passed "
                   f"result (e.g. {', '.join(r.assignment_ids[a] for a in unresolved[:3].tolist())}); the check "
                   "rows were excluded and the assignments count as unchecked.")
    return out


KNOWN_STATUSES = ("submitted", "approved", "rejected", "")


def _status_and_item_warnings(r: Ratings) -> list[str]:
    """Counted warnings for statuses the report does not know (used as not rejected) and items that are
    attention checks on some rows only (only the marked rows are excluded)."""
    out = []
    unknown = [i for i, v in enumerate(r.statuses) if v.strip().lower() not in KNOWN_STATUSES]
    if unknown:
        per = np.bincount(r.status, minlength=len(r.statuses))
        total = int(per[unknown].sum())
        ex = ", ".join(f"{r.statuses[i]!r} ({int(per[i])})" for i in sorted(unknown, key=lambda i: -per[i])[:3])
        out.append(f"{total} rating row(s) have a status other than Submitted, Approved or Rejected ({ex}); they "
                   "were used as not rejected.")
    n_items = len(r.item_ids)
    if not r.attention_check.any():   # no check rows: no item can be partly one
        return out
    checks = np.bincount(r.item[r.attention_check], minlength=n_items)
    others = np.bincount(r.item[~r.attention_check], minlength=n_items)
    partly = np.flatnonzero((checks > 0) & (others > 0))
    if partly.size:
        out.append(f"{partly.size} item(s) are attention checks on some rows and not on others (e.g. "
                   f"{', '.join(repr(r.item_ids[i]) for i in partly[:3].tolist())}); only the rows marked "
                   f"attention_check were excluded ({int(others[partly].sum())} unmarked rows of them count as "
                   "ratings).")
    return out


def _agreement_row(scope: str, s: System | None, aspect: str, ag: stats.Agreement, g: int, rho: float) -> dict[str, Any]:
    return {
        "scope": scope, "eval_set": s.eval_set if s else None, "method": s.method if s else None,
        "model": s.model if s else None, "aspect": aspect,
        "alpha_ordinal": float(ag.alpha_ordinal[g]), "alpha_interval": float(ag.alpha_interval[g]),
        "units": int(ag.units[g]), "pairable_values": int(ag.pairable[g]),
        "exact_agreement": float(ag.exact[g]), "within_one": float(ag.within_one[g]), "loo_spearman": rho,
    }


def _workers(r: Ratings, keep: np.ndarray, cfg: ExperimentConfig, excluded: list[dict[str, Any]],
             spend: Any = None) -> dict[str, Any]:
    """Distinct workers, assignments per worker, work time, effective hourly pay (with bonuses when the
    ledger's ``spend`` is given), cost, attention checks and the workers who never met one."""
    fa, present, a_worker, a_rejected, a_ap = _per_assignment(r)
    per_worker = np.bincount(a_worker, minlength=len(r.worker_ids))
    per_worker = per_worker[per_worker > 0]
    wt = r.work_time_s[fa]
    wt_ok = wt[np.isfinite(wt) & ~a_rejected]
    median_wt = float(np.median(wt_ok)) if wt_ok.size else float("nan")
    if r.reward is not None and np.isfinite(r.reward[fa]).any():
        rewards = r.reward[fa][np.isfinite(r.reward[fa])]
        reward = float(np.median(rewards))
    elif getattr(spend, "reward", None) is not None:   # the ledger's task rewards (a Prolific study's own)
        reward = float(spend.reward)
    else:
        reward = float(cfg.hit.reward)
    hourly = reward * 3600.0 / median_wt if median_wt and np.isfinite(median_wt) and median_wt > 0 else float("nan")
    mean_hourly = float(reward * wt_ok.size * 3600.0 / wt_ok.sum()) if wt_ok.size and wt_ok.sum() > 0 else float("nan")
    # Every assignment that held a check, rejected or not (as for the exclusion of workers).
    checked = a_ap <= 1
    passed = a_ap == 1
    # Workers with non-rejected assignments none of whose assignments held an attention check: their
    # ratings are unchecked.
    n_w = len(r.worker_ids)
    w_valid = np.bincount(a_worker[~a_rejected], minlength=n_w)
    w_checked = np.bincount(a_worker[checked], minlength=n_w)
    w_rows_used = np.bincount(r.worker[keep], minlength=n_w)
    unchecked = np.flatnonzero((w_valid > 0) & (w_checked == 0)).tolist()
    unchecked_workers = sorted(
        ({"worker_id": r.worker_ids[w], "assignments": int(w_valid[w]), "rows_used": int(w_rows_used[w])}
         for w in unchecked), key=lambda d: (-d["assignments"], d["worker_id"]))
    pay: dict[str, Any] = {}
    if spend is not None:
        bonus = np.array([float(spend.bonus_by_assignment.get(aid, 0)) for aid in r.assignment_ids])[present]
        ok = np.isfinite(wt) & ~a_rejected
        mean_bonus = float(bonus[~a_rejected].mean()) if (~a_rejected).any() else 0.0
        pay = {
            "bonus_per_assignment_mean": mean_bonus,
            "hourly_pay_with_bonuses_at_median": ((reward + mean_bonus) * 3600.0 / median_wt
                                                  if np.isfinite(median_wt) and median_wt > 0 else float("nan")),
            "hourly_pay_with_bonuses_overall": (float((reward * ok.sum() + bonus[ok].sum()) * 3600.0 / wt[ok].sum())
                                                if ok.any() and wt[ok].sum() > 0 else float("nan")),
            "cost": spend.as_dict(),
        }
    return {
        "workers": int(per_worker.size),
        "assignments": int(present.sum()),
        "rejected_assignments": int(a_rejected.sum()),
        "assignments_per_worker": {
            "mean": float(per_worker.mean()) if per_worker.size else float("nan"),
            "median": float(np.median(per_worker)) if per_worker.size else float("nan"),
            "max": int(per_worker.max()) if per_worker.size else 0,
        },
        "median_work_time_s": median_wt,
        "reward_per_assignment": reward,
        "hourly_pay_at_median": hourly,
        "hourly_pay_overall": mean_hourly,
        "attention_checks": int(checked.sum()),
        "attention_passed": int(passed.sum()),
        "attention_pass_rate": float(passed.sum() / checked.sum()) if checked.sum() else float("nan"),
        "excluded_workers": excluded,
        "workers_used": int(np.count_nonzero(w_rows_used)),
        "unchecked_workers": unchecked_workers,
        **pay,
    }
