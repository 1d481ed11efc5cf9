"""The local MTurk's qualification workflow and worker profiles: state, requirement checks, API operations.

- **Qualification types**: custom types (with a QuestionForm test and an AnswerKey, or auto-granted, or
  granted by hand) and MTurk's system types, whose values the sandbox derives from each worker's
  profile and history (:data:`SYSTEM_TYPES`).
- **Qualifications** (grants with an integer value, or a locale), **requests** (a worker asks, or takes
  the test; an AnswerKey grades it at once, otherwise the requester accepts or rejects it).
- **Worker profiles**: locale, Adult, Masters, and work done elsewhere (approved / rejected / submitted
  counts added to what the worker did on this sandbox), set by ``mturk-eval sandbox workers add`` or
  ``POST /_sandbox/workers``. A worker the sandbox has not been told about is a US worker with no
  history; the approval rate is over approved + rejected work (100% before any is decided, as MTurk
  counts new workers).
- **Requirements** (:func:`validate_requirements` when a HIT type is made, :func:`requirement_access`
  on the worker site): comparators, locales, ActionsGuarded (Accept < PreviewAndAccept <
  DiscoverPreviewAndAccept, and the deprecated RequiredToPreview).
- **Messages** to workers (NotifyWorkers, grants, revocations, rejected requests), shown on the worker site.

:class:`QualificationState` is mixed into the sandbox's ``Store`` (same SQLite connection and
transaction); the ``op_*`` functions are the API operations, registered in :data:`OPERATIONS`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from mturk_eval.emulators.mturk import question_form as qf

LOCALE = "00000000000000000071"
PERCENT_APPROVED = "000000000000000000L0"
NUMBER_APPROVED = "00000000000000000040"
ADULT = "00000000000000000060"
MASTERS_SANDBOX = "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6"
MASTERS_PRODUCTION = "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"
PERCENT_SUBMITTED = "00000000000000000000"
PERCENT_ABANDONED = "00000000000000000070"
PERCENT_RETURNED = "000000000000000000E0"
PERCENT_REJECTED = "000000000000000000S0"
SYSTEM_TYPES = {
    LOCALE: ("Worker_Locale", "The Worker's location, as the worker gave it (ISO 3166 country, ISO 3166-2 subdivision)."),
    PERCENT_APPROVED: ("Worker_PercentAssignmentsApproved", "The percentage of submitted assignments approved."),
    NUMBER_APPROVED: ("Worker_NumberHITsApproved", "The number of HITs the Worker has had approved."),
    ADULT: ("Worker_Adult", "The Worker agreed to see adult content."),
    MASTERS_SANDBOX: ("Masters", "Masters (sandbox id)."),
    MASTERS_PRODUCTION: ("Masters", "Masters (production id)."),
    PERCENT_SUBMITTED: ("Worker_PercentAssignmentsSubmitted", "The percentage of accepted assignments submitted."),
    PERCENT_ABANDONED: ("Worker_PercentAssignmentsAbandoned", "The percentage of accepted assignments abandoned."),
    PERCENT_RETURNED: ("Worker_PercentAssignmentsReturned", "The percentage of accepted assignments returned."),
    PERCENT_REJECTED: ("Worker_PercentAssignmentsRejected", "The percentage of submitted assignments rejected."),
}
INTEGER_COMPARATORS = ("LessThan", "LessThanOrEqualTo", "GreaterThan", "GreaterThanOrEqualTo")
LOCALE_COMPARATORS = ("EqualTo", "NotEqualTo", "In", "NotIn")
MAX_SET_VALUES = 15
ACTION_LEVELS = {"Accept": 1, "PreviewAndAccept": 2, "DiscoverPreviewAndAccept": 3}
NOTIFY_MAX_WORKERS = 100
NOTIFY_MAX_SUBJECT = 200
NOTIFY_MAX_TEXT = 4096
MAX_TEST_BYTES = 65535
NOTIFICATION_VERSION = "2006-05-05"
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

QUAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS qualifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type_id TEXT NOT NULL, worker_id TEXT NOT NULL,
    integer_value INTEGER, status TEXT NOT NULL, grant_time REAL NOT NULL, reason TEXT,
    UNIQUE (type_id, worker_id));
CREATE TABLE IF NOT EXISTS qualification_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, type_id TEXT NOT NULL,
    worker_id TEXT NOT NULL, status TEXT NOT NULL, test TEXT, answer TEXT, start_time REAL NOT NULL,
    submit_time REAL, reason TEXT);
CREATE TABLE IF NOT EXISTS worker_profiles (
    worker_id TEXT PRIMARY KEY, country TEXT NOT NULL, subdivision TEXT, adult INTEGER NOT NULL,
    masters INTEGER NOT NULL, prior_submitted INTEGER NOT NULL, prior_approved INTEGER NOT NULL,
    prior_rejected INTEGER NOT NULL, prior_abandoned INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS worker_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, worker_id TEXT NOT NULL, subject TEXT NOT NULL,
    text TEXT NOT NULL, kind TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS notification_settings (
    hit_type_id TEXT PRIMARY KEY, spec TEXT, active INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS test_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, spec TEXT NOT NULL, event_type TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS hit_extras (
    hit_id TEXT PRIMARY KEY, initial_max_assignments INTEGER NOT NULL, assignment_review_policy TEXT,
    hit_review_policy TEXT);
"""


def _service_error(message: str, code: str):
    """models.SandboxError (imported here: models mixes this module's QualificationState into its Store)."""
    from mturk_eval.emulators.mturk.models import SandboxError

    return SandboxError(message, code)


def _new_id() -> str:
    from mturk_eval.emulators.mturk.models import new_id

    return new_id()


def _err(message: str, code: str, now: float | None = None):
    suffix = f" ({int(now * 1000)} s)" if now is not None else ""
    return _service_error(message + suffix, f"AWS.MechanicalTurk.{code}")


def _bad(message: str):
    return _service_error(message, "AWS.MechanicalTurk.InvalidParameterValue")


@dataclass
class Access:
    """What a worker may do with a HIT, and the first requirement each refusal comes from."""

    discover: bool
    preview: bool
    accept: bool
    unmet: list[str]            # human-readable requirement descriptions the worker does not meet


# --------------------------------------------------------------------------------------------------
# Requirements: validation and evaluation (pure functions)

def describe_requirement(req: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """``Worker_Locale In GB, US-CA``: a requirement as the worker site shows it (custom types by name)."""
    tid = req["QualificationTypeId"]
    name = SYSTEM_TYPES[tid][0] if tid in SYSTEM_TYPES else (names or {}).get(tid, tid)
    values = [f"{v['Country']}{'-' + v['Subdivision'] if v.get('Subdivision') else ''}"
              for v in req.get("LocaleValues") or []] or [str(v) for v in req.get("IntegerValues") or []]
    return f"{name} {req['Comparator']}{' ' + ', '.join(values) if values else ''}"


def validate_requirement(req: dict[str, Any], i: int, type_exists: Callable[[str], bool]) -> None:
    """MTurk's rules for one QualificationRequirement (after the service model's own checks)."""
    where = f"QualificationRequirements[{i}]"
    tid, comp = req["QualificationTypeId"], req["Comparator"]
    ints, locs = req.get("IntegerValues"), req.get("LocaleValues")
    if tid not in SYSTEM_TYPES and not type_exists(tid):
        raise _service_error(f"{where}: QualificationType {tid} does not exist (or is not Active).",
                             "AWS.MechanicalTurk.QualificationTypeDoesNotExist")
    if ints and locs:
        raise _bad(f"{where}: give IntegerValues or LocaleValues, not both.")
    if comp in ("Exists", "DoesNotExist"):
        if ints or locs:
            raise _bad(f"{where}: IntegerValues and LocaleValues must not be present with the {comp} comparator.")
        return
    if tid == LOCALE:
        if ints:
            raise _bad(f"{where}: IntegerValue cannot be used with the Worker_Locale QualificationType"
                       f" {LOCALE}; use LocaleValues.")
        if comp not in LOCALE_COMPARATORS:
            raise _bad(f"{where}: LocaleValue can only be used with the EqualTo, NotEqualTo, In and NotIn"
                       f" comparators, not {comp}.")
        if not locs:
            raise _bad(f"{where}: the {comp} comparator on Worker_Locale needs LocaleValues.")
        for v in locs:
            for key in ("Country", "Subdivision"):
                if key in v and not _COUNTRY_RE.match(v[key]):
                    raise _bad(f"{where}: {key} {v[key]!r} is not an ISO 3166 code (two capital letters).")
    else:
        if locs:
            raise _bad(f"{where}: LocaleValue can only be used with the Worker_Locale QualificationType {LOCALE}.")
        if not ints:
            raise _bad(f"{where}: the {comp} comparator needs IntegerValues.")
    values = locs or ints or []
    if comp in ("In", "NotIn"):
        if len(values) > MAX_SET_VALUES:
            raise _bad(f"{where}: the {comp} comparator takes at most {MAX_SET_VALUES} values, got {len(values)}.")
    elif len(values) != 1:
        raise _bad(f"{where}: the {comp} comparator takes exactly one value, got {len(values)}.")


def validate_requirements(reqs: list[dict[str, Any]], type_exists: Callable[[str], bool]) -> None:
    for i, req in enumerate(reqs):
        validate_requirement(req, i, type_exists)


def _locale_matches(have: dict[str, str], want: dict[str, Any]) -> bool:
    if have.get("Country") != want["Country"]:
        return False
    return not want.get("Subdivision") or have.get("Subdivision") == want["Subdivision"]


def requirement_met(req: dict[str, Any], value: dict[str, Any] | None) -> bool:
    """Does a worker's qualification ``value`` ({"IntegerValue": n} or {"LocaleValue": {...}}, None when
    the worker does not hold it) meet ``req``? Without the qualification only DoesNotExist is met."""
    comp = req["Comparator"]
    if comp == "DoesNotExist":
        return value is None
    if value is None:
        return False
    if comp == "Exists":
        return True
    if "LocaleValue" in value:
        hits = [_locale_matches(value["LocaleValue"], w) for w in req.get("LocaleValues") or []]
        return {"EqualTo": any, "In": any}.get(comp, lambda h: not any(h))(hits)
    n = value.get("IntegerValue")
    if n is None:
        return False
    ints = req.get("IntegerValues") or []
    if comp == "In":
        return n in ints
    if comp == "NotIn":
        return n not in ints
    v = ints[0]
    return {"LessThan": n < v, "LessThanOrEqualTo": n <= v, "GreaterThan": n > v,
            "GreaterThanOrEqualTo": n >= v, "EqualTo": n == v, "NotEqualTo": n != v}[comp]


def requirement_access(reqs: list[dict[str, Any]], values: dict[str, dict[str, Any]],
                       names: dict[str, str] | None = None) -> Access:
    """What the worker holding ``values`` (type id -> value) may do with a HIT requiring ``reqs``."""
    level_failed = 0
    unmet = []
    for req in reqs:
        if requirement_met(req, values.get(req["QualificationTypeId"])):
            continue
        guarded = req.get("ActionsGuarded") or ("PreviewAndAccept" if req.get("RequiredToPreview") else "Accept")
        level_failed = max(level_failed, ACTION_LEVELS[guarded])
        unmet.append(describe_requirement(req, names))
    return Access(discover=level_failed < 3, preview=level_failed < 2, accept=level_failed < 1, unmet=unmet)


def profile_meeting(reqs: list[dict[str, Any]]) -> dict[str, Any]:
    """A worker profile meeting the system requirements in ``reqs`` (for simulated workers)."""
    prof: dict[str, Any] = {"country": "US", "subdivision": None, "adult": False, "masters": False,
                            "approved": 0, "rejected": 0}
    for req in reqs:
        tid, comp = req["QualificationTypeId"], req["Comparator"]
        if tid == LOCALE and comp in ("EqualTo", "In") and req.get("LocaleValues"):
            loc = req["LocaleValues"][0]
            prof["country"], prof["subdivision"] = loc["Country"], loc.get("Subdivision")
        elif tid == NUMBER_APPROVED and req.get("IntegerValues"):
            prof["approved"] = max(prof["approved"], max(req["IntegerValues"]) + 1)
        elif tid == ADULT and comp != "DoesNotExist":
            prof["adult"] = True
        elif tid in (MASTERS_SANDBOX, MASTERS_PRODUCTION) and comp != "DoesNotExist":
            prof["masters"] = True
    return prof


# --------------------------------------------------------------------------------------------------
# Notifications and tests: validation

def validate_notification(spec: dict[str, Any], *, allow_ping: bool) -> None:
    if spec["Version"] != NOTIFICATION_VERSION:
        raise _bad(f"Notification Version must be {NOTIFICATION_VERSION}, got {spec['Version']!r}.")
    dest, transport = spec["Destination"], spec["Transport"]
    if transport == "Email" and not _EMAIL_RE.match(dest):
        raise _bad(f"Notification Destination {dest[:80]!r} is not an email address (Transport Email).")
    if transport == "SQS" and not re.match(r"^https://sqs\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\d+/[\w-]+$", dest):
        raise _bad(f"Notification Destination {dest[:80]!r} is not an SQS queue URL (Transport SQS).")
    if transport == "SNS" and not re.match(r"^arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$", dest):
        raise _bad(f"Notification Destination {dest[:80]!r} is not an SNS topic ARN (Transport SNS).")
    if not spec["EventTypes"]:
        raise _bad("Notification EventTypes must name at least one event type.")
    if "Ping" in spec["EventTypes"] and not allow_ping:
        raise _bad("The Ping event type is only valid for SendTestEventNotification.")


def _check_test(p: dict[str, Any]) -> qf.QuestionForm | None:
    """The Test / AnswerKey / AutoGranted rules of Create/UpdateQualificationType; the parsed test."""
    test = p.get("Test")
    if test is None:
        if p.get("AnswerKey") is not None:
            raise _bad("An AnswerKey needs a Test.")
        if p.get("TestDurationInSeconds") is not None:
            raise _bad("TestDurationInSeconds needs a Test.")
        return None
    if p.get("AutoGranted"):
        raise _bad("A Qualification type with a Test cannot be AutoGranted.")
    if p.get("TestDurationInSeconds") is None:
        raise _bad("If the Test parameter is specified, TestDurationInSeconds must also be specified.")
    if not 1 <= p["TestDurationInSeconds"] <= 31536000:
        raise _bad(f"TestDurationInSeconds {p['TestDurationInSeconds']} must be between 1 and 31536000.")
    for key in ("Test", "AnswerKey"):
        if p.get(key) is not None and len(p[key].encode("utf-8")) > MAX_TEST_BYTES:
            raise _bad(f"The {key} must not be longer than {MAX_TEST_BYTES} bytes.")
    try:
        form = qf.parse_question_form(test)
        if p.get("AnswerKey") is not None:
            qf.parse_answer_key(p["AnswerKey"], form)
    except qf.QuestionFormError as exc:
        raise _service_error(str(exc), "AWS.MechanicalTurk.XMLParseError") from None
    return form


# --------------------------------------------------------------------------------------------------
# State (mixed into the Store: self.db is its SQLite connection, inside its transaction)

class QualificationState:
    db: Any

    # -- types ------------------------------------------------------------------------------------
    def qualification_type_exists(self, tid: str) -> bool:
        return tid in SYSTEM_TYPES or self.db.execute(
            "SELECT 1 FROM qualification_types WHERE id=? AND json_extract(data, '$.QualificationTypeStatus')"
            " = 'Active'", (tid,)).fetchone() is not None

    def _custom_type(self, tid: str, now: float) -> dict[str, Any]:
        row = self.db.execute("SELECT data FROM qualification_types WHERE id=?", (tid,)).fetchone()
        if row is None:
            if tid in SYSTEM_TYPES:
                raise _err(f"You can only do this with a Qualification type that you created; {tid} is a"
                           " system Qualification type.", "QualificationTypeNotOwned", now)
            raise _err(f"QualificationType {tid} does not exist.", "QualificationTypeDoesNotExist", now)
        return json.loads(row["data"])

    def system_type(self, tid: str, now: float) -> dict[str, Any]:
        name, desc = SYSTEM_TYPES[tid]
        return {"QualificationTypeId": tid, "CreationTime": now, "Name": name, "Description": desc,
                "Keywords": "system", "QualificationTypeStatus": "Active", "IsRequestable": False,
                "AutoGranted": False}

    def create_qualification_type_checked(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        _check_test(p)
        if p.get("AutoGranted") and p.get("AutoGrantedValue") is None:
            p = {**p, "AutoGrantedValue": 1}
        if p.get("RetryDelayInSeconds") is not None and p["RetryDelayInSeconds"] < 0:
            raise _bad("RetryDelayInSeconds must not be negative.")
        d = self.create_qualification_type(p, now)  # the Store's: unique names
        d["IsRequestable"] = True
        d.setdefault("AutoGranted", False)
        self._save_type(d)
        return d

    def _save_type(self, d: dict[str, Any]) -> None:
        self.db.execute("UPDATE qualification_types SET data=? WHERE id=?",
                        (json.dumps(d), d["QualificationTypeId"]))

    def get_any_qualification_type(self, tid: str, now: float) -> dict[str, Any]:
        if tid in SYSTEM_TYPES and not self.db.execute("SELECT 1 FROM qualification_types WHERE id=?",
                                                       (tid,)).fetchone():
            return self.system_type(tid, now)
        return self._custom_type(tid, now)

    def update_qualification_type(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        d = self._custom_type(p["QualificationTypeId"], now)
        if p.get("AutoGranted") and (p.get("Test") or d.get("Test")):
            raise _bad("This Qualification type has a test; it cannot be updated to be AutoGranted.")
        if p.get("Test") is not None:
            _check_test({**p, "AutoGranted": False})
        elif p.get("AnswerKey") is not None or p.get("TestDurationInSeconds") is not None:
            raise _bad("To update the test duration or answer key, give the Test again (the original questions).")
        if p.get("RetryDelayInSeconds") is not None and p["RetryDelayInSeconds"] < 0:
            raise _bad("RetryDelayInSeconds must not be negative (retries cannot be disabled once enabled).")
        for key in ("Description", "QualificationTypeStatus", "RetryDelayInSeconds", "AutoGranted",
                    "AutoGrantedValue"):
            if key in p:
                d[key] = p[key]
        if p.get("Test") is not None:
            d["Test"], d["TestDurationInSeconds"] = p["Test"], p["TestDurationInSeconds"]
            if p.get("AnswerKey") is not None:
                d["AnswerKey"] = p["AnswerKey"]
            else:
                d.pop("AnswerKey", None)
        if d.get("AutoGranted") and d.get("AutoGrantedValue") is None:
            d["AutoGrantedValue"] = 1
        self._save_type(d)
        return d

    def delete_qualification_type(self, tid: str, now: float) -> None:
        name = self._custom_type(tid, now)["Name"]
        for r in self.db.execute("SELECT id, worker_id FROM qualification_requests WHERE type_id=? AND"
                                 " status='Submitted'", (tid,)).fetchall():
            self._message(r["worker_id"], f"Qualification request rejected: {name}",
                          f"Your request for the Qualification {name!r} was rejected: the type was deleted.",
                          "QualificationRequestRejected", now)
        self.db.execute("UPDATE qualification_requests SET status='Rejected', reason='Qualification type deleted'"
                        " WHERE type_id=? AND status IN ('Submitted', 'Testing')", (tid,))
        self.db.execute("DELETE FROM qualification_types WHERE id=?", (tid,))

    def list_qualification_types(self, p: dict[str, Any], after: int, limit: int,
                                 now: float) -> list[tuple[int, dict]]:
        query = (p.get("Query") or "").lower()
        out: list[tuple[int, dict]] = []
        if not p.get("MustBeOwnedByCaller"):
            for i, tid in enumerate(SYSTEM_TYPES, start=1):
                if i > after and not p.get("MustBeRequestable"):
                    d = self.system_type(tid, now)
                    if not query or query in (d["Name"] + " " + d["Description"] + " " + d["Keywords"]).lower():
                        out.append((i, d))
        base = len(SYSTEM_TYPES)
        for r in self.db.execute("SELECT seq, data FROM qualification_types WHERE seq > ? ORDER BY seq",
                                 (max(0, after - base),)).fetchall():
            d = json.loads(r["data"])
            if p.get("MustBeRequestable") and not d.get("IsRequestable", True):
                continue
            text = " ".join(str(d.get(k) or "") for k in ("Name", "Description", "Keywords")).lower()
            if query and query not in text:
                continue
            out.append((base + r["seq"], d))
        return out[:limit]

    # -- grants -----------------------------------------------------------------------------------
    def grant(self, tid: str, worker_id: str, value: int, now: float, *, notify: bool = True) -> None:
        self.db.execute(
            "INSERT INTO qualifications (type_id, worker_id, integer_value, status, grant_time) VALUES (?,?,?,?,?)"
            " ON CONFLICT (type_id, worker_id) DO UPDATE SET integer_value=excluded.integer_value,"
            " status='Granted', grant_time=excluded.grant_time, reason=NULL", (tid, worker_id, value, "Granted", now))
        if notify:
            name = self._custom_type(tid, now)["Name"]
            self._message(worker_id, f"Qualification granted: {name}",
                          f"You have been granted the Qualification {name!r} with the value {value}.",
                          "QualificationGranted", now)

    def associate(self, p: dict[str, Any], now: float) -> None:
        tid = p["QualificationTypeId"]
        self._custom_type(tid, now)
        self.grant(tid, p["WorkerId"], int(p.get("IntegerValue", 1)), now, notify=p.get("SendNotification", True))

    def disassociate(self, p: dict[str, Any], now: float) -> None:
        tid, wid = p["QualificationTypeId"], p["WorkerId"]
        d = self._custom_type(tid, now)
        row = self.db.execute("SELECT status FROM qualifications WHERE type_id=? AND worker_id=?",
                              (tid, wid)).fetchone()
        if row is None or row["status"] != "Granted":
            raise _err(f"Worker {wid} does not have the Qualification {tid}.", "QualificationDoesNotExist", now)
        self.db.execute("UPDATE qualifications SET status='Revoked', reason=? WHERE type_id=? AND worker_id=?",
                        (p.get("Reason"), tid, wid))
        reason = f" Reason: {p['Reason']}" if p.get("Reason") else ""
        self._message(wid, f"Qualification revoked: {d['Name']}",
                      f"Your Qualification {d['Name']!r} was revoked.{reason}", "QualificationRevoked", now)

    def qualification_score(self, tid: str, worker_id: str, now: float) -> dict[str, Any]:
        if tid in SYSTEM_TYPES:
            value = self.system_values(worker_id).get(tid)
            if value is None:
                raise _err(f"Worker {worker_id} does not have the Qualification {tid}.",
                           "QualificationDoesNotExist", now)
            return {"QualificationTypeId": tid, "WorkerId": worker_id, "Status": "Granted", "GrantTime": now,
                    **value}
        self._custom_type(tid, now)
        row = self.db.execute("SELECT * FROM qualifications WHERE type_id=? AND worker_id=?", (tid, worker_id)).fetchone()
        if row is None:
            raise _err(f"Worker {worker_id} does not have the Qualification {tid}.", "QualificationDoesNotExist", now)
        return qualification_json(dict(row))

    def workers_with_type(self, tid: str, status: str | None, after: int, limit: int, now: float) -> list[dict]:
        self._custom_type(tid, now)
        sql, args = "SELECT * FROM qualifications WHERE type_id=? AND seq > ?", [tid, after]
        if status:
            sql += " AND status=?"
            args.append(status)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()]

    # -- requests ---------------------------------------------------------------------------------
    def request_qualification(self, tid: str, worker_id: str, now: float) -> dict[str, Any]:
        """A worker asks for a qualification on the worker site: auto-grant, start the test, or queue it."""
        d = self._custom_type(tid, now)
        if d.get("QualificationTypeStatus") != "Active":
            raise _err("This Qualification type is not active.", "QualificationTypeNotActive")
        last = self.db.execute("SELECT * FROM qualification_requests WHERE type_id=? AND worker_id=? ORDER BY seq"
                               " DESC LIMIT 1", (tid, worker_id)).fetchone()
        held = self.db.execute("SELECT status FROM qualifications WHERE type_id=? AND worker_id=?",
                               (tid, worker_id)).fetchone()
        if last is not None:
            if last["status"] == "Testing" and now < last["start_time"] + (d.get("TestDurationInSeconds") or 0):
                return dict(last)
            if last["status"] == "Submitted":
                raise _err("You have already requested this Qualification; the requester has not answered yet.",
                           "QualificationRequestPending")
            retry = d.get("RetryDelayInSeconds")
            if retry is None:
                raise _err("You have already requested this Qualification, and it cannot be requested again.",
                           "QualificationRetryNotAllowed")
            if now < last["start_time"] + retry:
                raise _err(f"You can request this Qualification again in {int(last['start_time'] + retry - now)} s.",
                           "QualificationRetryTooSoon")
        if held is not None and held["status"] == "Granted" and not d.get("Test"):
            raise _err("You already have this Qualification.", "QualificationAlreadyGranted")
        rid = _new_id()
        if d.get("AutoGranted"):
            status = "Approved"
        elif d.get("Test"):
            status = "Testing"
        else:
            status = "Submitted"
        self.db.execute("INSERT INTO qualification_requests (id, type_id, worker_id, status, test, start_time,"
                        " submit_time) VALUES (?,?,?,?,?,?,?)",
                        (rid, tid, worker_id, status, d.get("Test"), now, None if status == "Testing" else now))
        if status == "Approved":
            self.grant(tid, worker_id, int(d.get("AutoGrantedValue", 1)), now)
        return dict(self.db.execute("SELECT * FROM qualification_requests WHERE id=?", (rid,)).fetchone())

    def submit_qualification_test(self, rid: str, worker_id: str, answer_xml: str, now: float) -> dict[str, Any]:
        r = self._request(rid, now)
        if r["worker_id"] != worker_id or r["status"] != "Testing":
            raise _err("This Qualification test is not open for you.", "InvalidQualificationRequestState")
        d = self._custom_type(r["type_id"], now)
        if now > r["start_time"] + (d.get("TestDurationInSeconds") or 0):
            self.db.execute("UPDATE qualification_requests SET status='Expired' WHERE id=?", (rid,))
            raise _err("The time allowed for this Qualification test has passed.", "QualificationTestExpired")
        status = "Submitted"
        if d.get("AnswerKey"):
            value = qf.score(qf.parse_answer_key(d["AnswerKey"], qf.parse_question_form(r["test"])), answer_xml)
            self.grant(r["type_id"], worker_id, value, now)
            status = "Approved"
        self.db.execute("UPDATE qualification_requests SET status=?, answer=?, submit_time=? WHERE id=?",
                        (status, answer_xml, now, rid))
        return self._request(rid, now)

    def qualification_request_for(self, rid: str, worker_id: str, now: float) -> dict[str, Any]:
        """A worker's own request whose test is open (not yet answered, within TestDurationInSeconds)."""
        r = self._request(rid, now)
        if r["worker_id"] != worker_id or r["status"] != "Testing" or not r["test"]:
            raise _err("This Qualification test is not open for you.", "InvalidQualificationRequestState")
        d = self._custom_type(r["type_id"], now)
        if now > r["start_time"] + (d.get("TestDurationInSeconds") or 0):
            raise _err("The time allowed for this Qualification test has passed.", "QualificationTestExpired")
        return r

    def _request(self, rid: str, now: float) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM qualification_requests WHERE id=?", (rid,)).fetchone()
        if row is None:
            raise _err(f"QualificationRequest {rid} does not exist.", "QualificationRequestDoesNotExist", now)
        return dict(row)

    def list_qualification_requests(self, tid: str | None, after: int, limit: int, now: float) -> list[dict]:
        if tid:
            self._custom_type(tid, now)
        sql, args = "SELECT * FROM qualification_requests WHERE status='Submitted' AND seq > ?", [after]
        if tid:
            sql += " AND type_id=?"
            args.append(tid)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()]

    def decide_qualification_request(self, rid: str, accept: bool, value: int | None, reason: str | None,
                                     now: float) -> None:
        r = self._request(rid, now)
        if r["status"] != "Submitted":
            raise _err(f"QualificationRequest {rid} is {r['status']}; only Submitted requests can be decided.",
                       "InvalidQualificationRequestState", now)
        self.db.execute("UPDATE qualification_requests SET status=?, reason=? WHERE id=?",
                        ("Approved" if accept else "Rejected", reason, rid))
        if accept:
            self.grant(r["type_id"], r["worker_id"], 1 if value is None else value, now)
        else:
            name = self._custom_type(r["type_id"], now)["Name"]
            self._message(r["worker_id"], f"Qualification request rejected: {name}",
                          f"Your request for the Qualification {name!r} was rejected."
                          + (f" Reason: {reason}" if reason else ""), "QualificationRequestRejected", now)

    # -- profiles and values ----------------------------------------------------------------------
    def set_worker_profile(self, worker_id: str, now: float, *, country: str = "US", subdivision: str | None = None,
                           adult: bool = False, masters: bool = False, approved: int = 0, rejected: int = 0,
                           submitted: int | None = None, abandoned: int = 0) -> dict[str, Any]:
        if not re.match(r"^A[A-Z0-9]{1,63}$", worker_id):
            raise _bad(f"worker id {worker_id!r} must match ^A[A-Z0-9]+$")
        for key, v in (("country", country), ("subdivision", subdivision)):
            if v is not None and not _COUNTRY_RE.match(v):
                raise _bad(f"{key} {v!r} must be an ISO 3166 code (two capital letters)")
        for key, v in (("approved", approved), ("rejected", rejected), ("abandoned", abandoned),
                       ("submitted", submitted)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise _bad(f"{key} must be a whole number >= 0, got {v!r}")
        submitted = approved + rejected if submitted is None else submitted
        if submitted < approved + rejected:
            raise _bad(f"submitted ({submitted}) must be at least approved + rejected ({approved + rejected})")
        self.db.execute("INSERT OR REPLACE INTO worker_profiles VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (worker_id, country, subdivision, int(adult), int(masters), submitted, approved, rejected,
                         abandoned, now))
        return self.worker_profile(worker_id)

    def worker_profile(self, worker_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM worker_profiles WHERE worker_id=?", (worker_id,)).fetchone()
        prof = dict(row) if row else {"worker_id": worker_id, "country": "US", "subdivision": None, "adult": 0,
                                      "masters": 0, "prior_submitted": 0, "prior_approved": 0,
                                      "prior_rejected": 0, "prior_abandoned": 0}
        counts = dict(self.db.execute("SELECT status, COUNT(*) FROM assignments WHERE worker_id=? GROUP BY status",
                                      (worker_id,)).fetchall())
        here_submitted = counts.get("Submitted", 0) + counts.get("Approved", 0) + counts.get("Rejected", 0)
        prof["submitted"] = prof["prior_submitted"] + here_submitted
        prof["approved"] = prof["prior_approved"] + counts.get("Approved", 0)
        prof["rejected"] = prof["prior_rejected"] + counts.get("Rejected", 0)
        prof["abandoned"] = prof["prior_abandoned"] + counts.get("Abandoned", 0)
        prof["accepted"] = prof["submitted"] + prof["abandoned"] + counts.get("Accepted", 0)
        prof["known"] = row is not None
        return prof

    def list_worker_profiles(self) -> list[dict[str, Any]]:
        ids = [r[0] for r in self.db.execute("SELECT worker_id FROM worker_profiles ORDER BY worker_id")]
        return [self.worker_profile(w) for w in ids]

    def system_values(self, worker_id: str) -> dict[str, dict[str, Any]]:
        p = self.worker_profile(worker_id)
        loc = {"Country": p["country"], **({"Subdivision": p["subdivision"]} if p["subdivision"] else {})}

        def pct(n: int, d: int, empty: int) -> int:
            return empty if d == 0 else (100 * n) // d

        out = {
            LOCALE: {"LocaleValue": loc},
            # Over decided work (approved + rejected): work still waiting for review counts for neither.
            PERCENT_APPROVED: {"IntegerValue": pct(p["approved"], p["approved"] + p["rejected"], 100)},
            PERCENT_REJECTED: {"IntegerValue": pct(p["rejected"], p["approved"] + p["rejected"], 0)},
            NUMBER_APPROVED: {"IntegerValue": p["approved"]},
            PERCENT_SUBMITTED: {"IntegerValue": pct(p["submitted"], p["accepted"], 100)},
            PERCENT_ABANDONED: {"IntegerValue": pct(p["abandoned"], p["accepted"], 0)},
            PERCENT_RETURNED: {"IntegerValue": 0},
        }
        if p["adult"]:
            out[ADULT] = {"IntegerValue": 1}
        if p["masters"]:
            out[MASTERS_SANDBOX] = out[MASTERS_PRODUCTION] = {"IntegerValue": 1}
        return out

    def worker_values(self, worker_id: str) -> dict[str, dict[str, Any]]:
        """Every qualification the worker holds: system values and granted (not revoked) custom ones."""
        out = self.system_values(worker_id)
        for r in self.db.execute("SELECT type_id, integer_value FROM qualifications WHERE worker_id=? AND"
                                 " status='Granted'", (worker_id,)).fetchall():
            out[r["type_id"]] = {"IntegerValue": r["integer_value"]}
        return out

    def access(self, reqs: list[dict[str, Any]], worker_id: str) -> Access:
        if not reqs:
            return Access(True, True, True, [])
        return requirement_access(reqs, self.worker_values(worker_id), self.type_names(reqs))

    def type_names(self, reqs: list[dict[str, Any]]) -> dict[str, str]:
        """Custom type id -> name for the types ``reqs`` name (what the worker site shows)."""
        ids = [r["QualificationTypeId"] for r in reqs if r["QualificationTypeId"] not in SYSTEM_TYPES]
        if not ids:
            return {}
        rows = self.db.execute(f"SELECT id, name FROM qualification_types WHERE id IN ({','.join('?' * len(ids))})",
                               ids).fetchall()
        return {r["id"]: r["name"] for r in rows}

    def held_qualifications(self, worker_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT q.*, t.name FROM qualifications q LEFT JOIN qualification_types t ON"
                               " t.id = q.type_id WHERE q.worker_id=? ORDER BY q.seq", (worker_id,)).fetchall()
        return [dict(r) for r in rows]

    def requestable_types(self, worker_id: str) -> list[dict[str, Any]]:
        out = []
        for r in self.db.execute("SELECT data FROM qualification_types ORDER BY seq").fetchall():
            d = json.loads(r["data"])
            if d.get("QualificationTypeStatus") == "Active":
                last = self.db.execute("SELECT id, status FROM qualification_requests WHERE type_id=? AND worker_id=?"
                                       " ORDER BY seq DESC LIMIT 1", (d["QualificationTypeId"], worker_id)).fetchone()
                d["_request"] = dict(last) if last else None
                out.append(d)
        return out

    # -- messages ---------------------------------------------------------------------------------
    def _message(self, worker_id: str, subject: str, text: str, kind: str, now: float) -> None:
        self.db.execute("INSERT INTO worker_messages (worker_id, subject, text, kind, time) VALUES (?,?,?,?,?)",
                        (worker_id, subject, text, kind, now))

    def notify_workers(self, p: dict[str, Any], now: float) -> list[dict[str, str]]:
        ids = p["WorkerIds"]
        if not ids:
            raise _bad("WorkerIds must name at least one worker.")
        if len(ids) > NOTIFY_MAX_WORKERS:
            raise _bad(f"You can notify up to {NOTIFY_MAX_WORKERS} Workers at a time; got {len(ids)}.")
        if not p["Subject"].strip() or len(p["Subject"]) > NOTIFY_MAX_SUBJECT:
            raise _bad(f"Subject must be 1 to {NOTIFY_MAX_SUBJECT} characters; got {len(p['Subject'])}.")
        if not p["MessageText"].strip() or len(p["MessageText"]) > NOTIFY_MAX_TEXT:
            raise _bad(f"MessageText must be 1 to {NOTIFY_MAX_TEXT} characters; got {len(p['MessageText'])}.")
        failures = []
        for wid in dict.fromkeys(ids):
            worked = self.db.execute("SELECT 1 FROM assignments WHERE worker_id=? AND status IN ('Approved',"
                                     " 'Rejected')", (wid,)).fetchone()
            if not re.match(r"^A[A-Z0-9]{1,63}$", wid):
                failures.append({"NotifyWorkersFailureCode": "HardFailure", "WorkerId": wid,
                                 "NotifyWorkersFailureMessage": f"{wid} is not a valid worker id."})
            elif not worked:
                # MTurk mails only workers whose work this requester has approved or rejected.
                failures.append({"NotifyWorkersFailureCode": "HardFailure", "WorkerId": wid,
                                 "NotifyWorkersFailureMessage": "Cannot send notification to this worker: you"
                                 " have not approved or rejected any work from them."})
            else:
                self._message(wid, p["Subject"], p["MessageText"], "NotifyWorkers", now)
        return failures

    def worker_messages(self, worker_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM worker_messages WHERE worker_id=? ORDER BY seq DESC",
                                                 (worker_id,)).fetchall()]

    # -- HIT extras: extension, review policies, notifications --------------------------------------
    def save_hit_extras(self, hit_id: str, p: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO hit_extras VALUES (?,?,?,?)",
                        (hit_id, int(p.get("MaxAssignments", 1)),
                         json.dumps(p["AssignmentReviewPolicy"]) if p.get("AssignmentReviewPolicy") else None,
                         json.dumps(p["HITReviewPolicy"]) if p.get("HITReviewPolicy") else None))

    def hit_extras(self, hit_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM hit_extras WHERE hit_id=?", (hit_id,)).fetchone()
        if row is None:
            cur = self.db.execute("SELECT max_assignments FROM hits WHERE id=?", (hit_id,)).fetchone()
            return {"initial_max_assignments": cur[0] if cur else 1, "assignment_review_policy": None,
                    "hit_review_policy": None}
        return dict(row)

    def extend_hit(self, p: dict[str, Any], now: float) -> None:
        hid, n = p["HITId"], p["NumberOfAdditionalAssignments"]
        v = self.get_hit(hid, now)
        token = p.get("UniqueRequestToken")
        if self.check_token("CreateAdditionalAssignmentsForHIT", token, now):
            raise _err(f"The request with UniqueRequestToken {token!r} has already been processed for HIT {hid}.",
                       "DuplicateRequest", now)
        if n < 1:
            raise _bad(f"NumberOfAdditionalAssignments must be at least 1, got {n}.")
        if v.status == "Disposed":
            raise _err(f"Hit {hid} has been deleted.", "HITDoesNotExist", now)
        if now >= v.row["expiration"]:
            raise _err(f"HIT {hid} has expired; extend its expiration with UpdateExpirationForHIT first.",
                       "InvalidHITState", now)
        initial = self.hit_extras(hid)["initial_max_assignments"]
        new_total = v.row["max_assignments"] + n
        if initial < 10 <= new_total:
            raise _err(f"HITs created with fewer than 10 assignments cannot be extended to have 10 or more"
                       f" assignments (HIT {hid} was created with {initial}; {v.row['max_assignments']} + {n} ="
                       f" {new_total}).", "InvalidMaximumAssignmentsIncrease", now)
        if new_total > 1000000:
            raise _bad(f"MaxAssignments would become {new_total}; the maximum is 1000000.")
        self.db.execute("UPDATE hits SET max_assignments=?, reviewing=0 WHERE id=?", (new_total, hid))
        self.remember_token("CreateAdditionalAssignmentsForHIT", token, hid, now)

    def update_hit_type_of_hit(self, hid: str, type_id: str, now: float) -> None:
        v = self.get_hit(hid, now)
        if v.status == "Disposed":
            raise _err(f"Hit {hid} has been deleted.", "HITDoesNotExist", now)
        if not self.db.execute("SELECT 1 FROM hit_types WHERE id=?", (type_id,)).fetchone():
            raise _err(f"HITType {type_id} does not exist.", "HITTypeDoesNotExist", now)
        self.db.execute("UPDATE hits SET hit_type_id=? WHERE id=?", (type_id, hid))

    def hits_for_qualification_type(self, tid: str, after: int, limit: int, now: float) -> list:
        if tid not in SYSTEM_TYPES:
            self._custom_type(tid, now)
        out = []
        while len(out) < limit:
            page = self.list_hits(now, after, 200)
            if not page:
                break
            for v in page:
                after = v.row["seq"]
                if any(q["QualificationTypeId"] == tid for q in json.loads(v.row["qualifications"])):
                    out.append(v)
                    if len(out) == limit:
                        break
        return out

    def update_notification_settings(self, p: dict[str, Any], now: float) -> None:
        tid = p["HITTypeId"]
        if not self.db.execute("SELECT 1 FROM hit_types WHERE id=?", (tid,)).fetchone():
            raise _err(f"HITType {tid} does not exist.", "HITTypeDoesNotExist", now)
        row = self.db.execute("SELECT spec, active FROM notification_settings WHERE hit_type_id=?", (tid,)).fetchone()
        spec = p.get("Notification")
        if spec is None and "Active" not in p:
            raise _bad("Specify the Notification parameter, the Active parameter, or both.")
        if spec is None and row is None:
            raise _bad(f"HIT type {tid} has no notification specification; give Notification with Active.")
        if spec is not None:
            validate_notification(spec, allow_ping=False)
        self.db.execute("INSERT OR REPLACE INTO notification_settings VALUES (?,?,?,?)",
                        (tid, json.dumps(spec) if spec is not None else row["spec"],
                         int(p["Active"]) if "Active" in p else (row["active"] if row else 1), now))

    def notification_settings(self, hit_type_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM notification_settings WHERE hit_type_id=?", (hit_type_id,)).fetchone()
        return {"Notification": json.loads(row["spec"]), "Active": bool(row["active"])} if row else None

    def record_test_event(self, p: dict[str, Any], now: float) -> None:
        validate_notification(p["Notification"], allow_ping=True)
        self.db.execute("INSERT INTO test_events (spec, event_type, time) VALUES (?,?,?)",
                        (json.dumps(p["Notification"]), p["TestEventType"], now))


def qualification_json(r: dict[str, Any]) -> dict[str, Any]:
    out = {"QualificationTypeId": r["type_id"], "WorkerId": r["worker_id"], "GrantTime": r["grant_time"],
           "Status": r["status"]}
    if r.get("integer_value") is not None:
        out["IntegerValue"] = r["integer_value"]
    return out


def request_json(r: dict[str, Any]) -> dict[str, Any]:
    out = {"QualificationRequestId": r["id"], "QualificationTypeId": r["type_id"], "WorkerId": r["worker_id"]}
    if r.get("test"):
        out["Test"] = r["test"]
    if r.get("answer"):
        out["Answer"] = r["answer"]
    if r.get("submit_time") is not None:
        out["SubmitTime"] = r["submit_time"]
    return out


TYPE_KEYS = ("QualificationTypeId", "CreationTime", "Name", "Description", "Keywords", "QualificationTypeStatus",
             "Test", "TestDurationInSeconds", "AnswerKey", "RetryDelayInSeconds", "IsRequestable", "AutoGranted",
             "AutoGrantedValue")


def type_json(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in TYPE_KEYS if d.get(k) is not None}
