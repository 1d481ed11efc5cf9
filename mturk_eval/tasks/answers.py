"""Reading a rating form's answers (``{field: value}``, whatever platform brought them): the scores of
each slot's aspects (fields ``i{k}_{aspect}``, integers 1..5), the simulated-rater mark, and the
attention checks. The form's field names are the builder's (tasks/templates), so this lives with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mturk_eval.config import ASPECTS

SIMULATED_FIELD = "mturk_eval_simulated"
WORK_TIME_HEADER = "X-Mturk-Eval-Work-Time"   # a simulated rater's work time in seconds (simulated only)


def simulated_work_time(simulated_field: str | None, header: str | None) -> tuple[bool, float | None]:
    """(simulated?, work time) of a submitted form: the time header is read only from simulated raters.
    Raises ValueError when the header is not a number of seconds."""
    simulated = simulated_field == "1"
    if not (simulated and header):
        return simulated, None
    return simulated, float(header)


@dataclass
class ParsedAnswer:
    scores: dict[int, dict[str, int]] | None  # slot -> aspect -> 1..5; None when invalid
    error: str | None
    simulated: bool
    fields: dict[str, str]


def validate_scores(fields: dict[str, str], n_slots: int) -> tuple[dict[int, dict[str, int]] | None, str | None]:
    """Every ``i{k}_{aspect}`` for the HIT's slots present as an integer 1..5, else (None, reason)."""
    scores: dict[int, dict[str, int]] = {}
    problems = []
    for k in range(n_slots):
        scores[k] = {}
        for aspect in ASPECTS:
            name = f"i{k}_{aspect}"
            raw = fields.get(name)
            if raw is None or not raw.strip():
                problems.append(f"{name}: missing")
                continue
            try:
                value = int(raw.strip())
            except ValueError:
                problems.append(f"{name}: expected an integer 1..5, got {raw!r}")
                continue
            if not 1 <= value <= 5:
                problems.append(f"{name}: expected an integer 1..5, got {value}")
                continue
            scores[k][aspect] = value
    if problems:
        return None, "; ".join(problems)
    return scores, None


def read_answer(fields: dict[str, str] | None, n_slots: int, error: str | None = None) -> ParsedAnswer:
    """Validate one submission's fields for a task with ``n_slots`` items; ``fields`` None: the platform
    could not read the answer (``error`` says why)."""
    if fields is None:
        return ParsedAnswer(None, error or "answer could not be read", False, {})
    scores, problem = validate_scores(fields, n_slots)
    return ParsedAnswer(scores, problem, fields.get(SIMULATED_FIELD, "").strip() == "1", fields)


def attention_passed(scores: dict[int, dict[str, int]] | None, items: list[dict[str, Any]]) -> bool | None:
    """None when no slot is an attention check; else whether every check's aspects are at most the
    expected maximum (an invalid answer fails)."""
    checks = [(k, it["attention_check"]) for k, it in enumerate(items) if it.get("attention_check")]
    if not checks:
        return None
    if scores is None:
        return False
    return all(scores[k].get(a, 99) <= limit for k, ac in checks for a, limit in ac["aspects"].items())
