"""Parsing MTurk's QuestionFormAnswers XML and validating the rating form's fields.

One ``<Answer>`` per form field (QuestionIdentifier = field name, FreeText = value); crowd-html's
``crowd-form`` sends a single ``taskAnswers`` answer holding a JSON array, which is flattened too.
The XML parser refuses entities and network access (answers come from the outside).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lxml import etree

from mturk_eval.config import ASPECTS

QFA_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd"
SIMULATED_FIELD = "mturk_eval_simulated"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class AnswerError(ValueError):
    """An answer document that cannot be read at all."""


def parse_fields(xml: str) -> dict[str, str]:
    """Form field name -> value from a QuestionFormAnswers document."""
    try:
        root = etree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise AnswerError(f"answer is not well-formed XML ({exc})") from None
    if etree.QName(root).localname != "QuestionFormAnswers":
        raise AnswerError(f"answer root is {etree.QName(root).localname}, expected QuestionFormAnswers")
    fields: dict[str, str] = {}
    for ans in root:
        if not isinstance(ans.tag, str) or etree.QName(ans).localname != "Answer":
            continue
        qid = text = None
        selections = []
        for child in ans:
            if not isinstance(child.tag, str):
                continue
            name = etree.QName(child).localname
            if name == "QuestionIdentifier":
                qid = (child.text or "").strip()
            elif name == "FreeText":
                text = child.text or ""
            elif name == "SelectionIdentifier":
                selections.append(child.text or "")
        if not qid:
            raise AnswerError("an Answer has no QuestionIdentifier")
        value = text if text is not None else "|".join(selections)
        if qid == "taskAnswers":
            fields.update(_flatten_task_answers(value))
        else:
            fields[qid] = value
    return fields


def _flatten_task_answers(value: str) -> dict[str, str]:
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        raise AnswerError("taskAnswers is not valid JSON") from None
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict):
        raise AnswerError("taskAnswers is not a JSON object or array of one")
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):  # crowd-radio-group: {"on": true} or {"3": true, ...}
            chosen = [key for key, on in v.items() if on is True]
            v = chosen[0] if len(chosen) == 1 else ""
        out[k] = str(v)
    return out


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


def parse_answer(xml: str, n_slots: int) -> ParsedAnswer:
    """Parse and validate one assignment's answer for a HIT with ``n_slots`` items."""
    try:
        fields = parse_fields(xml)
    except AnswerError as exc:
        return ParsedAnswer(None, str(exc), False, {})
    scores, error = validate_scores(fields, n_slots)
    return ParsedAnswer(scores, error, fields.get(SIMULATED_FIELD, "").strip() == "1", fields)


def attention_passed(scores: dict[int, dict[str, int]] | None, items: list[dict[str, Any]]) -> bool | None:
    """None when no slot is an attention check; else whether every check's aspects are at most the
    expected maximum (an invalid answer fails)."""
    checks = [(k, it["attention_check"]) for k, it in enumerate(items) if it.get("attention_check")]
    if not checks:
        return None
    if scores is None:
        return False
    return all(scores[k].get(a, 99) <= limit for k, ac in checks for a, limit in ac["aspects"].items())
