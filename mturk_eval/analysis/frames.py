"""The notebook API: ratings in as a pandas DataFrame, every table of the report out as a DataFrame.

    from mturk_eval.analysis import load_ratings, table2, table3, comparisons, agreement, workers
    df = load_ratings("ratings.parquet")          # or .csv / .jsonl / a ledger / a batch CSV (+ mapping)
    table2(df)                                    # Table 2/7: mean, SD, CI, n per system and aspect

Each table function takes either a ratings DataFrame (checked and analysed with the given config, or
the defaults) or an :class:`~mturk_eval.analysis.core.Analysis` from :func:`analysis`, so a notebook
that wants several tables analyses once. ``mturk-eval report`` writes its CSV files from exactly these
functions.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from mturk_eval.analysis.aspects import Aspect, config_aspects
from mturk_eval.analysis.core import Analysis, analyze
from mturk_eval.analysis.ratings import (
    Ratings,
    ResponseIndex,
    ratings_frame,
    ratings_from_frame,
    ratings_from_records,
    read_ratings,
    read_responses,
)
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError

def _config(config: ExperimentConfig | str | os.PathLike | None) -> ExperimentConfig:
    if config is None:
        return ExperimentConfig(name="ratings", models=[])
    if isinstance(config, ExperimentConfig):
        return config
    from mturk_eval.config import load_config

    return load_config(config)


def _responses(responses: ResponseIndex | str | os.PathLike | None) -> ResponseIndex | None:
    if responses is None or isinstance(responses, ResponseIndex):
        return responses
    return read_responses(responses)


def _is_batch_csv(path: Path) -> bool:
    """A CSV whose header has MTurk's fixed batch columns (and no long-format ``score``)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            head = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    import csv

    cols = {c.strip() for c in next(csv.reader([head]), [])}
    return {"HITId", "AssignmentId", "WorkerId"} <= cols and "score" not in cols


def read_source(
    source: Any,
    *,
    mapping: Any = None,
    responses: ResponseIndex | None = None,
    config: ExperimentConfig | None = None,
    target: str | None = None,
) -> tuple[Ratings, str]:
    """Checked ratings from any source, and a description of it for the report. The aspects and scales
    are the config's ``[[report.aspects]]`` (or a mapping's), the paper's four by default."""
    aspects = config_aspects(config) if config is not None and config.report.aspects else None
    if isinstance(source, pd.DataFrame):
        name = str(source.attrs.get("source", "DataFrame"))
        return ratings_from_frame(source, name, aspects), name
    if isinstance(source, list):
        return ratings_from_records(source, "records", aspects=aspects), "records"
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        from mturk_eval.analysis.report import find_ledger
        from mturk_eval.config import load_config

        cfg = config or load_config(path)
        return read_ledger(find_ledger(cfg, target), config_aspects(cfg) if cfg.report.aspects else None)
    if suffix in (".sqlite", ".db"):
        return read_ledger(path, aspects)
    if mapping is not None or (suffix not in (".parquet", ".jsonl", ".json", ".ndjson") and _is_batch_csv(path)):
        from mturk_eval.analysis.batch_csv import read_batch_csv
        from mturk_eval.analysis.mapping import load_mapping, ratings_from_batch

        m = load_mapping(mapping) if isinstance(mapping, (str, os.PathLike)) else mapping
        desc = f"MTurk batch results `{path}`" + (f" (mapping `{mapping}`)" if isinstance(mapping, (str, os.PathLike)) else "")
        return ratings_from_batch(read_batch_csv(path), responses, m), desc
    return read_ratings(path, aspects), f"ratings file `{path}`"


def read_ledger(path: Path, aspects: tuple[Aspect, ...] | None = None) -> tuple[Ratings, str]:
    from mturk_eval.ledger import Ledger

    if not Path(path).exists():
        raise UserError(f"{path}: file not found")
    with Ledger.open(path, create=False) as led:
        rows = led.ratings()
        invalid, errors = led.invalid_submissions()
    if not rows:
        raise UserError(f"{path}: expected collected ratings, got none; run `mturk-eval collect` first")
    r = ratings_from_records(rows, str(path), aspects=aspects)
    if invalid:
        ex = f" (e.g. {'; '.join(errors)})" if errors else ""
        r.notes.append(f"{invalid} submission(s) in the ledger could not be read{ex}; they hold no ratings and "
                       "count nowhere in this report (`mturk-eval status` counts them).")
    return r, f"ledger `{path}`"


def load_ratings(
    source: Any,
    *,
    mapping: Any = None,
    responses: ResponseIndex | str | os.PathLike | None = None,
    config: ExperimentConfig | str | os.PathLike | None = None,
    target: str | None = None,
) -> pd.DataFrame:
    """Ratings in the long format (docs/architecture.md section 6), checked, as a DataFrame.

    ``source``: a long-format ``.csv`` / ``.jsonl`` / ``.parquet`` file; an MTurk batch results CSV
    (recognised by its ``HITId, AssignmentId, WorkerId`` columns; ``mapping`` a TOML file or a
    :class:`~mturk_eval.analysis.mapping.Mapping` for other teams' templates; ``responses`` for item
    fields the file lacks); a ledger (``.sqlite``) or an experiment config (``.toml``, its ledger, ``target``
    to choose one); a DataFrame or a list of dicts (checked and normalised). Bad input raises
    :class:`~mturk_eval.errors.UserError` with the same one-line message the CLI prints.

    The result has string columns as categoricals, ``score`` int64, ``attention_check`` / ``simulated``
    bool, ``attention_passed`` nullable boolean, ``work_time_s`` float; its index ``line`` is each row's
    line in the source; ``df.attrs["source"]`` describes the source."""
    r, desc = read_source(source, mapping=mapping, responses=_responses(responses),
                          config=_config(config) if config is not None else None, target=target)
    df = ratings_frame(r)
    df.attrs["source"] = r.source
    df.attrs["description"] = desc
    return df


def analysis(
    ratings: pd.DataFrame | Analysis,
    config: ExperimentConfig | str | os.PathLike | None = None,
    responses: ResponseIndex | str | os.PathLike | None = None,
    *,
    seed: int | None = None,
) -> Analysis:
    """Every figure of the report for a ratings DataFrame (an :class:`Analysis` is returned as is)."""
    if isinstance(ratings, Analysis):
        return ratings
    if not isinstance(ratings, pd.DataFrame):
        raise TypeError(f"expected a ratings DataFrame (load_ratings) or an Analysis, got {type(ratings).__name__}")
    cfg = _config(config)
    r = ratings_from_frame(ratings, str(ratings.attrs.get("source", "DataFrame")),
                           config_aspects(cfg) if cfg.report.aspects else None)
    return analyze(r, cfg, _responses(responses), seed=seed)


def table2(ratings: pd.DataFrame | Analysis, config: Any = None, responses: Any = None, *,
           seed: int | None = None) -> pd.DataFrame:
    """Table 2/7: one row per system (eval_set, method, model, letter) and, per aspect, ``{aspect}_mean``,
    ``_sd`` (n-1), ``_ci_low``, ``_ci_high`` (the report's interval method), ``_n`` (ratings), ``_items``,
    ``_better_than`` (letters of the systems it is significantly better than)."""
    an = analysis(ratings, config, responses, seed=seed)
    rows = []
    for r in an.table2:
        row: dict[str, Any] = {k: r[k] for k in ("eval_set", "method", "model", "letter")}
        for a in an.aspects:
            s = r["aspects"][a]
            row.update({f"{a}_mean": s["mean"], f"{a}_sd": s["sd"], f"{a}_ci_low": s["ci_low"],
                        f"{a}_ci_high": s["ci_high"], f"{a}_n": s["n"], f"{a}_items": s["items"],
                        f"{a}_better_than": "".join(s["better_than"])})
        rows.append(row)
    return pd.DataFrame(rows, columns=_table2_columns(an))


def _table2_columns(an: Analysis) -> list[str]:
    cols = ["eval_set", "method", "model", "letter"]
    for a in an.aspects:
        cols += [f"{a}_{k}" for k in ("mean", "sd", "ci_low", "ci_high", "n", "items", "better_than")]
    return cols


def table3(ratings: pd.DataFrame | Analysis, config: Any = None, responses: Any = None, *,
           seed: int | None = None, aspect: str | None = None) -> pd.DataFrame:
    """Table 3/8: per system, how many responses' mean score on a Table 3 aspect falls in each bin of its
    scale, and their number ``n``. ``aspect``: one of the aspects binned as Table 3 (persona consideration
    by default; several with ``table3 = true`` or ``[report] table3_aspects``), default the first one."""
    from mturk_eval.analysis.render import table3_of

    an = analysis(ratings, config, responses, seed=seed)
    records, bins = table3_of(an, aspect)
    cols = ["eval_set", "method", "model", *bins, "n"]
    return pd.DataFrame([[r["eval_set"], r["method"], r["model"], *[r["bins"][b] for b in bins], r["n"]]
                         for r in records], columns=cols)


COMPARISON_COLUMNS = ["eval_set", "aspect", "a", "b", "system_a", "system_b", "mean_a", "mean_b", "test", "n_a",
                      "n_b", "statistic", "p", "p_holm", "significant", "item_mean_a", "item_mean_b", "better",
                      "method", "n_used", "zeros", "undefined", "design", "difference", "difference_ci_low",
                      "difference_ci_high"]
AGREEMENT_COLUMNS = ["scope", "eval_set", "method", "model", "aspect", "alpha_ordinal", "alpha_interval",
                     "loo_spearman", "exact_agreement", "within_one", "units", "pairable_values"]


def comparisons(ratings: pd.DataFrame | Analysis, config: Any = None, responses: Any = None, *,
                seed: int | None = None) -> pd.DataFrame:
    """Every test between two systems of one eval set on one aspect: the means, the test, its statistic,
    p, Holm-adjusted p, significance and the better system's letter, how p was computed (``method``:
    exact or normal), the pairs or items used, zero differences dropped, whether the test was undefined,
    the design and why, and the difference of the means with its interval (``tests.csv``)."""
    an = analysis(ratings, config, responses, seed=seed)
    extra = [k for t in an.tests[:1] for k in t if k not in COMPARISON_COLUMNS and k != "direction"]
    return pd.DataFrame([{k: t.get(k) for k in COMPARISON_COLUMNS + extra} for t in an.tests],
                        columns=COMPARISON_COLUMNS + extra)


MIXED_MODEL_COLUMNS = ["eval_set", "aspect", "ratings", "subsampled_from", "items", "raters", "var_item",
                       "var_item_low", "var_item_high", "var_rater", "var_rater_low", "var_rater_high",
                       "var_residual", "var_residual_low", "var_residual_high", "a", "b", "estimate", "se",
                       "ci_low", "ci_high", "p", "not_fitted"]


def mixed_models(ratings: pd.DataFrame | Analysis, config: Any = None, responses: Any = None, *,
                 seed: int | None = None) -> pd.DataFrame:
    """The crossed mixed model score ~ system + (1 | item) + (1 | rater) per eval set and aspect: one row
    per difference between two systems (estimate, SE, 95% CI, p) with the fit's ratings (``subsampled_from``
    the total when fitted on a subsample), items, raters and variance components with their intervals; a
    fit that could not be made is one row with ``not_fitted`` saying why (``mixed_model.csv``)."""
    an = analysis(ratings, config, responses, seed=seed)
    rows = []
    for m in an.mixed_models:
        base = {"eval_set": m["eval_set"], "aspect": m["aspect"], "ratings": m["ratings"],
                "subsampled_from": m.get("subsampled_from", 0), "items": m.get("items"), "raters": m.get("raters")}
        if "not_fitted" in m:
            rows.append({**base, "not_fitted": m["not_fitted"]})
            continue
        comps = {}
        for c in ("item", "rater", "residual"):
            lo, hi = m["variance_ci"][c]
            comps.update({f"var_{c}": m["variance"][c], f"var_{c}_low": lo, f"var_{c}_high": hi})
        for d in m["differences"]:
            rows.append({**base, **comps, **{k: d[k] for k in ("a", "b", "estimate", "se", "ci_low", "ci_high", "p")},
                         "not_fitted": None})
    return pd.DataFrame(rows, columns=MIXED_MODEL_COLUMNS)


def agreement(ratings: pd.DataFrame | Analysis, config: Any = None, responses: Any = None, *,
              seed: int | None = None) -> pd.DataFrame:
    """Agreement per aspect, pooled ("all systems") and per system: Krippendorff's alpha (ordinal,
    interval), leave-one-out Spearman, exact and within-one agreement, units (``agreement.csv``)."""
    an = analysis(ratings, config, responses, seed=seed)
    return pd.DataFrame([{k: g[k] for k in AGREEMENT_COLUMNS} for g in an.agreement], columns=AGREEMENT_COLUMNS)


WORKER_COLUMNS = ["worker_id", "assignments", "rejected_assignments", "rating_rows", "rows_used",
                  "attention_checks", "attention_passed", "median_work_time_s", "excluded", "reason"]


def workers(ratings: pd.DataFrame | Analysis, config: Any = None, responses: Any = None, *,
            seed: int | None = None) -> pd.DataFrame:
    """One row per worker: assignments (and rejected ones), rating rows read and used, attention checks
    met and passed, median work time, and whether (and why) the worker was excluded (``workers.csv``).
    The summary figures (hourly pay, cost) are in ``analysis(df).workers``."""
    an = analysis(ratings, config, responses, seed=seed)
    return pd.DataFrame(an.worker_table, columns=WORKER_COLUMNS)


def frame_csv(df: pd.DataFrame, float_format: str | None = None) -> str:
    """A table DataFrame as the report's CSV text: NaN as ``nan``, a missing string as an empty cell,
    floats in full (or ``float_format``, e.g. ``"%.6g"``)."""
    df = df.copy()
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c].dtype) and df[c].isna().any():
            df[c] = df[c].astype(object).where(df[c].notna(), "")
    return df.to_csv(index=False, lineterminator="\n", float_format=float_format, na_rep="nan")


__all__ = ["load_ratings", "analysis", "table2", "table3", "comparisons", "mixed_models", "agreement", "workers",
           "read_source"]
