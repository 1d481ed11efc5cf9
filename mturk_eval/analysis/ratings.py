"""Ratings in the long format (docs/architecture.md section 6), loaded into columnar numpy arrays.

Three sources end up here: ``Ledger.ratings()`` (a list of dicts), a ``--ratings`` CSV/JSONL file, and
an MTurk batch results CSV (:func:`ratings_from_batch`, mapped to items through its ``Input.*``
columns and the responses file). All of them go through :func:`ratings_from_columns`, which checks
every row once, vectorised, and raises a one-line :class:`UserError` naming the file, line and field
of the first bad value. Strings are turned into integer codes with a dict (faster than ``np.unique``
on object arrays for a million rows) so that every later statistic is a ``np.bincount``.
"""
from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from mturk_eval.analysis.aspects import PAPER_ASPECTS, Aspect
from mturk_eval.config import ASPECTS, EVAL_SETS
from mturk_eval.errors import UserError, where
from mturk_eval.io import iter_jsonl, read_text
from mturk_eval.tasks.answers import SIMULATED_FIELD

REQUIRED_COLUMNS: tuple[str, ...] = ("item_id", "eval_set", "method", "model", "worker_id", "aspect", "score")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "persona_id", "assignment_id", "attention_check", "attention_passed", "simulated", "work_time_s", "status",
)
# Columns whose value must be the same on every row of one item.
ITEM_COLUMNS: tuple[str, ...] = ("eval_set", "method", "model", "persona_id")

_TRUE = {"1", "true", "True", "TRUE", "yes", 1, True, 1.0}
_FALSE = {"0", "false", "False", "FALSE", "no", 0, False, 0.0}
_EMPTY = {"", None}


@dataclass
class Ratings:
    """Columnar ratings: one entry per (assignment x item x aspect) row; strings as integer codes."""

    source: str
    item: np.ndarray          # int64 codes into item_ids
    item_ids: list[str]
    worker: np.ndarray        # codes into worker_ids
    worker_ids: list[str]
    assignment: np.ndarray    # codes into assignment_ids (worker+item when the column is absent)
    assignment_ids: list[str]
    aspect: np.ndarray        # int64 index into aspects
    score: np.ndarray         # int64, on the aspect's scale (1..5 by default)
    attention_check: np.ndarray   # bool: the row rates an attention-check item
    attention_passed: np.ndarray  # int8: 1 passed, 0 failed, -1 no check in the assignment
    simulated: np.ndarray         # bool
    work_time_s: np.ndarray       # float64, NaN when unknown
    status: np.ndarray            # codes into statuses
    statuses: list[str]
    # Per item (indexed by item code): codes into the vocabularies below.
    item_eval_set: np.ndarray
    eval_sets: list[str]
    item_method: np.ndarray
    methods: list[str]
    item_model: np.ndarray
    models: list[str]
    item_persona: np.ndarray
    personas: list[str]
    lines: np.ndarray             # the source line of each row (for messages)
    reward: np.ndarray | None = None  # dollars per assignment, per row (batch CSV only)
    aspects: tuple[Aspect, ...] = PAPER_ASPECTS  # the rated aspects, their scales and tables
    notes: list[str] = field(default_factory=list)  # what the reader resolved (the report's warnings)

    @property
    def aspect_names(self) -> list[str]:
        return [a.name for a in self.aspects]

    def __len__(self) -> int:
        return int(self.score.shape[0])


# --------------------------------------------------------------------------------------------------
# Building from columns


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while millions of small strings and lists are created: the
    objects are acyclic, and the collector's repeated passes over them cost a third of the load time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def small_pages():
    """Let numpy's large arrays use ordinary pages instead of asking the kernel for transparent huge
    pages (``madvise``), and restore the setting afterwards.

    Why: where the kernel compacts memory to find a huge page on the first touch (THP ``defrag`` set to
    ``madvise``, as on the development machine), the loader's and the statistics' fresh 32 MB arrays at
    4,000,000 rows cost 1-1.5 s of system time each phase (measured: read_ratings 0.9-1.7 s of system
    time with huge pages, 0.3-0.4 s without; analyze 0.7-1.2 s against 0.5 s). Every array here is
    written once and read a few times, so huge pages save nothing on TLB misses to make up for it.
    numpy offers the switch only as ``_set_madvise_hugepage`` (the ``NUMPY_MADVISE_HUGEPAGE`` environment
    variable is read once, at import); where a numpy lacks it, nothing changes."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            _set_madvise_hugepage = None
    if _set_madvise_hugepage is None:
        yield
        return
    previous = _set_madvise_hugepage(False)
    try:
        yield
    finally:
        _set_madvise_hugepage(previous)


def _glibc() -> Any:
    """The process's C library through ctypes where it is glibc (``mallopt``, ``malloc_trim``), else None."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)     # the symbols already loaded: the C library Python runs on
    except OSError:
        return None
    return libc if all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")) else None


@contextlib.contextmanager
def kept_memory():
    """Let glibc's malloc keep the memory numpy frees for the next arrays, and give it back afterwards.

    Why: glibc serves each array above 128 KiB-32 MiB with its own ``mmap`` and unmaps it when freed, so
    every fresh 32 MB array of the report at 4,000,000 rows is 8,000 new page faults, the kernel zeroing
    each page again; on the development machine (a virtual machine) page faults are most of the report's
    1.6-2.2 s of system time. With the mmap threshold raised to 1 GiB (the heap serves them) and the trim
    threshold too (freed memory stays with the process), the report takes about 90,000 page faults fewer
    (450,000-465,000 against 540,000-575,000) and 0.2-0.8 s less system time (docs/benchmarks.md), for
    100-150 MB more peak memory. Afterwards both thresholds are glibc's initial 128 KiB and the free
    memory is returned (``malloc_trim``). Elsewhere (musl, macOS, Windows) nothing changes.

    Process-wide, and not quite undone: once a threshold is set, glibc stops moving its mmap threshold by
    itself for the rest of the process. So the ``report`` verb uses it (its process ends with the report:
    ``mturk_eval/cli/report.py``); :func:`mturk_eval.analysis.report.build_report` called from a notebook
    leaves the notebook's malloc alone."""
    libc = _glibc()
    if libc is None:
        yield
        return
    m_trim_threshold, m_mmap_threshold, initial = -1, -3, 128 * 1024
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    try:
        yield
    finally:
        libc.mallopt(m_mmap_threshold, initial)
        libc.mallopt(m_trim_threshold, initial)
        libc.malloc_trim(0)


def _factorize_dict(values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    # dict.fromkeys and map(d.__getitem__) run in C: ~10x faster than a generator for 1e6 values.
    keys = dict.fromkeys(values)
    d = dict(zip(keys, range(len(keys))))
    return np.fromiter(map(d.__getitem__, values), dtype=np.int64, count=len(values)), list(keys)


def _factorize_hash(values: list[Any]) -> tuple[np.ndarray, list[Any]] | None:
    """Codes via Python's 64-bit ``hash`` and ``np.unique``: for columns of many distinct values (a
    million assignment ids), where filling a dict costs seconds. Every value is then compared with its
    code's representative, so a hash collision is detected (``None``: use the dict) rather than trusted."""
    n = len(values)
    h = np.fromiter(map(hash, values), dtype=np.int64, count=n)
    _, first, codes = np.unique(h, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # codes in order of first appearance, as the dict gives
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    codes = rank[codes.reshape(-1)]
    vocab = [values[i] for i in first[order].tolist()]
    if not all(map(operator.eq, values, map(vocab.__getitem__, codes.tolist()))):
        return None
    return codes, vocab


def _py(v: Any) -> Any:
    """A pandas/numpy scalar as a plain Python value, missing values (NaN, NA, NaT) as ``None``."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, (list, dict)):
        return v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        return v
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class Coded:
    """A column already dictionary-encoded by pyarrow: integer codes (-1 missing) into ``vocab``.

    ``in_order``: the vocabulary is in order of first appearance and every entry occurs, as pyarrow's
    CSV reader builds it (each block's dictionary in order of appearance; blocks unified in file order),
    so no recoding is needed (``test_arrow_blocks_keep_first_appearance_order`` checks it)."""

    codes: np.ndarray
    vocab: list[Any]
    in_order: bool = False

    def __len__(self) -> int:
        return int(self.codes.shape[0])


def _factorize_series(values: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Codes in order of first appearance for a pandas column: a categorical (the CSV and Parquet
    readers give every string column as one) is recoded through its integer codes, in C."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cat = values.array
        codes, uniq = pd.factorize(np.asarray(cat.codes))
        cats = cat.categories.tolist()
        return codes.astype(np.int64, copy=False), [cats[c] if c >= 0 else None for c in uniq.tolist()]
    codes, uniq = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False), [_py(v) for v in list(uniq)]


def _factorize(values: list[Any] | pd.Series, source: str, name: str, lines: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Integer codes (in order of first appearance) and the distinct values of one column."""
    if isinstance(values, Coded):
        if values.in_order and not (values.codes < 0).any():
            return values.codes.astype(np.int64, copy=False), values.vocab
        codes, uniq = pd.factorize(values.codes)
        return codes.astype(np.int64, copy=False), [values.vocab[c] if c >= 0 else None for c in uniq.tolist()]
    if isinstance(values, pd.Series):
        try:
            return _factorize_series(values)
        except TypeError:  # unhashable cells (lists, dicts): find the first one
            values = values.tolist()
    try:
        if len(values) > 50_000 and len(set(values[:2000])) > 500:
            out = _factorize_hash(values)
            if out is not None:
                return out
        return _factorize_dict(values)
    except TypeError:
        for i, v in enumerate(values):
            try:
                hash(v)
            except TypeError:
                raise UserError(f"{where(source, int(lines[i]))}: {name}: expected a string, got {v!r}") from None
        raise


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _strings(codes: np.ndarray, vocab: list[Any], source: str, name: str, lines: np.ndarray,
             required: bool) -> list[str]:
    """Check a factorized string column: no missing values when required; vocabulary as strings."""
    all_str = set(map(type, vocab)) <= {str}
    if required:
        if all_str:
            # map() runs in C: a million distinct ids are checked in milliseconds when none is empty.
            any_empty = "" in vocab or any(map(str.isspace, vocab))
            empty = [i for i, v in enumerate(vocab) if not v or v.isspace()] if any_empty else []
        else:
            empty = [i for i, v in enumerate(vocab) if v is None or (isinstance(v, str) and (not v or v.isspace()))]
        if empty:
            i = _first_bad(np.isin(codes, empty))
            raise UserError(f"{where(source, int(lines[i]))}: {name}: expected a value, got an empty cell")
    if all_str:
        return vocab
    for i, v in enumerate(vocab):
        if isinstance(v, (dict, list, bool)) or (isinstance(v, float) and not math.isfinite(v)):
            j = _first_bad(codes == i)
            raise UserError(f"{where(source, int(lines[j]))}: {name}: expected a string, got {v!r}")
    return ["" if v is None else str(v) for v in vocab]


def _score_value(v: Any, low: int = 1, high: int = 5) -> int | None:
    """One cell as a score from low to high, or ``None`` when it is not one (JSON true/false are not)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (ValueError, TypeError):
        return None
    return int(x) if math.isfinite(x) and low <= x <= high and x == round(x) else None


def _scores(values: list[Any] | pd.Series | Coded, source: str, lines: np.ndarray, low: int = 1,
            high: int = 5) -> np.ndarray:
    if isinstance(values, (pd.Series, Coded)):
        if isinstance(values, pd.Series) and pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
            arr = values.to_numpy(dtype=np.int64)
            ok = (arr >= low) & (arr <= high)
            if not ok.all():
                i = _first_bad(~ok)
                raise UserError(f"{where(source, int(lines[i]))}: score: expected an integer from {low} to {high}, "
                                f"got {int(arr[i])!r}")
            return arr
        # Strings (CSV) or anything else: check each distinct value once.
        codes, vocab = _factorize(values, source, "score", lines)
        table = np.empty(len(vocab), dtype=np.int64)
        for k, v in enumerate(vocab):
            x = _score_value(v, low, high)
            if x is None:
                i = _first_bad(codes == k)
                got = "an empty cell" if v is None else repr(v)
                raise UserError(f"{where(source, int(lines[i]))}: score: expected an integer from {low} to {high}, "
                                f"got {got}")
            table[k] = x
        return table[codes]

    def bad(i: int) -> UserError:
        return UserError(
            f"{where(source, int(lines[i]))}: score: expected an integer from {low} to {high}, got {values[i]!r}"
        )

    try:
        arr = np.array(values, dtype=np.float64)
    except (ValueError, TypeError):
        for i, v in enumerate(values):
            if isinstance(v, bool):
                raise bad(i) from None
            try:
                float(v)
            except (ValueError, TypeError):
                raise bad(i) from None
        raise
    ok = np.isfinite(arr) & (arr >= low) & (arr <= high) & (arr == np.round(arr))
    if bool in set(map(type, values)):  # JSON true/false would pass as 1/0
        ok &= np.fromiter((type(v) is not bool for v in values), dtype=bool, count=len(values))
    if not ok.all():
        raise bad(_first_bad(~ok))
    return arr.astype(np.int64)


def _flags(values: list[Any] | None, n: int, source: str, name: str, lines: np.ndarray,
           allow_empty: bool) -> np.ndarray:
    """0/1 columns as int8 (-1 where empty and ``allow_empty``)."""
    if values is None:
        return np.full(n, -1 if allow_empty else 0, dtype=np.int8)
    codes, vocab = _factorize(values, source, name, lines)
    table = np.empty(len(vocab), dtype=np.int8)
    for i, v in enumerate(vocab):
        if v in _TRUE:
            table[i] = 1
        elif v in _FALSE:
            table[i] = 0
        elif v in _EMPTY:
            table[i] = -1 if allow_empty else 0
        else:
            j = _first_bad(codes == i)
            expected = "0, 1 or empty" if allow_empty else "0 or 1"
            raise UserError(f"{where(source, int(lines[j]))}: {name}: expected {expected}, got {v!r}")
    return table[codes]


def _floats(values: list[Any] | pd.Series | None, n: int, source: str, name: str, lines: np.ndarray) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    if isinstance(values, (pd.Series, Coded)):
        if isinstance(values, pd.Series) and pd.api.types.is_numeric_dtype(values.dtype) \
                and not pd.api.types.is_bool_dtype(values.dtype):
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            codes, vocab = _factorize(values, source, name, lines)
            table = np.empty(len(vocab))
            for k, v in enumerate(vocab):
                try:
                    table[k] = np.nan if v in _EMPTY else float(v)
                except (ValueError, TypeError):
                    i = _first_bad(codes == k)
                    raise UserError(f"{where(source, int(lines[i]))}: {name}: expected a number, got {v!r}") from None
            arr = table[codes]
        bad = arr < 0
        if bad.any():
            i = _first_bad(bad)
            got = vocab[codes[i]] if isinstance(values, Coded) or not isinstance(values, pd.Series) else _py(values.iloc[i])
            raise UserError(f"{where(source, int(lines[i]))}: {name}: expected a number >= 0, got {got!r}")
        return arr
    try:
        arr = np.array([np.nan if v in _EMPTY else v for v in values], dtype=np.float64)
    except (ValueError, TypeError):
        for i, v in enumerate(values):
            try:
                if v not in _EMPTY:
                    float(v)
            except (ValueError, TypeError):
                raise UserError(f"{where(source, int(lines[i]))}: {name}: expected a number, got {v!r}") from None
        raise
    bad = arr < 0
    if bad.any():
        i = _first_bad(bad)
        raise UserError(f"{where(source, int(lines[i]))}: {name}: expected a number >= 0, got {values[i]!r}")
    return arr


def ratings_from_columns(
    cols: dict[str, list[Any]],
    source: str,
    lines: Iterable[int] | None = None,
    reward: list[Any] | None = None,
    aspects: tuple[Aspect, ...] | None = None,
) -> Ratings:
    """Check and encode long-format columns (each a list of one value per row).

    Errors (one line each): a missing required column, an empty required cell, a score that is not an
    integer from 1 to 5, an unknown aspect, a bad 0/1 flag, an item whose eval_set / method / model /
    persona_id differs between rows.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise UserError(
            f"{where(source, 1)}: {missing[0]}: expected the columns {', '.join(REQUIRED_COLUMNS)}, "
            f"missing {', '.join(missing)}"
        )
    n = len(cols["item_id"])
    line_arr = np.arange(2, n + 2) if lines is None else np.asarray(list(lines), dtype=np.int64)
    if n == 0:
        raise UserError(f"{source}: expected at least one rating row, got none")

    item, item_vocab = _factorize(cols["item_id"], source, "item_id", line_arr)
    item_ids = _strings(item, item_vocab, source, "item_id", line_arr, True)
    worker, wv = _factorize(cols["worker_id"], source, "worker_id", line_arr)
    worker_ids = _strings(worker, wv, source, "worker_id", line_arr, True)

    aspects = PAPER_ASPECTS if aspects is None else tuple(aspects)
    names = [a.name for a in aspects]
    asp_codes, asp_vocab = _factorize(cols["aspect"], source, "aspect", line_arr)
    asp_table = np.empty(len(asp_vocab), dtype=np.int64)
    for i, v in enumerate(asp_vocab):
        name = v.strip().lower() if isinstance(v, str) else v
        if name not in names:
            j = _first_bad(asp_codes == i)
            raise UserError(
                f"{where(source, int(line_arr[j]))}: aspect: expected one of {', '.join(names)}, got {v!r}"
            )
        asp_table[i] = names.index(name)
    aspect = asp_table[asp_codes]
    lows = np.array([a.low for a in aspects])
    highs = np.array([a.high for a in aspects])
    score = _scores(cols["score"], source, line_arr, int(lows.min()), int(highs.max()))
    off = (score < lows[aspect]) | (score > highs[aspect])
    if off.any():  # aspects with different scales: each score on its own aspect's
        j = _first_bad(off)
        a = aspects[int(aspect[j])]
        raise UserError(f"{where(source, int(line_arr[j]))}: score: expected an integer from {a.low} to {a.high} "
                        f"({a.name}'s scale), got {int(score[j])!r}")

    if cols.get("assignment_id") is not None:
        assignment, av = _factorize(cols["assignment_id"], source, "assignment_id", line_arr)
        assignment_ids = _strings(assignment, av, source, "assignment_id", line_arr, True)
    else:
        # No assignment column: each (worker, item) pair is one assignment.
        key = worker * len(item_ids) + item
        uniq, assignment = np.unique(key, return_inverse=True)
        assignment_ids = [f"{worker_ids[k // len(item_ids)]}:{item_ids[k % len(item_ids)]}" for k in uniq.tolist()]

    # First row of each item, then every item-level column must agree with it.
    first = np.empty(len(item_ids), dtype=np.int64)
    first[item[::-1]] = np.arange(n - 1, -1, -1)
    per_item: dict[str, tuple[np.ndarray, list[str]]] = {}
    for name in ITEM_COLUMNS:
        values = cols.get(name)
        if values is None:
            per_item[name] = (np.zeros(len(item_ids), dtype=np.int64), [""])
            continue
        codes, vocab = _factorize(values, source, name, line_arr)
        strs = _strings(codes, vocab, source, name, line_arr, name in REQUIRED_COLUMNS)
        item_code = codes[first]
        if len(vocab) == 1:      # one value in the whole file (one model, one persona): nothing can differ
            per_item[name] = (item_code, strs)
            continue
        diff = codes != item_code[item]
        if diff.any():
            j = _first_bad(diff)
            k = int(first[item[j]])
            raise UserError(
                f"{where(source, int(line_arr[j]))}: {name}: expected {strs[item_code[item[j]]]!r} for item "
                f"{item_ids[item[j]]!r} as on line {int(line_arr[k])}, got {strs[codes[j]]!r}"
            )
        per_item[name] = (item_code, strs)

    if cols.get("status") is not None:
        status, sv = _factorize(cols["status"], source, "status", line_arr)
        statuses = _strings(status, sv, source, "status", line_arr, False)
    else:
        status, statuses = np.zeros(n, dtype=np.int64), [""]

    rew = None
    if reward is not None:
        rew = _floats(reward, n, source, "Reward", line_arr)

    return Ratings(
        source=source,
        item=item, item_ids=item_ids, worker=worker, worker_ids=worker_ids,
        assignment=assignment, assignment_ids=assignment_ids,
        aspect=aspect, score=score,
        attention_check=_flags(cols.get("attention_check"), n, source, "attention_check", line_arr, True) == 1,
        attention_passed=_flags(cols.get("attention_passed"), n, source, "attention_passed", line_arr, True),
        simulated=_flags(cols.get("simulated"), n, source, "simulated", line_arr, True) == 1,
        work_time_s=_floats(cols.get("work_time_s"), n, source, "work_time_s", line_arr),
        status=status, statuses=statuses,
        item_eval_set=per_item["eval_set"][0], eval_sets=per_item["eval_set"][1],
        item_method=per_item["method"][0], methods=per_item["method"][1],
        item_model=per_item["model"][0], models=per_item["model"][1],
        item_persona=per_item["persona_id"][0], personas=per_item["persona_id"][1],
        lines=line_arr,
        reward=rew,
        aspects=aspects,
        notes=_reader_notes(asp_codes, asp_vocab, names, item_ids, worker_ids),
    )


def _padded_ids(ids: list[str]) -> list[str]:
    """The ids that begin or end with white space. One search over the joined ids (in C) answers the usual
    case, none; only then is each id looked at."""
    import re

    if not re.search(r"\x00\s|\s\x00", "\x00" + "\x00".join(ids) + "\x00"):
        return []
    return [i for i in ids if i != i.strip()]


def _reader_notes(asp_codes: np.ndarray, asp_vocab: list[Any], names: list[str], item_ids: list[str],
                  worker_ids: list[str]) -> list[str]:
    """Counted warnings for what the long-format reader resolved on its own: aspects spelled otherwise
    than their name (read as it), and item or worker ids with surrounding white space (kept as written)."""
    out = []
    respelled = [i for i, v in enumerate(asp_vocab) if v not in names]
    if respelled:
        per = np.bincount(asp_codes, minlength=len(asp_vocab))
        ex = ", ".join(f"{asp_vocab[i]!r} as {asp_vocab[i].strip().lower()}" for i in respelled[:4])
        out.append(f"{int(per[respelled].sum())} rating row(s) spell the aspect otherwise than its name ({ex}); "
                   "read as the named aspect.")
    for what, ids in (("item", item_ids), ("worker", worker_ids)):
        padded = _padded_ids(ids)
        if padded:
            known = set(ids)
            also = sum(p.strip() in known for p in padded)
            # No worker id in the text: the report pseudonymises raters after reading (mturk_eval.privacy).
            example = f" (e.g. {padded[0]!r})" if what == "item" else ""
            out.append(f"{len(padded)} {what} id(s) begin or end with white space{example}; kept as written, so "
                       f"they are other {what}s than the same ids without it"
                       + (f" ({also} of them also occur without it)." if also else "."))
    return out


def _ignored_columns(names: Iterable[Any], also_read: tuple[str, ...] = ()) -> list[str]:
    """A counted warning for the columns a long-format reader did not read (a misspelt ``simulate`` would
    otherwise leave every rating unflagged without a word)."""
    known = {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *also_read}
    extra = [str(n) for n in dict.fromkeys(names) if str(n) not in known]
    if not extra:
        return []
    shown = ", ".join(repr(x) for x in extra[:6]) + (", ..." if len(extra) > 6 else "")
    return [f"{len(extra)} column(s) not in the long format were ignored ({shown}); it reads "
            f"{', '.join((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *also_read))}."]


def ratings_from_records(records: list[dict[str, Any]], source: str, lines: Iterable[int] | None = None,
                         aspects: tuple[Aspect, ...] | None = None) -> Ratings:
    """Long-format rows as dicts (``Ledger.ratings()``, JSONL) -> :class:`Ratings`."""
    if not records:
        raise UserError(f"{source}: expected at least one rating row, got none")
    keys: dict[str, None] = {}
    for k in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
        keys[k] = None
    present = {k for r in records[:1000] for k in r} | set(records[-1])
    cols: dict[str, list[Any]] = {}
    for k in keys:
        if k in REQUIRED_COLUMNS or k in present or any(k in r for r in records):
            cols[k] = [r.get(k) for r in records]
    line_list = list(lines) if lines is not None else list(range(1, len(records) + 1))
    for k in REQUIRED_COLUMNS:
        if None in cols[k]:
            i = cols[k].index(None)
            got = "null" if k in records[i] else "no such key"
            raise UserError(f"{where(source, line_list[i])}: {k}: expected a value, got {got}")
    r = ratings_from_columns(cols, source, line_list, aspects=aspects)
    r.notes.extend(_ignored_columns(k for rec in (*records[:1000], records[-1]) for k in rec))
    return r


def read_ratings(path: str | os.PathLike, aspects: tuple[Aspect, ...] | None = None) -> Ratings:
    """Read a long-format ratings file: ``.jsonl`` (one object a line), ``.parquet``, or CSV with a header.
    ``aspects``: the study's aspects and scales (default the paper's four on 1-5)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        with small_pages():
            return read_ratings_parquet(path, aspects)
    with _gc_paused(), small_pages():
        return _read_ratings(path, aspects)


ARROW_BLOCK = 16 << 20  # bytes per pyarrow CSV block: fewer dictionaries to unify than the 1 MB default
ENCODED_AFTER = ("assignment_id",)  # read as plain strings and dictionary-encoded whole (_read_csv_arrow)


def _read_csv_arrow(path: Path) -> dict[str, pd.Series] | None:
    """A long-format CSV read by pyarrow's multithreaded reader, every column a categorical of strings
    (cells exactly as written, empty cells as ``""``); ``None`` whenever the careful reader below must
    decide: a header it should check, blank lines (which pyarrow skips, and the line numbers in
    messages must stay right), a ragged row, bytes that are not UTF-8."""

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    try:
        with open(path, "rb") as fh:
            first = fh.readline()
    except OSError:
        return None
    if not first.endswith(b"\n"):     # empty, or a single line
        return None
    try:
        head = first[:-1].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        return None
    try:
        header = [h.strip() for h in next(csv.reader([head]))]
    except (csv.Error, StopIteration):
        return None
    if not all(header) or len(set(header)) != len(header):
        return None
    # Every column dictionary-encoded by the reader (each block its own dictionary, unified below), but
    # the submission ids, nearly all distinct (a million in 4e6 rows): the reader's per-block dictionaries
    # of them, and their unification, cost 0.4-0.6 s more than one dictionary_encode of the whole
    # column, whose chunks then share one dictionary, in order of first appearance.
    types = {h: pa.string() if h in ENCODED_AFTER else pa.dictionary(pa.int32(), pa.string()) for h in header}
    try:
        # The file is mapped, not read into memory (a copy of a 300 MB file cost 0.15 s and its size in
        # peak memory), and mapped once: the line count and pyarrow's threads read the same pages.
        with pa.memory_map(str(path)) as source:
            data = source.read_buffer()
            # One physical line per row, or the line numbers in messages would be wrong: pyarrow skips
            # blank lines, so compare the rows it read with the line breaks, counted by numpy a block at
            # a time (bytes.count of each block's copy took 4-5 times as long).
            view = np.frombuffer(data, dtype=np.uint8)
            breaks = sum(int(np.count_nonzero(view[i:i + ARROW_BLOCK] == 10)) for i in range(0, view.size, ARROW_BLOCK))
            breaks += int(view[-1]) != 10
            del view
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=ARROW_BLOCK),
                parse_options=pacsv.ParseOptions(newlines_in_values=False),
                # UTF-8 is checked below, once per distinct value, not in every cell (8% of the parse).
                convert_options=pacsv.ConvertOptions(column_types=types, check_utf8=False,
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
        if table.num_rows == 0 or table.num_rows + 1 != breaks:
            return None
        table = table.unify_dictionaries()
        for i, name in enumerate(table.column_names):
            if name in ENCODED_AFTER:
                col = pc.dictionary_encode(table.column(i))
                if not all(c.dictionary.equals(col.chunk(0).dictionary) for c in col.chunks):
                    col = pa.table([col], names=[name]).unify_dictionaries().column(0)  # not shared after all
                table = table.set_column(i, name, col)
        for col in table.columns:    # one dictionary per column now, holding every value of the column
            if col.num_chunks:
                col.chunk(0).dictionary.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError):
        return None
    return _arrow_columns(table, in_order=True)


def _arrow_columns(table, in_order: bool = False) -> dict[str, pd.Series | Coded]:
    """Each dictionary-encoded column of an Arrow table as :class:`Coded`, straight from its indices and
    dictionary (``Table.to_pandas`` takes several times longer on millions of rows); others as pandas."""
    import pyarrow as pa

    out: dict[str, pd.Series | Coded] = {}
    for name in table.column_names:
        col = table.column(name)
        if not pa.types.is_dictionary(col.type):
            out[name] = col.to_pandas()
            continue
        chunks = col.chunks
        if not chunks:
            out[name] = Coded(np.zeros(0, dtype=np.int64), [])
            continue
        # int64 in the one copy that joins the chunks (every later stage computes with int64 codes).
        codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in chunks], dtype=np.int64)
        nulls = col.null_count
        if nulls:
            codes = np.where(pa.chunked_array([c.is_null() for c in chunks]).to_numpy(zero_copy_only=False), -1, codes)
        out[name] = Coded(codes, chunks[0].dictionary.to_pylist(), in_order=in_order)
    return out


# Parquet column types each long-format column accepts (checked before any value).
_PARQUET_KINDS: dict[str, tuple[str, Any]] = {}


def _parquet_kinds() -> dict[str, tuple[str, Any]]:
    import pyarrow as pa

    if not _PARQUET_KINDS:
        def is_str(t):
            return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
                    or (pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type)
                                                       or pa.types.is_large_string(t.value_type))))

        def is_flag(t):
            return pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_null(t)

        def is_num(t):
            return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)

        for c in ("item_id", "eval_set", "method", "model", "worker_id", "aspect", "persona_id", "assignment_id",
                  "status"):
            _PARQUET_KINDS[c] = ("strings", is_str)
        _PARQUET_KINDS["score"] = ("integers", pa.types.is_integer)
        for c in ("attention_check", "attention_passed", "simulated"):
            _PARQUET_KINDS[c] = ("booleans or 0/1 integers", is_flag)
        for c in ("work_time_s", "reward"):
            _PARQUET_KINDS[c] = ("numbers", is_num)
    return _PARQUET_KINDS


def read_ratings_parquet(path: str | os.PathLike, aspects: tuple[Aspect, ...] | None = None) -> Ratings:
    """Long-format ratings from Parquet (pyarrow). Column types are checked first (``score`` integers,
    string columns strings, flags booleans or 0/1, ``work_time_s`` numbers); then every value as for a
    CSV, with messages naming the row (``file.parquet:3`` is the third row)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:120]})") from None
    if aspects is None:  # the scales a report's ratings.parquet was written with (pandas keeps df.attrs)
        try:
            attrs = json.loads((table.schema.metadata or {}).get(b"PANDAS_ATTRS", b"{}"))
        except ValueError:
            attrs = {}
        if isinstance(attrs, dict) and attrs.get("aspects"):
            from mturk_eval.analysis.aspects import check_aspects

            aspects = check_aspects(attrs["aspects"], f"{path}: PANDAS_ATTRS aspects")
    kinds = _parquet_kinds()
    for f in table.schema:
        if f.name in kinds and not kinds[f.name][1](f.type):
            raise UserError(f"{path}: {f.name}: expected a Parquet column of {kinds[f.name][0]}, got {f.type}")
    ignored = _ignored_columns(table.column_names, ("reward",))
    table = table.select([c for c in table.column_names if c in kinds])
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if kinds[name][0] == "strings" and not pa.types.is_dictionary(col.type) and not pa.types.is_null(col.type):
            table = table.set_column(i, name, pc.dictionary_encode(col))
    cols = _arrow_columns(table.unify_dictionaries())
    reward = cols.pop("reward", None)
    if table.num_rows == 0:
        raise UserError(f"{path}: expected at least one rating row, got none")
    r = ratings_from_columns(cols, str(path), np.arange(1, table.num_rows + 1), reward=reward, aspects=aspects)
    r.notes.extend(ignored)
    return r


def ratings_from_frame(df: pd.DataFrame, source: str = "DataFrame",
                       aspects: tuple[Aspect, ...] | None = None) -> Ratings:
    """Check and encode a long-format DataFrame. Messages name ``source`` and the row: the index value
    when the index is named ``line`` (as :func:`ratings_frame` writes it), else the 1-based position."""
    if df.index.name == "line" and pd.api.types.is_integer_dtype(df.index.dtype):
        lines = df.index.to_numpy(dtype=np.int64)
    else:
        lines = np.arange(1, len(df) + 1)
    if len(df) == 0:
        raise UserError(f"{source}: expected at least one rating row, got none")
    cols = {str(c): df[c] for c in df.columns if str(c) in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
    reward = df["reward"] if "reward" in df.columns else None
    if aspects is None and df.attrs.get("aspects"):
        from mturk_eval.analysis.aspects import check_aspects

        aspects = check_aspects(df.attrs["aspects"], f"{source}: attrs['aspects']")
    r = ratings_from_columns(cols, source, lines, reward=reward, aspects=aspects)
    r.notes.extend(_ignored_columns(df.columns, ("reward",)))
    return r


def _categorical(codes: np.ndarray, vocab: list[str]) -> pd.Categorical:
    cats = pd.Index(vocab, dtype=object)
    if not cats.is_unique:  # e.g. None and "" both became ""
        inv, uniq = pd.factorize(cats)
        codes, cats = inv[codes], pd.Index(uniq, dtype=object)
    return pd.Categorical.from_codes(codes, categories=cats.astype(str))


def _columns(r: Ratings, attention_passed: Any) -> list[tuple[str, np.ndarray | None, list | None, Any]]:
    """The long format's columns in order, as (name, codes, vocabulary, None) for coded columns and
    (name, None, None, values) for plain ones; ``attention_passed`` is the writer's own nullable array."""
    item = r.item
    coded = [("item_id", item, r.item_ids), ("eval_set", r.item_eval_set[item], r.eval_sets),
             ("method", r.item_method[item], r.methods), ("model", r.item_model[item], r.models),
             ("persona_id", r.item_persona[item], r.personas), ("worker_id", r.worker, r.worker_ids),
             ("assignment_id", r.assignment, r.assignment_ids), ("aspect", r.aspect, r.aspect_names)]
    cols: list[tuple[str, Any, Any, Any]] = [(n, c, v, None) for n, c, v in coded]
    cols += [("score", None, None, r.score), ("attention_check", None, None, r.attention_check),
             ("attention_passed", None, None, attention_passed), ("simulated", None, None, r.simulated),
             ("work_time_s", None, None, r.work_time_s), ("status", r.status, r.statuses, None)]
    if r.reward is not None:
        cols.append(("reward", None, None, r.reward))
    return cols


def _aspect_attrs(r: Ratings) -> dict[str, Any]:
    """A study's own aspects and scales, carried with a frame (``attrs``) or a Parquet file."""
    return {"aspects": [{"name": a.name, "scale": [a.low, a.high], "table2": a.table2, "table3": a.table3}
                        for a in r.aspects]}


def ratings_frame(r: Ratings) -> pd.DataFrame:
    """Checked ratings as a long-format DataFrame (docs/architecture.md section 6): string columns as
    categoricals, ``score`` int64, ``attention_check``/``simulated`` bool, ``attention_passed`` a
    nullable boolean (missing: no check in the assignment), ``work_time_s`` float (NaN unknown),
    ``reward`` (batch files only). The index, named ``line``, is each row's line in the source."""
    passed = pd.arrays.BooleanArray(r.attention_passed == 1, r.attention_passed < 0)
    data: dict[str, Any] = {name: (_categorical(codes, vocab) if vocab is not None else values)
                            for name, codes, vocab, values in _columns(r, passed)}
    df = pd.DataFrame(data, index=pd.Index(r.lines, name="line"))
    if r.aspects != PAPER_ASPECTS:  # so that ratings_from_frame (and ratings.parquet) keep the scales
        df.attrs = _aspect_attrs(r)
    return df


def ratings_parquet(r: Ratings) -> bytes:
    """The ratings as a Parquet file's bytes (the report's ``ratings.parquet``): the same columns as
    :func:`ratings_frame`, built straight from the integer codes as Arrow dictionary columns (no pandas
    objects), zstd-compressed, without column statistics; a study's own aspects and scales ride in the
    ``PANDAS_ATTRS`` metadata that pandas restores as ``df.attrs``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def coded(codes: np.ndarray, vocab: list[str]) -> pa.DictionaryArray:
        if len(set(vocab)) != len(vocab):  # e.g. None and "" both became ""
            inv, uniq = pd.factorize(np.asarray(vocab, dtype=object))
            codes, vocab = inv[codes], list(uniq)
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False)),
                                              pa.array(vocab, type=pa.string()))

    passed = pa.array(r.attention_passed == 1, mask=r.attention_passed < 0)
    cols: dict[str, Any] = {name: (coded(codes, vocab) if vocab is not None else
                                   values if isinstance(values, pa.Array) else pa.array(values))
                            for name, codes, vocab, values in _columns(r, passed)}
    table = pa.table(cols)
    if r.aspects != PAPER_ASPECTS:
        table = table.replace_schema_metadata({b"PANDAS_ATTRS": json.dumps(_aspect_attrs(r)).encode()})
    sink = pa.BufferOutputStream()
    # Every column is stored dictionary-encoded but the submission ids: nearly every one is distinct (a
    # million in 4e6 rows), so its dictionary outgrows Parquet's dictionary page, the writer falls back to
    # plain values after hashing them all (0.8 of the 1.2 s the file took at 4e6 rows), and the file is
    # larger (8.7 against 5.4 MB). Read back, the column is the same dictionary column (the Arrow schema
    # stored in the file says so) with the same values.
    pq.write_table(table, sink, compression="zstd", write_statistics=False,
                   use_dictionary=[c for c in table.column_names if c != "assignment_id"])
    return sink.getvalue().to_pybytes()


def _read_ratings(path: Path, aspects: tuple[Aspect, ...] | None = None) -> Ratings:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        recs, lines = [], []
        for lineno, obj in iter_jsonl(path):
            recs.append(obj)
            lines.append(lineno)
        return ratings_from_records(recs, str(path), lines, aspects)
    fast = _read_csv_arrow(path)
    if fast is not None:
        r = ratings_from_columns(fast, str(path), None, aspects=aspects)
        r.notes.extend(_ignored_columns(fast))
        return r
    # The careful way: exact messages for a bad header, blank lines, ragged rows and bad bytes.
    text = read_text(path, encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise UserError(f"{where(path, 1)}: header: expected the columns {', '.join(REQUIRED_COLUMNS)}, got an empty file") from None
    if not any(header):
        raise UserError(f"{where(path, 1)}: header: expected the columns {', '.join(REQUIRED_COLUMNS)}, got an empty line")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise UserError(f"{where(path, 1)}: header: column {dup!r} appears twice")
    try:
        body = list(reader)
    except csv.Error as exc:
        raise UserError(f"{where(path, reader.line_num)}: not valid CSV ({exc})") from None
    # Line numbers assume one physical line per row (long-format files have no multi-line cells).
    width = len(header)
    lines: np.ndarray | None = None
    if not all(body):  # blank lines: drop them, keep the line numbers of the others
        keep = [i for i, cells in enumerate(body) if cells]
        lines = np.array(keep, dtype=np.int64) + 2
        body = [body[i] for i in keep]
    if not body:
        raise UserError(f"{path}: expected at least one rating row, got none")
    if len(set(map(len, body))) != 1 or len(body[0]) != width:
        i = next(i for i, cells in enumerate(body) if len(cells) != width)
        line = int(lines[i]) if lines is not None else i + 2
        raise UserError(f"{where(path, line)}: row: expected {width} cells as in the header, got {len(body[i])}")
    columns = list(zip(*body))
    del body
    cols = {h: list(columns[j]) for j, h in enumerate(header)}
    r = ratings_from_columns(cols, str(path), lines, aspects=aspects)
    r.notes.extend(_ignored_columns(header))
    return r


def write_ratings_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write long-format rows as CSV (atomic); used by tests and for exporting ledger ratings."""
    from mturk_eval.io import atomic_write_text

    columns = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
    columns = [c for c in columns if c in REQUIRED_COLUMNS or any(c in r for r in rows)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    atomic_write_text(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------
# Responses file (for the batch CSV mapping, paired tests and automatic metrics)


@dataclass
class ResponseIndex:
    """item_id -> the responses.jsonl row's item fields (eval_set, method, model, persona_id, pair_id)."""

    path: str
    items: dict[str, dict[str, Any]]


def read_responses(path: str | os.PathLike) -> ResponseIndex:
    """Index a responses.jsonl (docs/architecture.md section 3) by item_id; checks the required keys."""
    path = Path(path)
    items: dict[str, dict[str, Any]] = {}
    need = ("item_id", "eval_set", "method", "model", "response")
    for lineno, obj in iter_jsonl(path):
        for k in need:
            if k not in obj:
                raise UserError(f"{where(path, lineno)}: {k}: expected a value, got no such key")
        if obj["eval_set"] not in EVAL_SETS:
            raise UserError(f"{where(path, lineno)}: eval_set: expected {' or '.join(EVAL_SETS)},"
                            f" got {obj['eval_set']!r}")
        iid = obj["item_id"]
        if not isinstance(iid, str) or not iid:
            raise UserError(f"{where(path, lineno)}: item_id: expected a non-empty string, got {iid!r}")
        if iid in items:
            raise UserError(f"{where(path, lineno)}: item_id: expected a unique id, got {iid!r} again")
        items[iid] = {
            "eval_set": obj["eval_set"], "method": obj["method"], "model": obj["model"],
            "persona_id": obj.get("persona_id"), "pair_id": obj.get("pair_id"),
        }
    return ResponseIndex(path=str(path), items=items)


# --------------------------------------------------------------------------------------------------
# MTurk batch results CSV -> ratings


def _answer_value(v: Any) -> Any:
    """crowd-form answers: a plain value, or ``{"3": true, "4": false}`` / ``{"on": true}`` objects."""
    if isinstance(v, dict):
        chosen = [k for k, on in v.items() if on is True]
        return chosen[0] if len(chosen) == 1 else None
    return v


def _parse_reward(text: str) -> float | None:
    t = text.strip().lstrip("$").replace("USD", "").strip()
    if not t:
        return None
    try:
        return float(t)
    except ValueError:
        return None


@dataclass
class BatchNotes:
    """What a batch reader (the toolkit's own layout or a mapping) resolves on its own while it reads the
    rows, counted for the report's warnings (:meth:`notes`)."""

    reject_cells: dict[str, int] = field(default_factory=dict)   # AssignmentStatus overridden -> rows
    bad_rewards: dict[str, int] = field(default_factory=dict)    # Reward cell not an amount -> rows
    empty_slots: int = 0
    conflicts: dict[str, set] = field(default_factory=dict)      # field -> items whose batch value differs

    def status(self, row: dict[str, str]) -> str:
        """The row's status: ``Rejected`` when its Reject cell is filled (the website's rejection column)."""
        status = row.get("AssignmentStatus", "").strip()
        if row.get("Reject", "").strip():
            if status.lower() != "rejected":
                self.reject_cells[status] = self.reject_cells.get(status, 0) + 1
            status = "Rejected"
        return status

    def reward(self, row: dict[str, str]) -> float | None:
        raw = row.get("Reward", "")
        value = _parse_reward(raw)
        if value is None and raw.strip():
            self.bad_rewards[raw.strip()] = self.bad_rewards.get(raw.strip(), 0) + 1
        return value

    def compare(self, item_id: str, field_name: str, batch_value: Any, responses_meta: dict[str, Any]) -> None:
        """Note an item whose batch value of ``field_name`` differs from the responses file's."""
        known = responses_meta.get(field_name)
        if known not in (None, "") and batch_value != known:
            self.conflicts.setdefault(field_name, set()).add(item_id)

    def notes(self, batch: Any) -> list[str]:
        out = []
        if self.reject_cells:
            ex = ", ".join(f"{k or 'empty'!s} ({v})" for k, v in sorted(self.reject_cells.items()))
            out.append(f"{sum(self.reject_cells.values())} batch row(s) have a filled Reject cell but another "
                       f"AssignmentStatus ({ex}); read as Rejected and excluded.")
        if self.bad_rewards:
            ex = ", ".join(repr(k) for k in list(self.bad_rewards)[:3])
            out.append(f"{sum(self.bad_rewards.values())} batch row(s) have a Reward that is not an amount ({ex}); "
                       "read as unknown (the worker figures use the other rows' reward, or hit.reward).")
        if self.empty_slots:
            out.append(f"{self.empty_slots} empty item slot(s) (no item id in a HIT with fewer items than slots) "
                       "were skipped.")
        for name, items in sorted(self.conflicts.items()):
            ex = ", ".join(repr(i) for i in sorted(items)[:3])
            out.append(f"{len(items)} item(s) have a {name} in the batch file other than the responses file's "
                       f"(e.g. {ex}); the batch file's was used.")
        if getattr(batch, "short_rows", 0):
            out.append(f"{batch.short_rows} batch row(s) are shorter than the header by more than the trailing "
                       "Approve/Reject cells; their missing cells were read as empty.")
        return out


def _not_our_layout(batch) -> str:
    """The tail of the message for a batch file in another layout: what it holds, and what to run."""
    answers = batch.answer_columns
    found = (", ".join(answers[:6]) + (f", ... ({len(answers)} in all)" if len(answers) > 6 else "")) if answers else "none"
    return (f"Answer columns found: {found}; not this toolkit's layout: describe it with --mapping FILE, "
            f"which `mturk-eval mapping suggest {batch.path}` starts for you")


def ratings_from_batch(batch, responses: ResponseIndex | None = None) -> Ratings:
    """Map an MTurk batch results CSV (:class:`~mturk_eval.analysis.batch_csv.BatchCSV`) to ratings.

    Slot ``k`` of a HIT is described by ``Input.i{k}_item_id`` (or ``Input.item_id`` for one-item HITs);
    its eval_set, method, model and persona_id come from ``Input.i{k}_<field>`` / ``Input.<field>``
    when present, otherwise from the responses file. Scores come from ``Answer.i{k}_{aspect}`` (or
    ``Answer.{aspect}`` for one-item HITs) or from the JSON ``Answer.taskAnswers`` column. An optional
    ``Input.i{k}_attention_check`` (JSON ``{"aspects": {"relevance": 2}}``) marks an attention check.
    Rejected assignments (AssignmentStatus ``Rejected``, or a filled ``Reject`` cell) keep status
    ``Rejected`` and are excluded by the report, which counts them.
    """
    path = batch.path
    cols = set(batch.columns)
    slots: list[tuple[int, str]] = []
    k = 0
    while f"Input.i{k}_item_id" in cols:
        slots.append((k, f"i{k}_"))
        k += 1
    if not slots:
        if "Input.item_id" in cols:
            slots = [(0, "")]
        else:
            raise UserError(
                f"{where(path, 1)}: Input.item_id: expected Input.item_id or Input.i0_item_id columns naming "
                f"the rated items, got none ({_not_our_layout(batch)})"
            )
    task_answers = "Answer.taskAnswers" in cols
    if not task_answers:
        for _, prefix in slots:
            for a in ASPECTS:
                names = [f"Answer.{prefix}{a}"] + ([f"Answer.i0_{a}"] if prefix == "" else [])
                if not any(nm in cols for nm in names):
                    raise UserError(
                        f"{where(path, 1)}: Answer.{prefix}{a}: expected an answer column for every aspect "
                        f"(or Answer.taskAnswers), got none ({_not_our_layout(batch)})"
                    )
    out: dict[str, list[Any]] = {c: [] for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
    lines: list[int] = []
    rewards: list[Any] = []
    seen = BatchNotes()
    for row, line in zip(batch.rows, batch.lines):
        answers: dict[str, Any] = {c[7:]: v for c, v in row.items() if c.startswith("Answer.")}
        if task_answers:
            raw = row.get("Answer.taskAnswers", "")
            try:
                parsed = json.loads(raw) if raw.strip() else [{}]
            except json.JSONDecodeError as exc:
                raise UserError(f"{where(path, line)}: Answer.taskAnswers: expected a JSON array, got {raw[:40]!r} ({exc.msg})") from None
            if isinstance(parsed, dict):
                parsed = [parsed]
            if not isinstance(parsed, list) or not parsed or not isinstance(parsed[0], dict):
                raise UserError(f"{where(path, line)}: Answer.taskAnswers: expected a JSON array of one object, got {raw[:40]!r}")
            answers.update({str(kk): _answer_value(v) for kk, v in parsed[0].items()})
        status = seen.status(row)
        reward = seen.reward(row)
        simulated = 1 if str(answers.get(SIMULATED_FIELD, "")).strip().lower() in ("1", "true") else 0  # JSON true too
        wt = row.get("WorkTimeInSeconds", "").strip()
        start = len(lines)
        checks: list[bool] = []
        for k, prefix in slots:
            iid = row.get(f"Input.{prefix}item_id", "").strip()
            if not iid:
                if prefix:
                    seen.empty_slots += 1
                    continue  # a HIT with fewer items than slots leaves the rest empty
                raise UserError(f"{where(path, line)}: Input.item_id: expected an item id, got an empty cell")
            meta: dict[str, Any] = {}
            known = responses.items.get(iid, {}) if responses is not None else {}
            meta.update(known)
            for f in ITEM_COLUMNS:
                v = row.get(f"Input.{prefix}{f}")
                if v is not None and v.strip():
                    meta[f] = v.strip()
                    if known:
                        seen.compare(iid, f, meta[f], known)
            for f in ("eval_set", "method", "model"):
                if not meta.get(f):
                    why = "the responses file has no such item" if responses is not None else "no --responses file was given"
                    raise UserError(
                        f"{where(path, line)}: Input.{prefix}{f}: expected the item's {f} (an Input column or the "
                        f"responses file), got none for item {iid!r} ({why})"
                    )
            check = row.get(f"Input.{prefix}attention_check", "").strip()
            if check:
                try:
                    spec = json.loads(check)
                    limits = spec.get("aspects", {}) if isinstance(spec, dict) else None
                    if not isinstance(limits, dict):
                        raise ValueError
                except (json.JSONDecodeError, ValueError, AttributeError):
                    raise UserError(
                        f"{where(path, line)}: Input.{prefix}attention_check: expected JSON like "
                        f'{{"aspects": {{"relevance": 2}}}}, got {check[:40]!r}'
                    ) from None
                # A limit on no aspect, or on one not rated, would let every answer pass: bad input.
                bad = [k for k, v in limits.items() if k not in ASPECTS or _score_value(v) is None]
                if bad or not limits:
                    got = f"{bad[0]!r}: {limits[bad[0]]!r}" if bad else "none"
                    raise UserError(
                        f"{where(path, line)}: Input.{prefix}attention_check: expected the highest passing score "
                        f"(1 to 5) of one or more of {', '.join(ASPECTS)}, got {got}"
                    )
            for a in ASPECTS:
                v = answers.get(f"{prefix}{a}")
                if v is None and prefix == "":
                    v = answers.get(f"i0_{a}")
                if v is None or (isinstance(v, str) and not v.strip()):
                    raise UserError(
                        f"{where(path, line)}: Answer.{prefix}{a}: expected a score from 1 to 5, got an empty answer"
                    )
                out["item_id"].append(iid)
                out["eval_set"].append(meta["eval_set"])
                out["method"].append(meta["method"])
                out["model"].append(meta["model"])
                out["persona_id"].append(meta.get("persona_id"))
                out["worker_id"].append(row.get("WorkerId", "").strip())
                out["assignment_id"].append(row.get("AssignmentId", "").strip())
                out["aspect"].append(a)
                out["score"].append(v.strip() if isinstance(v, str) else v)
                out["attention_check"].append(1 if check else 0)
                out["simulated"].append(simulated)
                out["work_time_s"].append(wt)
                out["status"].append(status)
                out["attention_passed"].append(None)
                rewards.append(reward)
                lines.append(line)
            if check:
                n = len(ASPECTS)
                try:
                    ok = all(float(out["score"][-n + ASPECTS.index(a)]) <= float(lim) for a, lim in limits.items())
                except (TypeError, ValueError):
                    ok = False  # the score itself is checked (and refused) with the others
                checks.append(ok)
        if checks:
            # The assignment's check result applies to every row of that assignment.
            passed = 1 if all(checks) else 0
            for j in range(start, len(lines)):
                out["attention_passed"][j] = passed
    if not lines:
        raise UserError(f"{path}: expected at least one assignment row, got none")
    r = ratings_from_columns(out, path, lines, reward=rewards)
    r.notes.extend(seen.notes(batch))
    return r
