"""The local MTurk service's worker site: HIT list, preview, accept, work, the HIT's frame, externalSubmit.

Each HIT is served the way MTurk does: the HTMLQuestion's HTML with the query parameters ``assignmentId``,
``hitId``, ``workerId``, ``turkSubmitTo`` (``ASSIGNMENT_ID_NOT_AVAILABLE`` in preview), and
``/mturk/externalSubmit`` records the submitted form as a QuestionFormAnswers document. An
ExternalQuestion's frame is a redirect to its ExternalURL with those parameters; a QuestionForm is drawn
as MTurk draws it and its answers checked against its answer specifications. HTMLQuestions that load
Amazon's helper script or the crowd HTML elements get the local stand-ins
(:mod:`mturk_eval.emulators.mturk.crowd_elements`).

Qualification requirements are enforced: a HIT whose DiscoverPreviewAndAccept requirements a worker does
not meet is not listed for them, PreviewAndAccept ones refuse the preview, and every requirement
guards accepting. Workers see their messages (NotifyWorkers, grants, revocations) and request
qualifications or take qualification tests under ``/mturk/qualifications``. Each page is a function
``(app, request) -> Response``; routing is in :mod:`mturk_eval.emulators.mturk.urls`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import jinja2
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from mturk_eval.emulators.mturk import crowd_elements, question_form
from mturk_eval.emulators.mturk.models import ACCEPTED, SandboxError, new_id
from mturk_eval.emulators.mturk.qualifications import describe_requirement
from mturk_eval.emulators.mturk.responses import answers_xml, error_response, hit_json, json_response, \
    validate_question
from mturk_eval.tasks.answers import SIMULATED_FIELD, WORK_TIME_HEADER, simulated_work_time

if TYPE_CHECKING:
    from mturk_eval.emulators.server import SandboxApp

PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"
WORKER_ID_RE = re.compile(r"^A[A-Z0-9]{1,63}$")

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True, undefined=jinja2.StrictUndefined)


def _worker(request: Request) -> tuple[str, bool]:
    """The worker id from the query/form or the cookie; a new one if neither (second: set cookie)."""
    wid = request.values.get("workerId") or request.cookies.get("workerId")
    if wid and WORKER_ID_RE.match(wid):
        return wid, wid != request.cookies.get("workerId")
    return new_id(14, "A"), True


def _render(template: str, request: Request, status: int = 200, **ctx) -> Response:
    wid, set_cookie = _worker(request)
    body = TEMPLATES.get_template(template).render(worker_id=wid, **ctx)
    resp = Response(body, status=status, content_type="text/html; charset=utf-8")
    if set_cookie:
        resp.set_cookie("workerId", wid, samesite="Lax", httponly=True)
    return resp


def _submit_base(request: Request) -> str:
    return request.host_url.rstrip("/")


def index(app: SandboxApp, request: Request) -> Response:
    wid, _ = _worker(request)
    with app.store.transaction() as now:
        hits = [hit_json(v) for v in app.store.open_hits(now, wid)]
        messages = len(app.store.worker_messages(wid))
    return _render("index.html", request, hits=hits, messages=messages)


def _problem(request: Request, message: str, status: int = 400) -> Response:
    return _render("problem.html", request, status=status, message=message)


def preview(app: SandboxApp, request: Request) -> Response:
    hit_id = request.args.get("hitId")
    group = request.args.get("groupId")
    wid, _ = _worker(request)
    with app.store.transaction() as now:
        if not hit_id and group:
            hit_id = next((v.row["id"] for v in app.store.open_hits(now, wid) if v.row["group_id"] == group),
                          None)
            if hit_id is None:
                return _problem(request, "There are no more HITs in this group for you.", 404)
        if not hit_id:
            return _problem(request, "Give hitId or groupId.")
        try:
            v = app.store.get_hit(hit_id, now)
        except SandboxError as exc:
            return _problem(request, exc.message, 404)
        reqs = json.loads(v.row["qualifications"])
        access = app.store.access(reqs, wid)
        names = app.store.type_names(reqs)
    if not access.preview:
        return _problem(request, "You do not meet the Qualification requirements to preview this HIT: "
                        + "; ".join(access.unmet) + ".", 403)
    task = "/mturk/task?" + urlencode({"assignmentId": PREVIEW_ASSIGNMENT, "hitId": hit_id})
    return _render("hit.html", request, hit=hit_json(v), task_url=task, preview=True,
                   can_accept=v.status == "Assignable" and access.accept,
                   requirements=[describe_requirement(r, names) for r in reqs], unmet=access.unmet)


def accept(app: SandboxApp, request: Request) -> Response:
    wid, _ = _worker(request)
    hit_id = request.form.get("hitId", "")
    with app.store.transaction() as now:
        try:
            aid = app.store.accept(hit_id, wid, now)
        except SandboxError as exc:
            return _problem(request, exc.message, 409)
    resp = redirect("/mturk/work?" + urlencode({"assignmentId": aid}), 303)
    resp.set_cookie("workerId", wid, samesite="Lax", httponly=True)
    return resp


def give_back(app: SandboxApp, request: Request) -> Response:
    """``POST /mturk/return``: the worker returns an accepted HIT unfinished (its place opens again)."""
    wid, _ = _worker(request)
    aid = request.form.get("assignmentId", "")
    with app.store.transaction() as now:
        try:
            app.store.return_assignment(aid, wid, now)
        except SandboxError as exc:
            return _problem(request, exc.message, 409)
    return redirect("/", 303)


def work(app: SandboxApp, request: Request) -> Response:
    aid = request.args.get("assignmentId", "")
    with app.store.transaction() as now:
        try:
            a = app.store.worker_assignment(aid, now)
            v = app.store.get_hit(a["hit_id"], now)
        except SandboxError as exc:
            return _problem(request, exc.message, 404)
    if a["status"] != ACCEPTED:
        return _problem(request, f"This assignment is {a['status']}; there is nothing left to do.", 409)
    task = "/mturk/task?" + urlencode({"assignmentId": aid, "hitId": a["hit_id"], "workerId": a["worker_id"],
                                       "turkSubmitTo": _submit_base(request)})
    return _render("hit.html", request, hit=hit_json(v), task_url=task, preview=False, can_accept=False,
                   requirements=[], unmet=[])


def task(app: SandboxApp, request: Request) -> Response:
    """The HIT's own document, as MTurk serves it inside its frame."""
    hit_id = request.args.get("hitId", "")
    aid = request.args.get("assignmentId", PREVIEW_ASSIGNMENT)
    with app.store.transaction() as now:
        try:
            v = app.store.get_hit(hit_id, now)
            if aid != PREVIEW_ASSIGNMENT:
                a = app.store.worker_assignment(aid, now)
                if a["hit_id"] != hit_id:
                    raise SandboxError("This assignment belongs to another HIT.")
            else:
                access = app.store.access(json.loads(v.row["qualifications"]), _worker(request)[0])
                if not access.preview:
                    return _problem(request, "You do not meet the Qualification requirements to preview this"
                                    " HIT: " + "; ".join(access.unmet) + ".", 403)
        except SandboxError as exc:
            return _problem(request, exc.message, 404)
    q = validate_question(v.row["question"])
    if q["kind"] == "form":
        return _form_page(q["form"], v.row["title"], aid, request)
    if q["kind"] == "external":
        params = {"assignmentId": aid, "hitId": hit_id}
        if aid != PREVIEW_ASSIGNMENT:
            params.update(workerId=request.args.get("workerId", ""), turkSubmitTo=_submit_base(request))
        sep = "&" if "?" in q["url"] else "?"
        return redirect(q["url"] + sep + urlencode(params), 302)
    resp = Response(crowd_elements.rewrite_known_urls(q["html"]), content_type="text/html; charset=utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _form_page(form, title: str, aid: str, request: Request, status: int = 200, values=None,
               errors=None) -> Response:
    """A QuestionForm HIT's frame: the form MTurk draws, posting to externalSubmit."""
    body = question_form.render_form(form, title=title, assignment_id=aid, submit_to="/mturk/externalSubmit",
                                     preview=aid == PREVIEW_ASSIGNMENT, values=values, errors=errors)
    resp = Response(body, status=status, content_type="text/html; charset=utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def submit(app: SandboxApp, request: Request) -> Response:
    aid = request.form.get("assignmentId", "")
    if not aid or aid == PREVIEW_ASSIGNMENT:
        return _problem(request, "This is a preview: accept the HIT before submitting.")
    fields = [(k, "|".join(request.form.getlist(k))) for k in request.form.keys() if k != "assignmentId"]
    try:
        simulated, work_time = simulated_work_time(request.form.get(SIMULATED_FIELD),
                                                   request.headers.get(WORK_TIME_HEADER))
    except ValueError:
        return _problem(request, f"{WORK_TIME_HEADER} must be a number of seconds.")
    with app.store.transaction() as now:
        try:
            a = app.store.worker_assignment(aid, now)
            v = app.store.get_hit(a["hit_id"], now)
            q = validate_question(v.row["question"])
            if q["kind"] == "form":
                # A QuestionForm's answers are checked against its answer specifications first.
                submitted = {k: request.form.getlist(k) for k in request.form.keys()}
                xml, errors = question_form.answers_from_form(q["form"], submitted)
                if errors:
                    return _form_page(q["form"], v.row["title"], aid, request, 400, submitted, errors)
            else:
                xml = answers_xml(fields)
            app.store.submit(aid, xml, now, simulated=simulated, work_time_s=work_time)
        except SandboxError as exc:
            return _problem(request, exc.message, 409)
    return _render("submitted.html", request, assignment_id=aid, hit_id=a["hit_id"])


def assets(app: SandboxApp, request: Request, name: str) -> Response:
    """The local stand-ins for Amazon's HIT helper script and the crowd HTML elements."""
    return crowd_elements.asset_response(name)


# --------------------------------------------------------------------------------------------------
# Messages and qualifications

def messages(app: SandboxApp, request: Request) -> Response:
    wid, _ = _worker(request)
    with app.store.transaction():
        items = app.store.worker_messages(wid)
    return _render("messages.html", request, messages=items)


def qualifications(app: SandboxApp, request: Request, notice: str = "", status: int = 200) -> Response:
    wid, _ = _worker(request)
    with app.store.transaction():
        held = app.store.held_qualifications(wid)
        types = app.store.requestable_types(wid)
        profile = app.store.worker_profile(wid)
    return _render("qualifications.html", request, status=status, held=held, types=types, profile=profile,
                   notice=notice)


def request_qualification(app: SandboxApp, request: Request) -> Response:
    """A worker asks for a qualification: granted at once, a test to take, or a request the requester decides."""
    wid, _ = _worker(request)
    tid = request.form.get("qualificationTypeId", "")
    with app.store.transaction() as now:
        try:
            r = app.store.request_qualification(tid, wid, now)
        except SandboxError as exc:
            return _problem(request, exc.message, 409)
    if r["status"] == "Testing":
        return redirect("/mturk/qualification-test?" + urlencode({"requestId": r["id"]}), 303)
    notice = ("The Qualification was granted." if r["status"] == "Approved" else
              "Your request was sent; the requester will accept or reject it.")
    return qualifications(app, request, notice)


def _test_page(form, rid: str, request: Request, status: int = 200, values=None, errors=None) -> Response:
    body = question_form.render_form(form, title="Qualification test", assignment_id="",
                                     submit_to="/mturk/qualification-test", preview=False, values=values,
                                     errors=errors, hidden={"requestId": rid})
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def qualification_test(app: SandboxApp, request: Request) -> Response:
    """GET: the test of an open request (a QuestionForm); POST: its answers, scored when there is an AnswerKey."""
    wid, _ = _worker(request)
    rid = request.values.get("requestId", "")
    with app.store.transaction() as now:
        try:
            r = app.store.qualification_request_for(rid, wid, now)
            form = question_form.parse_question_form(r["test"])
            if request.method == "GET":
                return _test_page(form, rid, request)
            submitted = {k: request.form.getlist(k) for k in request.form.keys()}
            xml, errors = question_form.answers_from_form(form, submitted)
            if errors:
                return _test_page(form, rid, request, 400, submitted, errors)
            r = app.store.submit_qualification_test(rid, wid, xml, now)
        except SandboxError as exc:
            return _problem(request, exc.message, 409)
    notice = ("Your test was scored and the Qualification granted." if r["status"] == "Approved" else
              "Your answers were sent; the requester will score them.")
    return qualifications(app, request, notice)


# --------------------------------------------------------------------------------------------------
# Sandbox-only JSON endpoints of the MTurk service

def admin_workers(app: SandboxApp, request: Request) -> Response:
    """``GET /_sandbox/workers``: profiles; ``POST``: set one (``{"worker_id": ..., "country": ..., ...}``)."""
    if request.method == "GET":
        with app.store.transaction():
            return json_response(200, {"workers": app.store.list_worker_profiles()})
    try:
        body = json.loads(request.get_data() or b"{}")
        if not isinstance(body, dict) or "worker_id" not in body:
            raise ValueError('expected {"worker_id": "A...", "country": "US", ...}')
        wid = body.pop("worker_id")
        with app.store.transaction() as now:
            prof = app.store.set_worker_profile(wid, now, **body)
    except (ValueError, TypeError) as exc:
        return error_response(400, "ValidationException", str(exc))
    except SandboxError as exc:
        return error_response(400, "ValidationException", exc.message)
    return json_response(200, {"worker": prof})


def admin_batch_results(app: SandboxApp, request: Request) -> Response:
    """``GET /_sandbox/batch-results.csv[?hitTypeId=]``: the website's batch results CSV for these HITs."""
    from mturk_eval.emulators.mturk.batch_results import batch_csv

    with app.store.transaction() as now:
        text = batch_csv(app.store, now, request.args.get("hitTypeId") or None)
    resp = Response(text, content_type="text/csv; charset=utf-8")
    resp.headers["Content-Disposition"] = 'attachment; filename="Batch_results.csv"'
    return resp
