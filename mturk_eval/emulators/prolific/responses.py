"""The Prolific emulator's operations (moto's ``responses.py``): check a request, run it, shape the answer.

Each handler takes ``(backend, call)`` and returns ``(status, body)``. A request body is checked
against the contract's fields and enums (:mod:`mturk_eval.platforms.prolific.contract`) before the
backend sees it; an unknown field, a wrong type or value is a 400 with Prolific's nested error body
(``{"error": {"status", "title", "detail"}}``, the shape the contract tells a test server to emit).
Lists answer ``{"results", "_links", "meta"}`` with both paging styles: ``limit``/``offset`` and
``page``/``page_size``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable
from urllib.parse import urlencode

from mturk_eval.emulators.prolific.models import FILTER_IDS, FILTER_CATALOGUE, ProlificAPIError, ProlificBackend, bad
from mturk_eval.platforms.prolific import contract


@dataclass
class Call:
    """One API request as the handlers see it."""

    args: dict[str, str]              # path arguments
    query: dict[str, str]
    body: Any
    base_url: str                     # scheme://host[:port]/api/v1/... path of this request, for links
    path: str
    now: float = 0.0
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Request checks

def _type_error(where: str, expected: str, got: Any) -> ProlificAPIError:
    return bad({where: [f"Expected {expected}, got {type(got).__name__} {str(got)[:60]!r}."]})


def _unknown(body: dict, allowed: frozenset | set, where: str = "") -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise bad({f"{where}{extra[0]}": ["Unknown field."]})


def _int(v: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _type_error(where, "an integer", v)
    if minimum is not None and v < minimum:
        raise bad({where: [f"Ensure this value is greater than or equal to {minimum}."]})
    return v


def _str(v: Any, where: str, nonempty: bool = False) -> str:
    if not isinstance(v, str):
        raise _type_error(where, "a string", v)
    if nonempty and not v.strip():
        raise bad({where: ["This field may not be blank."]})
    return v


def _enum(v: Any, allowed: tuple, where: str) -> str:
    if v not in allowed:
        raise bad({where: [f"\"{str(v)[:60]}\" is not a valid choice ({', '.join(allowed)})."]})
    return v


def _list(v: Any, where: str) -> list:
    if not isinstance(v, list):
        raise _type_error(where, "a list", v)
    return v


def _body(call: Call) -> dict:
    if not isinstance(call.body, dict):
        raise bad("The request body must be a JSON object.")
    return call.body


def check_completion_codes(codes: Any) -> None:
    seen = set()
    for i, c in enumerate(_list(codes, "completion_codes")):
        w = f"completion_codes[{i}]"
        if not isinstance(c, dict):
            raise _type_error(w, "an object", c)
        _unknown(c, {"code", "code_type", "actions", "actor"}, f"{w}.")
        code = _str(c.get("code"), f"{w}.code", nonempty=True)
        if code in seen:
            raise bad({f"{w}.code": [f"The code {code} is used twice; codes must be unique in a study."]})
        seen.add(code)
        _enum(c.get("code_type"), contract.CODE_TYPES, f"{w}.code_type")
        actions = _list(c.get("actions", []), f"{w}.actions")
        names = []
        for j, a in enumerate(actions):
            aw = f"{w}.actions[{j}]"
            if not isinstance(a, dict):
                raise _type_error(aw, "an object", a)
            _unknown(a, {"action", "participant_group", "return_reason"}, f"{aw}.")
            names.append(_enum(a.get("action"), contract.CODE_ACTIONS, f"{aw}.action"))
            if a["action"] in ("ADD_TO_PARTICIPANT_GROUP", "REMOVE_FROM_PARTICIPANT_GROUP"):
                _str(a.get("participant_group"), f"{aw}.participant_group", nonempty=True)
        if "AUTOMATICALLY_APPROVE" in names and "MANUALLY_REVIEW" in names:
            raise bad({f"{w}.actions": ["AUTOMATICALLY_APPROVE and MANUALLY_REVIEW cannot be used together."]})


def check_filters(filters: Any, backend: ProlificBackend) -> None:
    for i, f in enumerate(_list(filters, "filters")):
        w = f"filters[{i}]"
        if not isinstance(f, dict):
            raise _type_error(w, "an object", f)
        _unknown(f, contract.FILTER_FIELDS, f"{w}.")
        fid = _str(f.get("filter_id"), f"{w}.filter_id", nonempty=True)
        if fid not in FILTER_IDS:
            raise bad({f"{w}.filter_id": [f"Filter with id \"{fid}\" does not exist."]})
        kind = FILTER_IDS[fid]["type"]
        if kind == "range":
            r = f.get("selected_range")
            if not isinstance(r, dict) or "selected_values" in f:
                raise bad({w: [f"The {fid} filter is a range filter: give selected_range {{lower, upper}}."]})
            _unknown(r, {"lower", "upper"}, f"{w}.selected_range.")
        else:
            values = f.get("selected_values")
            if not isinstance(values, list) or "selected_range" in f:
                raise bad({w: [f"The {fid} filter is a select filter: give selected_values."]})
            for v in values:
                _str(v, f"{w}.selected_values")
            choices = FILTER_IDS[fid].get("choices")
            if choices:
                for v in values:
                    if v not in choices:
                        raise bad({f"{w}.selected_values": [f"\"{v}\" is not a choice of filter {fid}."]})
            if FILTER_IDS[fid]["data_type"] == "ParticipantGroupID":
                for v in values:
                    backend.group(v)  # 404 for an unknown group


def check_study_fields(body: dict, backend: ProlificBackend, *, create: bool) -> None:
    _unknown(body, contract.STUDY_FIELDS)
    if create:
        missing = [k for k in contract.STUDY_REQUIRED if k not in body]
        if missing:
            raise bad({missing[0]: ["This field is required."]})
    checks: dict[str, Callable[[Any, str], Any]] = {
        "name": lambda v, w: _str(v, w, nonempty=True),
        "internal_name": _str,
        "description": _str,
        "external_study_url": lambda v, w: _url(v, w),
        "prolific_id_option": lambda v, w: _enum(v, contract.PROLIFIC_ID_OPTIONS, w),
        "completion_code": _str,
        "completion_option": lambda v, w: _enum(v, ("url", "code"), w),
        "total_available_places": lambda v, w: _int(v, w, 1),
        "estimated_completion_time": lambda v, w: _int(v, w, 1),
        "maximum_allowed_time": lambda v, w: _int(v, w, 1),
        "reward": lambda v, w: _int(v, w, 0),
        "device_compatibility": lambda v, w: [_enum(x, contract.DEVICES, w) for x in _list(v, w)],
        "peripheral_requirements": lambda v, w: [_enum(x, contract.PERIPHERALS, w) for x in _list(v, w)],
        "project": lambda v, w: _str(v, w, nonempty=True),
        "study_type": lambda v, w: _enum(v, contract.STUDY_TYPES, w),
        "study_labels": lambda v, w: [_str(x, w) for x in _list(v, w)],
        "filter_set_id": _str,
    }
    for k, fn in checks.items():
        if k in body and body[k] is not None:
            fn(body[k], k)
    if "completion_codes" in body:
        check_completion_codes(body["completion_codes"])
    if "filters" in body:
        check_filters(body["filters"], backend)
        if body.get("filters") and body.get("filter_set_id"):
            raise bad({"filters": ["filters and filter_set_id cannot be used together."]})
    if "submissions_config" in body:
        sc = body["submissions_config"]
        if not isinstance(sc, dict):
            raise _type_error("submissions_config", "an object", sc)
        _unknown(sc, contract.SUBMISSIONS_CONFIG_FIELDS, "submissions_config.")
        for k in ("max_submissions_per_participant", "max_concurrent_submissions"):
            if k in sc:
                _int(sc[k], f"submissions_config.{k}", -1)
    if "device_compatibility" in body and not body["device_compatibility"]:
        raise bad({"device_compatibility": ["Choose at least one device."]})
    est, most = body.get("estimated_completion_time"), body.get("maximum_allowed_time")
    if isinstance(est, int) and isinstance(most, int) and most < est:
        raise bad({"maximum_allowed_time": ["Must be at least the estimated completion time."]})


def _url(v: Any, where: str) -> str:
    _str(v, where, nonempty=True)
    if not re.match(r"https?://[^\s/]+", v):
        raise bad({where: ["Enter a valid URL."]})
    return v


# --------------------------------------------------------------------------------------------------
# Paging

def _page_limit(call: Call, items: list) -> dict:
    try:
        limit = int(call.query.get("limit", 200))
        offset = int(call.query.get("offset", 0))
    except ValueError:
        raise bad("limit and offset must be integers.") from None
    if limit < 1 or offset < 0:
        raise bad("limit must be >= 1 and offset >= 0.")
    page = items[offset:offset + limit]

    def link(off: int | None) -> dict:
        if off is None:
            return {"href": None, "title": None}
        q = {k: v for k, v in call.query.items() if k not in ("limit", "offset")} | {"limit": limit, "offset": off}
        return {"href": f"{call.base_url}?{urlencode(q)}", "title": str(off)}

    last = max(0, (len(items) - 1) // limit * limit)
    return {"results": page, "_links": {
        "self": link(offset), "next": link(offset + limit if offset + limit < len(items) else None),
        "previous": link(max(0, offset - limit) if offset > 0 else None), "last": link(last)},
        "meta": {"count": len(items)}}


def _page_numbered(call: Call, items: list, default_size: int = 20) -> dict:
    try:
        size = int(call.query.get("page_size", default_size))
        page = int(call.query.get("page", 1))
    except ValueError:
        raise bad("page and page_size must be integers.") from None
    if size < 1 or page < 1:
        raise bad("page and page_size must be >= 1.")
    pages = max(1, -(-len(items) // size))
    if page > pages:
        raise ProlificAPIError(404, "Invalid page.")

    def link(n: int | None) -> dict:
        if n is None:
            return {"href": None, "title": None}
        q = {k: v for k, v in call.query.items() if k not in ("page", "page_size")} | {"page": n, "page_size": size}
        return {"href": f"{call.base_url}?{urlencode(q)}", "title": str(n)}

    return {"results": items[(page - 1) * size: page * size], "_links": {
        "self": link(page), "next": link(page + 1 if page < pages else None),
        "previous": link(page - 1 if page > 1 else None), "last": link(pages)}, "meta": {"count": len(items)}}


# --------------------------------------------------------------------------------------------------
# Handlers, by operationId

def get_user(b: ProlificBackend, c: Call):
    return 200, b.user()


def get_workspaces(b, c):
    return 200, _page_limit(c, [b.workspace()])


def get_workspace(b, c):
    return 200, b.workspace(c.args["workspace_id"])


def get_workspace_balance(b, c):
    bal = b.user()["balance"]
    return 200, {"currency_code": b.currency, "total_balance": bal, "available_balance": bal,
                 "balance_breakdown": {"rewards": bal, "fees": 0, "vat": 0},
                 "available_balance_breakdown": {"rewards": bal, "fees": 0, "vat": 0}}


def get_projects(b, c):
    b.workspace(c.args["workspace_id"])
    return 200, _page_limit(c, [b.project(b._meta("project_id"))])


def get_project(b, c):
    return 200, b.project(c.args["project_id"])


def get_project_studies(b, c):
    b.check_project(c.args["project_id"])
    items = b.list_studies(project=c.args["project_id"])
    if c.query.get("ordering") == "-date_created":
        items = items[::-1]
    return 200, _page_numbered(c, items)


def get_filters(b, c):
    return 200, {"results": FILTER_CATALOGUE}


def calculate_study_cost(b, c):
    body = _body(c)
    _unknown(body, {"reward", "total_available_places"})
    for k in ("reward", "total_available_places"):
        if k not in body:
            raise bad({k: ["This field is required."]})
        if isinstance(body[k], bool) or not isinstance(body[k], (int, float)) or body[k] < 0:
            raise _type_error(k, "a number >= 0", body[k])
    cost = b.cost(Decimal(str(body["reward"])) * Decimal(str(body["total_available_places"])))
    return 200, {"total_cost": float(cost.total)}


def get_study_cost(b, c):
    s = b.study(c.args["id"])
    cost = b.cost(Decimal(s["reward"]) * s["total_available_places"])
    cur = b.currency
    return 200, {"rewards": {"rewards": {"amount": float(cost.rewards), "currency": cur},
                             "fees": {"amount": float(cost.fees), "currency": cur},
                             "tax": {"amount": float(cost.vat), "currency": cur}}, "bonuses": None}


def get_reward_recommendations(b, c):
    if not c.query.get("workspace_id"):
        raise bad({"workspace_id": ["This field is required."]})
    cur = c.query.get("currency", b.currency)
    _enum(cur, ("GBP", "USD"), "currency")
    minimum = {"GBP": 600, "USD": 800}[cur]
    return 200, [{"currency": cur, "min_reward_per_hour": minimum, "recommended_reward_per_hour": minimum * 3 // 2}]


def create_study(b, c):
    body = _body(c)
    check_study_fields(body, b, create=True)
    return 201, b.create_study(body, c.now)


def get_studies(b, c):
    states = None
    if c.query.get("state"):
        raw = c.query["state"].strip("()")
        states = [s.strip().upper().replace("_", " ") for s in raw.split("|") if s.strip()]
        for s in states:
            _enum(s, contract.STUDY_STATUSES + ("UNKNOWN",), "state")
    return 200, {"results": b.list_studies(states)}


def get_study(b, c):
    return 200, b.study(c.args["id"])


def update_study(b, c):
    body = _body(c)
    check_study_fields(body, b, create=False)
    return 200, b.update_study(c.args["id"], body, c.now)


def delete_study(b, c):
    b.delete_study(c.args["id"])
    return 204, None


def transition_study(b, c):
    body = _body(c)
    _unknown(body, {"action"})
    _enum(body.get("action"), contract.STUDY_ACTIONS, "action")
    s = b.transition_study(c.args["id"], body["action"], c.now)
    keys = ("id", "status", "name", "internal_name", "description", "external_study_url", "prolific_id_option",
            "completion_code", "completion_option", "total_available_places", "estimated_completion_time",
            "maximum_allowed_time", "reward", "device_compatibility", "peripheral_requirements")
    return 200, {k: s.get(k) for k in keys} | {"eligibility_requirements": []}


def get_study_submissions(b, c):
    return 200, _page_limit(c, b.list_submissions(c.args["id"]))


_BOOL = {"1": True, "true": True, "yes": True, "t": True, "0": False, "false": False, "no": False, "f": False}
_BOOL_STATUS = {"completed": ("AWAITING REVIEW", "APPROVED", "REJECTED"), "returned": ("RETURNED",),
                "awaiting_review": ("AWAITING REVIEW",), "approved": ("APPROVED",), "active": ("ACTIVE",),
                "timeout": ("TIMED-OUT",)}


def get_submissions(b, c):
    statuses = None
    if c.query.get("status"):
        s = c.query["status"].upper().replace("_", " ")
        s = "TIMED-OUT" if s in ("TIMED OUT", "TIMED-OUT") else s
        statuses = [_enum(s, contract.SUBMISSION_STATUSES, "status")]
    items = b.list_submissions(c.query.get("study") or None, statuses)
    for k, wanted in _BOOL_STATUS.items():
        if k in c.query:
            v = _BOOL.get(c.query[k].lower())
            if v is None:
                raise bad({k: ["Must be one of 1/0, true/false, yes/no, t/f."]})
            items = [i for i in items if (i["status"] in wanted) == v]
    return 200, _page_numbered(c, items)


def get_submission(b, c):
    return 200, b.submission(c.args["id"])


def count_study_submissions(b, c):
    return 200, b.counts(c.args["id"])


def transition_submission(b, c):
    body = _body(c)
    _unknown(body, contract.SUBMISSION_TRANSITION_FIELDS)
    action = _enum(body.get("action"), contract.SUBMISSION_ACTIONS, "action")
    if action == "REJECT":
        _enum(body.get("rejection_category"), contract.REJECTION_CATEGORIES, "rejection_category")
        msg = _str(body.get("message"), "message")
        if len(msg) < contract.MIN_REJECTION_MESSAGE:
            raise bad({"message": [f"Ensure this field has at least {contract.MIN_REJECTION_MESSAGE} characters"
                                   f" (it has {len(msg)})."]})
    elif action == "COMPLETE":
        _str(body.get("completion_code"), "completion_code", nonempty=True)
    elif "message" in body or "rejection_category" in body:
        raise bad({"message": ["message and rejection_category are only for REJECT."]})
    return 200, b.transition_submission(c.args["id"], body, c.now)


def bulk_approve_submissions(b, c):
    body = _body(c)
    if "submission_ids" in body:
        _unknown(body, {"submission_ids"})
        ids = [_str(x, "submission_ids") for x in _list(body["submission_ids"], "submission_ids")]
    else:
        _unknown(body, {"study_id", "participant_ids"})
        for k in ("study_id", "participant_ids"):
            if k not in body:
                raise bad({k: ["This field is required (or give submission_ids)."]})
        ids = b.participant_submissions(_str(body["study_id"], "study_id"),
                                        [_str(x, "participant_ids") for x in _list(body["participant_ids"],
                                                                                   "participant_ids")])
    if not ids:
        raise bad({"submission_ids": ["Give at least one submission."]})
    if len(ids) > contract.BULK_APPROVE_MAX:
        raise bad({"submission_ids": [f"At most {contract.BULK_APPROVE_MAX} submissions per request."]})
    b.bulk_approve(ids, c.now)
    return 200, "The request to bulk approve has been made successfully."


def create_bonus_payments(b, c):
    body = _body(c)
    _unknown(body, {"study_id", "csv_bonuses"})
    study_id = _str(body.get("study_id"), "study_id", nonempty=True)
    csv = _str(body.get("csv_bonuses"), "csv_bonuses", nonempty=True)
    lines = []
    for n, line in enumerate(csv.strip().split("\n"), 1):
        ident, _, amount = line.strip().partition(",")
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            raise bad({"csv_bonuses": [f"Line {n}: {line[:60]!r} is not '<id>,<amount>'."]}) from None
        if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
            raise bad({"csv_bonuses": [f"Line {n}: the amount must be above 0 with at most 2 decimals."]})
        lines.append((ident.strip(), value))
    return 201, b.create_bonus(study_id, lines, c.now)


def pay_bonus_payments(b, c):
    if c.body not in (None, {}):
        raise bad("This endpoint takes no body.")
    return 202, b.pay_bonus(c.args["id"], c.now)


def get_participant_groups(b, c):
    wid = c.query.get("workspace_id") or c.query.get("filter[workspace_id]")
    return 200, _page_limit(c, b.list_groups(wid))


def create_participant_group(b, c):
    body = _body(c)
    _unknown(body, {"name", "workspace_id", "organisation_id", "description", "participant_ids"})
    _str(body.get("name"), "name", nonempty=True)
    for k in ("workspace_id", "organisation_id", "description"):
        if k in body:
            _str(body[k], k)
    if "participant_ids" in body:
        [_str(x, "participant_ids") for x in _list(body["participant_ids"], "participant_ids")]
    return 201, b.create_group(body, c.now)


def get_participant_group(b, c):
    return 200, b.group(c.args["id"])


def update_participant_group(b, c):
    body = _body(c)
    _unknown(body, {"name", "description"})
    return 200, b.update_group(c.args["id"], body)


def delete_participant_group(b, c):
    b.delete_group(c.args["id"])
    return 204, None


def _participant_ids(c: Call) -> list[str]:
    body = _body(c)
    _unknown(body, {"participant_ids"})
    return [_str(x, "participant_ids") for x in _list(body.get("participant_ids"), "participant_ids")]


def get_participant_group_participants(b, c):
    return 200, _page_limit(c, b.members(c.args["id"]))


def add_to_participant_group(b, c):
    return 200, {"results": b.add_members(c.args["id"], _participant_ids(c), c.now)}


def remove_from_participant_group(b, c):
    return 200, {"results": b.remove_members(c.args["id"], _participant_ids(c))}
