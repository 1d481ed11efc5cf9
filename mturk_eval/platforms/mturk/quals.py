"""QualificationRequirements from ``[[hit.qualifications]]``, with MTurk's system type ids.

``type`` is a system name (locale, approval_rate, approved_hits, masters, adult) or a custom
QualificationTypeId; ``sandbox_id`` gives a custom type's id on the sandbox where it differs (custom
types are per environment; Masters has different system ids too).
"""
from __future__ import annotations

import re
from typing import Any

from mturk_eval.config import QualificationConfig
from mturk_eval.errors import UserError

SYSTEM_IDS = {
    "locale": "00000000000000000071",
    "approval_rate": "000000000000000000L0",
    "approved_hits": "00000000000000000040",
    "adult": "00000000000000000060",
}
MASTERS_IDS = {"sandbox": "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6", "live": "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"}
COMPARATORS = ("LessThan", "LessThanOrEqualTo", "GreaterThan", "GreaterThanOrEqualTo", "EqualTo",
               "NotEqualTo", "Exists", "DoesNotExist", "In", "NotIn")
ACTIONS_GUARDED = ("Accept", "PreviewAndAccept", "DiscoverPreviewAndAccept")
LOCALE_COMPARATORS = ("EqualTo", "NotEqualTo", "In", "NotIn")
_LOCALE_RE = re.compile(r"([A-Z]{2})(?:-([A-Z0-9]{1,3}))?")
_ID_RE = re.compile(r"[A-Z0-9]{1,64}")


def type_id(q: QualificationConfig, target: str) -> str:
    """The QualificationTypeId of ``q`` on ``target`` (the local emulator uses the sandbox ids)."""
    env = "live" if target == "live" else "sandbox"
    if q.type == "masters":
        return MASTERS_IDS[env]
    if q.type in SYSTEM_IDS:
        return SYSTEM_IDS[q.type]
    if env == "sandbox" and q.sandbox_id:
        return q.sandbox_id
    return q.type


def build_requirements(quals: list[QualificationConfig], target: str) -> list[dict[str, Any]]:
    """MTurk QualificationRequirement dicts; errors name ``hit.qualifications[i].<field>``."""
    out = []
    for i, q in enumerate(quals):
        key = f"hit.qualifications[{i}]"
        if q.actions_guarded not in ACTIONS_GUARDED:
            raise UserError(f"{key}.actions_guarded: expected {' or '.join(ACTIONS_GUARDED)}, got {q.actions_guarded!r}")
        qid = type_id(q, target)
        if not _ID_RE.fullmatch(qid):
            raise UserError(f"{key}.type: expected locale, approval_rate, approved_hits, masters, adult or a"
                            f" QualificationTypeId ([A-Z0-9]), got {qid!r}")
        req: dict[str, Any] = {"QualificationTypeId": qid, "ActionsGuarded": q.actions_guarded}
        if q.type == "locale":
            if not q.locales:
                raise UserError(f"{key}.locales: expected country codes like [\"US\", \"CA\"] or \"US-NY\", got []")
            locs = []
            for loc in q.locales:
                m = _LOCALE_RE.fullmatch(loc)
                if not m:
                    raise UserError(f"{key}.locales: expected ISO country codes like \"US\" or \"US-NY\", got {loc!r}")
                locs.append({"Country": m.group(1), **({"Subdivision": m.group(2)} if m.group(2) else {})})
            # The config default comparator (GreaterThanOrEqualTo) is meaningless for locales: use In.
            req["Comparator"] = q.comparator if q.comparator in LOCALE_COMPARATORS else "In"
            if req["Comparator"] in ("EqualTo", "NotEqualTo") and len(locs) > 1:
                req["Comparator"] = "In" if req["Comparator"] == "EqualTo" else "NotIn"
            req["LocaleValues"] = locs
        elif q.type == "masters":
            req["Comparator"] = "Exists"
        elif q.type == "adult":
            req["Comparator"] = "EqualTo"
            req["IntegerValues"] = [1]
        else:
            if q.comparator not in COMPARATORS:
                raise UserError(f"{key}.comparator: expected one of {', '.join(COMPARATORS)}, got {q.comparator!r}")
            req["Comparator"] = q.comparator
            if q.comparator not in ("Exists", "DoesNotExist"):
                if not q.values:
                    raise UserError(f"{key}.values: expected at least one integer for {q.comparator}, got []")
                if q.type == "approval_rate" and not all(0 <= v <= 100 for v in q.values):
                    raise UserError(f"{key}.values: expected percentages 0..100, got {q.values!r}")
                req["IntegerValues"] = list(q.values)
        out.append(req)
    return out


def uses_masters(quals: list[QualificationConfig]) -> bool:
    return any(q.type == "masters" for q in quals)
