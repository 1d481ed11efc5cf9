"""Automatic evaluation, the paper's Tables 1 and 6: distinct-1 and distinct-2 (Li et al. 2016).

distinct-N of a system = (number of distinct N-grams) / (total number of N-grams), counted over the whole
set of the system's responses (one pool, not a per-response average). N-grams never cross response
boundaries. Tokenisers: ``space`` (whitespace split, case kept), ``char`` (characters, whitespace
dropped: the usual choice for Japanese without a morphological analyser) and ``mecab`` (MeCab through
``fugashi`` with the ``unidic-lite`` dictionary: the ``ja`` extra, ``pip install 'mturk-eval[ja]'``).
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from mturk_eval.errors import UserError, where

TOKENIZERS = ("space", "char", "mecab")
NOTE = "distinct-N = distinct N-grams / all N-grams, counted over all of a system's responses (not averaged per response)"


def _mecab() -> Callable[[str], list[str]]:
    try:
        import fugashi
    except ImportError:
        raise UserError(
            "tokenizer mecab: fugashi is not installed; install the Japanese extra: pip install 'mturk-eval[ja]'"
        ) from None
    try:
        tagger = fugashi.Tagger()
    except RuntimeError as exc:
        raise UserError(f"tokenizer mecab: MeCab could not start ({exc}); install unidic-lite: pip install unidic-lite") from None
    return lambda text: [w.surface for w in tagger(text)]


def get_tokenizer(name: str) -> Callable[[str], list[str]]:
    if name == "space":
        return str.split
    if name == "char":
        return lambda text: [c for c in text if not c.isspace()]
    if name == "mecab":
        return _mecab()
    raise UserError(f"tokenizer: expected {' or '.join(TOKENIZERS)}, got {name!r}")


def ngram_counts(responses: Iterable[str], n: int, tokenize: Callable[[str], list[str]]) -> Counter:
    counts: Counter = Counter()
    for text in responses:
        toks = tokenize(text)
        counts.update(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return counts


def distinct_n(responses: list[str], n: int, tokenizer: str = "space") -> float | None:
    """distinct-N over the pooled responses; None (undefined) when they hold no N-gram at all."""
    if n < 1:
        raise ValueError("n must be >= 1")
    return _ratio(ngram_counts(responses, n, get_tokenizer(tokenizer)))


def _ratio(counts: Counter) -> float | None:
    total = sum(counts.values())
    return len(counts) / total if total else None


METHOD_LABELS = {
    "prompt_tuning": "Prompt-tuning",
    "finetune_none": "Fine-tuning (none)",
    "finetune_added": "Fine-tuning (added)",
    "reference": "Human reference",
}


@dataclass
class DistinctRow:
    model: str
    method: str
    responses: int
    distinct_1: float | None  # None: the responses hold no unigram (all empty), distinct-1 is undefined
    distinct_2: float | None  # None: no bigram (every response empty or one token long)


def read_responses(path: str | Path) -> list[dict]:
    from mturk_eval.io import iter_jsonl

    rows = []
    for lineno, row in iter_jsonl(path):
        for key in ("model", "method", "response"):
            if key not in row:
                raise UserError(f"{where(path, lineno)}: {key}: required key missing")
            if not isinstance(row[key], str):
                raise UserError(f"{where(path, lineno)}: {key}: expected a string, got {row[key]!r}")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: expected at least one response row, got none")
    return rows


def distinct_rows(responses: str | Path | list[dict], tokenizer: str = "space", reference: bool = True) -> list[DistinctRow]:
    """Table 1/6 rows: one per (model, method) over both eval sets, plus the human references (once per
    distinct eval pair) when the file carries them and ``reference`` is true."""
    rows = read_responses(responses) if isinstance(responses, (str, Path)) else responses
    tok = get_tokenizer(tokenizer)
    order = {m: i for i, m in enumerate(METHOD_LABELS)}
    groups: dict[tuple[str, str], list[str]] = {}
    refs: dict[tuple, str] = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"]), []).append(r["response"])
        if reference and isinstance(r.get("reference"), str):
            refs[(r.get("eval_set"), r.get("persona_id") if r.get("eval_set") == "persona" else None, r.get("pair_id"), r.get("utterance"))] = r["reference"]

    def row(model: str, method: str, texts: list[str]) -> DistinctRow:
        return DistinctRow(model, method, len(texts), _ratio(ngram_counts(texts, 1, tok)), _ratio(ngram_counts(texts, 2, tok)))

    out = [row(m, meth, t) for (m, meth), t in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][1]))]
    if refs:
        out.append(row("-", "reference", list(refs.values())))
    return out


def to_markdown(rows: list[DistinctRow], tokenizer: str = "space") -> str:
    lines = [
        f"Table 1/6: distinct-N ({tokenizer} tokens). {NOTE}.",
        "",
        "| Model | Method | Responses | distinct-1 | distinct-2 |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        label = METHOD_LABELS.get(r.method, r.method)
        lines.append(f"| {r.model} | {label} | {r.responses} | {_fmt(r.distinct_1, 3)} | {_fmt(r.distinct_2, 3)} |")
    if any(r.distinct_1 is None or r.distinct_2 is None for r in rows):
        lines += ["", f"{UNDEFINED_NOTE}."]
    return "\n".join(lines) + "\n"


UNDEFINED_NOTE = ("-: undefined, the system's responses hold no N-gram at all (every response empty, or for "
                  "distinct-2 at most one token long); not the same as 0 (every N-gram repeated)")


def _fmt(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def to_csv(rows: list[DistinctRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "method", "responses", "distinct_1", "distinct_2"])
    for r in rows:
        # undefined values are empty cells
        w.writerow([r.model, r.method, r.responses, "" if r.distinct_1 is None else f"{r.distinct_1:.6f}",
                    "" if r.distinct_2 is None else f"{r.distinct_2:.6f}"])
    return buf.getvalue()
