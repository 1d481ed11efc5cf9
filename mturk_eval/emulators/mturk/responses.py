"""The local MTurk service's requester API: the JSON 1.1 operations and the validation of their requests.

boto3 talks to it unchanged: ``boto3.client("mturk", endpoint_url=url, region_name="us-east-1",
aws_access_key_id="x", aws_secret_access_key="x")``. Requests are checked against botocore's own service
model (``mturk/2017-01-17``: required members, types, lengths, ranges, patterns, enums), then against
MTurk's documented rules (Question documents, limits, state transitions). Signatures are not verified:
only the presence of a SigV4 ``Authorization`` header is required. Each operation is a function
``(store, params, now) -> response dict`` over :mod:`mturk_eval.emulators.mturk.models`, run inside one
store transaction (moto's ``responses.py``); :func:`api` is the ``POST /`` endpoint.
"""
from __future__ import annotations

import base64
import json
import re
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable

import botocore.session
from lxml import etree
from lxml import html as lxml_html
from werkzeug.wrappers import Request, Response

from mturk_eval.emulators.faults import DropConnection
from mturk_eval.emulators.mturk.models import DONE, SANDBOX_BALANCE, HITView, SandboxError, Store

if TYPE_CHECKING:
    from mturk_eval.emulators.server import SandboxApp

TARGET_PREFIX = "MTurkRequesterServiceV20170117."
HTML_QUESTION_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
EXTERNAL_QUESTION_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
ANSWERS_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd"
MAX_QUESTION_BYTES = 65535

# MTurk's limits beyond the service model (documented on each operation's page).
LIMITS = {
    "LifetimeInSeconds": (30, 31536000),
    "AssignmentDurationInSeconds": (30, 31536000),
    "AutoApprovalDelayInSeconds": (0, 2592000),
    "MaxAssignments": (1, 1000000),
}
MAX_CHARS = {"Title": 128, "Description": 2000, "Keywords": 1000, "RequesterAnnotation": 255}


@lru_cache(maxsize=1)
def service_model():
    """botocore's MTurk service model (the same file boto3 uses)."""
    return botocore.session.get_session().get_service_model("mturk")


# --------------------------------------------------------------------------------------------------
# Validation

def _bad(message: str) -> SandboxError:
    return SandboxError(message, "AWS.MechanicalTurk.InvalidParameterValue")


def validate_shape(shape, value: Any, path: str) -> None:
    """Check a request value against its botocore shape, as the service would (patterns included).

    Hand-written because botocore's ParamValidator is the client's: it skips patterns and maxima.
    """
    t = shape.type_name
    meta = shape.metadata
    if t == "structure":
        if not isinstance(value, dict):
            raise _bad(f"Value at '{path}' failed to satisfy constraint: must be a structure")
        for req in shape.required_members:
            if value.get(req) is None:
                raise _bad(f"Value null at '{path}.{req}' failed to satisfy constraint: Member must not be null"
                           if path else f"Missing required parameter: {req}")
        for k, v in value.items():
            if k not in shape.members:
                raise _bad(f"Unknown parameter '{k}'" + (f" in '{path}'" if path else ""))
            if v is not None:
                validate_shape(shape.members[k], v, f"{path}.{k}" if path else k)
    elif t == "list":
        if not isinstance(value, list):
            raise _bad(f"Value at '{path}' failed to satisfy constraint: must be a list")
        for i, v in enumerate(value):
            validate_shape(shape.member, v, f"{path}[{i}]")
    elif t == "string":
        if not isinstance(value, str):
            raise _bad(f"Value at '{path}' failed to satisfy constraint: must be a string")
        if "min" in meta and len(value) < meta["min"]:
            raise _bad(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have length"
                       f" greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            raise _bad(f"Value at '{path}' failed to satisfy constraint: Member must have length less than or"
                       f" equal to {meta['max']}")
        if "pattern" in meta and not re.search(meta["pattern"], value):
            raise _bad(f"Value '{value[:80]}' at '{path}' failed to satisfy constraint: Member must satisfy"
                       f" regular expression pattern: {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            raise _bad(f"Value '{value[:80]}' at '{path}' failed to satisfy constraint: Member must satisfy"
                       f" enum value set: [{', '.join(shape.enum)}]")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(f"Value at '{path}' failed to satisfy constraint: must be an integer")
        if "min" in meta and value < meta["min"]:
            raise _bad(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value"
                       f" greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            raise _bad(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value"
                       f" less than or equal to {meta['max']}")
    elif t == "boolean":
        if not isinstance(value, bool):
            raise _bad(f"Value at '{path}' failed to satisfy constraint: must be true or false")
    elif t == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(f"Value at '{path}' failed to satisfy constraint: must be a timestamp in epoch seconds")
    elif t == "double":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(f"Value at '{path}' failed to satisfy constraint: must be a number")


def validate_limits(p: dict[str, Any]) -> None:
    for k, (lo, hi) in LIMITS.items():
        if k in p and not lo <= p[k] <= hi:
            raise _bad(f"The value {p[k]} for {k} is invalid: it must be between {lo} and {hi}.")
    for k, n in MAX_CHARS.items():
        if isinstance(p.get(k), str) and len(p[k]) > n:
            raise _bad(f"{k} is too long ({len(p[k])} characters); the maximum is {n}.")
    if "Title" in p and not p["Title"].strip():
        raise _bad("Title must not be empty.")
    if len(p.get("QualificationRequirements") or []) > 10:
        raise _bad("A HIT can have at most 10 QualificationRequirements.")
    if "Reward" in p and float(p["Reward"]) < 0.01:
        raise _bad(f"The value {p['Reward']} for Reward is invalid: the minimum is 0.01.")


def validate_question(question: str) -> dict[str, Any]:
    """Check a Question as MTurk does: size, well-formed XML, HTMLQuestion or ExternalQuestion.

    Returns ``{"kind": "html", "html": ..., "frame_height": ...}`` or ``{"kind": "external", "url": ...}``.
    """
    size = len(question.encode("utf-8"))
    if size > MAX_QUESTION_BYTES:
        raise _bad(f"The Question is {size} bytes; the maximum is {MAX_QUESTION_BYTES} bytes.")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(question.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise SandboxError(f"The Question is not well-formed XML: {exc}", "AWS.MechanicalTurk.XMLParseError")
    kids = [c for c in root if isinstance(c.tag, str)]
    if root.tag == f"{{{HTML_QUESTION_NS}}}HTMLQuestion":
        names = [etree.QName(c).localname for c in kids]
        if names != ["HTMLContent", "FrameHeight"] or any(etree.QName(c).namespace != HTML_QUESTION_NS
                                                            for c in kids):
            raise SandboxError("HTMLQuestion must contain HTMLContent then FrameHeight, in its namespace"
                               f" (got {', '.join(names) or 'nothing'}).", "AWS.MechanicalTurk.XMLParseError")
        content = kids[0].text or ""
        height = (kids[1].text or "").strip()
        if not re.fullmatch(r"[0-9]+", height):
            raise SandboxError(f"FrameHeight must be a whole number, got {height!r}.",
                               "AWS.MechanicalTurk.XMLParseError")
        if not content.strip():
            raise SandboxError("HTMLContent is empty.", "AWS.MechanicalTurk.XMLParseError")
        try:
            doc = lxml_html.document_fromstring(content)
        except (etree.ParserError, ValueError) as exc:
            raise SandboxError(f"There was an error parsing the HTML5 data in your request: {exc}",
                               "AWS.MechanicalTurk.XMLParseError")
        if not doc.xpath("//form | //crowd-form"):
            raise SandboxError("The HTMLContent has no <form> (or <crowd-form>) for the worker to submit.",
                               "AWS.MechanicalTurk.XMLParseError")
        return {"kind": "html", "html": content, "frame_height": int(height)}
    if root.tag == f"{{{EXTERNAL_QUESTION_NS}}}ExternalQuestion":
        names = [etree.QName(c).localname for c in kids]
        if names != ["ExternalURL", "FrameHeight"]:
            raise SandboxError("ExternalQuestion must contain ExternalURL then FrameHeight"
                               f" (got {', '.join(names) or 'nothing'}).", "AWS.MechanicalTurk.XMLParseError")
        url = (kids[0].text or "").strip()
        if not url.startswith("https://"):
            raise SandboxError(f"ExternalURL must be an https:// address, got {url[:100]!r}.",
                               "AWS.MechanicalTurk.XMLParseError")
        if not re.fullmatch(r"[0-9]+", (kids[1].text or "").strip()):
            raise SandboxError("FrameHeight must be a whole number.", "AWS.MechanicalTurk.XMLParseError")
        return {"kind": "external", "url": url, "frame_height": int(kids[1].text.strip())}
    raise SandboxError(
        f"The Question root element {etree.QName(root).localname!r} (namespace"
        f" {etree.QName(root).namespace!r}) is not supported: expected HTMLQuestion (2011-11-11) or"
        " ExternalQuestion (2006-07-14).", "AWS.MechanicalTurk.XMLParseError")


def answers_xml(fields: list[tuple[str, str]]) -> str:
    """A QuestionFormAnswers document with one Answer per form field (built with lxml: always escaped)."""
    root = etree.Element(f"{{{ANSWERS_NS}}}QuestionFormAnswers", nsmap={None: ANSWERS_NS})
    for name, value in fields:
        ans = etree.SubElement(root, f"{{{ANSWERS_NS}}}Answer")
        etree.SubElement(ans, f"{{{ANSWERS_NS}}}QuestionIdentifier").text = name
        etree.SubElement(ans, f"{{{ANSWERS_NS}}}FreeText").text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True).decode("utf-8")


# --------------------------------------------------------------------------------------------------
# Response shapes

def hit_json(v: HITView) -> dict[str, Any]:
    r = v.row
    out: dict[str, Any] = {
        "HITId": r["id"], "HITTypeId": r["hit_type_id"], "HITGroupId": r["group_id"],
        "CreationTime": r["created"], "Title": r["title"], "Description": r["description"],
        "Question": r["question"], "Keywords": r["keywords"] or "", "HITStatus": v.status,
        "MaxAssignments": r["max_assignments"], "Reward": r["reward"],
        "AutoApprovalDelayInSeconds": r["auto_approval_delay"], "Expiration": r["expiration"],
        "AssignmentDurationInSeconds": r["assignment_duration"],
        "QualificationRequirements": json.loads(r["qualifications"]),
        "HITReviewStatus": "NotReviewed",
        "NumberOfAssignmentsPending": v.pending, "NumberOfAssignmentsAvailable": v.available,
        "NumberOfAssignmentsCompleted": v.completed,
    }
    if r.get("annotation") is not None:
        out["RequesterAnnotation"] = r["annotation"]
    return out


def assignment_json(a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AssignmentId": a["id"], "WorkerId": a["worker_id"], "HITId": a["hit_id"],
        "AssignmentStatus": a["status"], "AcceptTime": a["accept_time"], "Deadline": a["deadline"],
    }
    for key, col in (("SubmitTime", "submit_time"), ("AutoApprovalTime", "auto_approval_time"),
                     ("ApprovalTime", "approval_time"), ("RejectionTime", "rejection_time"),
                     ("Answer", "answer"), ("RequesterFeedback", "feedback")):
        if a.get(col) is not None:
            out[key] = a[col]
    return out


def _page_args(p: dict[str, Any]) -> tuple[int, int]:
    limit = p.get("MaxResults", 10)
    token = p.get("NextToken")
    if not token:
        return 0, limit
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()).decode())["after"]
        if not isinstance(after, int):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _bad(f"The NextToken {token[:40]!r} is not valid.") from None
    return after, limit


def _page(out: dict[str, Any], key: str, items: list, seqs: list[int], limit: int) -> dict[str, Any]:
    out[key] = items
    out["NumResults"] = len(items)
    if len(items) == limit and seqs:
        out["NextToken"] = base64.urlsafe_b64encode(json.dumps({"after": seqs[-1]}).encode()).decode()
    return out


# --------------------------------------------------------------------------------------------------
# Operations: (store, params, now) -> response dict. Each runs inside one store transaction.

def op_create_hit_type(s: Store, p, now):
    validate_limits(p)
    return {"HITTypeId": s.hit_type(p, now)}


def op_create_hit(s: Store, p, now):
    validate_limits(p)
    if "Question" not in p:
        raise _bad("The local sandbox needs a Question (HITLayoutId is not supported).")
    validate_question(p["Question"])
    hid = s.create_hit(s.hit_type(p, now), p, now)
    return {"HIT": hit_json(s.get_hit(hid, now))}


def op_create_hit_with_hit_type(s: Store, p, now):
    validate_limits(p)
    if "Question" not in p:
        raise _bad("The local sandbox needs a Question (HITLayoutId is not supported).")
    validate_question(p["Question"])
    if not s.db.execute("SELECT 1 FROM hit_types WHERE id=?", (p["HITTypeId"],)).fetchone():
        raise SandboxError(f"HITType {p['HITTypeId']} does not exist. ({int(now * 1000)} s)",
                           "AWS.MechanicalTurk.HITTypeDoesNotExist")
    hid = s.create_hit(p["HITTypeId"], p, now)
    return {"HIT": hit_json(s.get_hit(hid, now))}


def op_get_hit(s: Store, p, now):
    return {"HIT": hit_json(s.get_hit(p["HITId"], now))}


def op_list_hits(s: Store, p, now):
    after, limit = _page_args(p)
    views = s.list_hits(now, after, limit)
    return _page({}, "HITs", [hit_json(v) for v in views], [v.row["seq"] for v in views], limit)


def op_list_reviewable_hits(s: Store, p, now):
    after, limit = _page_args(p)
    want = p.get("Status", "Reviewable")
    out, seqs = [], []
    # Filter after paging the underlying table, in batches, so each page holds up to `limit` matches.
    while len(out) < limit:
        batch = s.list_hits(now, after, 200, type_id=p.get("HITTypeId"))
        if not batch:
            break
        for v in batch:
            after = v.row["seq"]
            if v.status == want:
                out.append(hit_json(v))
                seqs.append(after)
                if len(out) == limit:
                    break
    return _page({}, "HITs", out, seqs, limit)


def op_list_assignments(s: Store, p, now):
    after, limit = _page_args(p)
    statuses = p.get("AssignmentStatuses") or list(DONE)
    rows = s.list_assignments(p["HITId"], statuses, after, limit, now)
    return _page({}, "Assignments", [assignment_json(a) for a in rows], [a["seq"] for a in rows], limit)


def op_get_assignment(s: Store, p, now):
    a, v = s.get_assignment(p["AssignmentId"], now)
    return {"Assignment": assignment_json(a), "HIT": hit_json(v)}


def op_approve(s: Store, p, now):
    s.approve(p["AssignmentId"], p.get("RequesterFeedback"), bool(p.get("OverrideRejection")), now)
    return {}


def op_reject(s: Store, p, now):
    s.reject(p["AssignmentId"], p["RequesterFeedback"], now)
    return {}


def op_update_expiration(s: Store, p, now):
    s.update_expiration(p["HITId"], float(p["ExpireAt"]), now)
    return {}


def op_update_review_status(s: Store, p, now):
    s.set_reviewing(p["HITId"], bool(p.get("Revert")), now)
    return {}


def op_delete_hit(s: Store, p, now):
    s.delete_hit(p["HITId"], now)
    return {}


def op_balance(s: Store, p, now):
    return {"AvailableBalance": SANDBOX_BALANCE}


def op_create_qualification_type(s: Store, p, now):
    d = s.create_qualification_type(p, now)
    return {"QualificationType": _qual_json(d)}


def op_get_qualification_type(s: Store, p, now):
    return {"QualificationType": _qual_json(s.get_qualification_type(p["QualificationTypeId"], now))}


def _qual_json(d: dict[str, Any]) -> dict[str, Any]:
    keys = ("QualificationTypeId", "CreationTime", "Name", "Description", "Keywords", "QualificationTypeStatus",
            "Test", "TestDurationInSeconds", "AnswerKey", "RetryDelayInSeconds", "IsRequestable", "AutoGranted",
            "AutoGrantedValue")
    return {k: d[k] for k in keys if k in d}


def op_create_worker_block(s: Store, p, now):
    s.block(p["WorkerId"], p["Reason"], now)
    return {}


def op_delete_worker_block(s: Store, p, now):
    s.unblock(p["WorkerId"])
    return {}


def op_list_worker_blocks(s: Store, p, now):
    after, limit = _page_args(p)
    rows = s.list_blocks(after, limit)
    return _page({}, "WorkerBlocks", [{"WorkerId": r["worker_id"], "Reason": r["reason"]} for r in rows],
                 [r["seq"] for r in rows], limit)


def op_send_bonus(s: Store, p, now):
    if float(p["BonusAmount"]) <= 0:
        raise _bad("BonusAmount must be greater than 0.")
    s.send_bonus(p, now)
    return {}


def op_list_bonus_payments(s: Store, p, now):
    if bool(p.get("HITId")) == bool(p.get("AssignmentId")):
        raise _bad("Give exactly one of HITId and AssignmentId.")
    after, limit = _page_args(p)
    rows = s.list_bonuses(hit_id=p.get("HITId"), assignment_id=p.get("AssignmentId"), after_seq=after,
                          limit=limit)
    items = [{"WorkerId": r["worker_id"], "BonusAmount": r["amount"], "AssignmentId": r["assignment_id"],
              "Reason": r["reason"], "GrantTime": r["time"]} for r in rows]
    return _page({}, "BonusPayments", items, [r["seq"] for r in rows], limit)


OPERATIONS: dict[str, Callable[[Store, dict, float], dict]] = {
    "CreateHITType": op_create_hit_type,
    "CreateHIT": op_create_hit,
    "CreateHITWithHITType": op_create_hit_with_hit_type,
    "GetHIT": op_get_hit,
    "ListHITs": op_list_hits,
    "ListReviewableHITs": op_list_reviewable_hits,
    "ListAssignmentsForHIT": op_list_assignments,
    "GetAssignment": op_get_assignment,
    "ApproveAssignment": op_approve,
    "RejectAssignment": op_reject,
    "UpdateExpirationForHIT": op_update_expiration,
    "UpdateHITReviewStatus": op_update_review_status,
    "DeleteHIT": op_delete_hit,
    "GetAccountBalance": op_balance,
    "CreateQualificationType": op_create_qualification_type,
    "GetQualificationType": op_get_qualification_type,
    "CreateWorkerBlock": op_create_worker_block,
    "DeleteWorkerBlock": op_delete_worker_block,
    "ListWorkerBlocks": op_list_worker_blocks,
    "SendBonus": op_send_bonus,
    "ListBonusPayments": op_list_bonus_payments,
}


# --------------------------------------------------------------------------------------------------
# Wire responses and the endpoint

def json_response(status: int, body: dict[str, Any], request_id: str | None = None) -> Response:
    resp = Response(json.dumps(body), status=status, content_type="application/x-amz-json-1.1")
    resp.headers["x-amzn-RequestId"] = request_id or str(uuid.uuid4())
    return resp


def error_response(status: int, kind: str, message: str, code: str | None = None) -> Response:
    body: dict[str, Any] = {"__type": kind}
    if code:
        body["Message"] = message
        body["TurkErrorCode"] = code
    else:
        body["message"] = message
    return json_response(status, body)


def api(app: SandboxApp, request: Request) -> Response:
    """``POST /``: one requester API operation (X-Amz-Target), with the configured faults applied."""
    target = request.headers.get("X-Amz-Target", "")
    if not target.startswith(TARGET_PREFIX):
        return error_response(400, "UnknownOperationException", f"Missing or unknown X-Amz-Target {target[:80]!r}")
    op = target[len(TARGET_PREFIX):]
    model = service_model()
    if op not in model.operation_names:
        return error_response(400, "UnknownOperationException", f"Unknown operation {op[:80]!r}")
    if op not in OPERATIONS:
        return error_response(400, "UnknownOperationException", f"The local sandbox does not implement {op}")
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
    if ctype not in ("application/x-amz-json-1.1", "application/json"):
        return error_response(400, "SerializationException",
                      f"Content-Type must be application/x-amz-json-1.1, got {ctype[:80]!r}")
    if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
        return error_response(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    length = request.content_length
    if length is not None and length > app.max_body:
        return error_response(413, "RequestEntityTooLargeException",
                      f"The request body is {length} bytes; the limit is {app.max_body}")
    raw = request.get_data(cache=False)  # raises 413 past max_content_length
    try:
        params = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return error_response(400, "SerializationException", f"The request body is not valid JSON: {exc}")
    if not isinstance(params, dict):
        return error_response(400, "SerializationException", "The request body must be a JSON object")

    decision = app.faults.decide(op)
    if decision.delay_s:
        time.sleep(decision.delay_s)
    if decision.action == "throttle":
        return error_response(400, "ThrottlingException", "Rate exceeded")
    if decision.action == "error":
        return error_response(500, "ServiceFault", "We encountered an internal error. Please try again.",
                      "AWS.MechanicalTurk.InternalError")
    if decision.action == "drop":
        raise DropConnection("sandbox fault: connection dropped before the operation")

    try:
        validate_shape(model.operation_model(op).input_shape, params, "")
        with app.store.transaction() as now:
            body = OPERATIONS[op](app.store, params, now)
    except SandboxError as exc:
        return error_response(exc.status, exc.kind, exc.message, exc.code)
    with app.calls_lock:
        app.calls[op] = app.calls.get(op, 0) + 1
    if decision.action == "drop_after":
        raise DropConnection("sandbox fault: connection dropped after the operation")
    return json_response(200, body)
