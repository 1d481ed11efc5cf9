"""The local MTurk service's worker site: HIT list, preview, accept, work, the HIT's frame, externalSubmit.

Each HIT is served the way MTurk does: the HTMLQuestion's HTML with the query parameters ``assignmentId``,
``hitId``, ``workerId``, ``turkSubmitTo`` (``ASSIGNMENT_ID_NOT_AVAILABLE`` in preview), and
``/mturk/externalSubmit`` records the submitted form as a QuestionFormAnswers document. An
ExternalQuestion's frame is a redirect to its ExternalURL with those parameters. Each page is a function
``(app, request) -> Response``; routing is in :mod:`mturk_eval.emulators.mturk.urls`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import jinja2
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from mturk_eval.emulators.mturk.models import ACCEPTED, SandboxError, new_id
from mturk_eval.emulators.mturk.responses import answers_xml, hit_json, validate_question

if TYPE_CHECKING:
    from mturk_eval.emulators.server import SandboxApp

PREVIEW_ASSIGNMENT = "ASSIGNMENT_ID_NOT_AVAILABLE"
SIMULATED_FIELD = "mturk_eval_simulated"
WORK_TIME_HEADER = "X-Mturk-Eval-Work-Time"
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
    return _render("index.html", request, hits=hits)


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
    task = "/mturk/task?" + urlencode({"assignmentId": PREVIEW_ASSIGNMENT, "hitId": hit_id})
    return _render("hit.html", request, hit=hit_json(v), task_url=task, preview=True,
                      can_accept=v.status == "Assignable")


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
    return _render("hit.html", request, hit=hit_json(v), task_url=task, preview=False, can_accept=False)


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
        except SandboxError as exc:
            return _problem(request, exc.message, 404)
    q = validate_question(v.row["question"])
    if q["kind"] == "external":
        params = {"assignmentId": aid, "hitId": hit_id}
        if aid != PREVIEW_ASSIGNMENT:
            params.update(workerId=request.args.get("workerId", ""), turkSubmitTo=_submit_base(request))
        sep = "&" if "?" in q["url"] else "?"
        return redirect(q["url"] + sep + urlencode(params), 302)
    resp = Response(q["html"], content_type="text/html; charset=utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def submit(app: SandboxApp, request: Request) -> Response:
    aid = request.form.get("assignmentId", "")
    if not aid or aid == PREVIEW_ASSIGNMENT:
        return _problem(request, "This is a preview: accept the HIT before submitting.")
    fields = [(k, "|".join(request.form.getlist(k))) for k in request.form.keys() if k != "assignmentId"]
    simulated = request.form.get(SIMULATED_FIELD) == "1"
    work_time = None
    if simulated and request.headers.get(WORK_TIME_HEADER):
        try:
            work_time = float(request.headers[WORK_TIME_HEADER])
        except ValueError:
            return _problem(request, f"{WORK_TIME_HEADER} must be a number of seconds.")
    with app.store.transaction() as now:
        try:
            a = app.store.worker_assignment(aid, now)
            app.store.submit(aid, answers_xml(fields), now, simulated=simulated, work_time_s=work_time)
        except SandboxError as exc:
            return _problem(request, exc.message, 409)
    return _render("submitted.html", request, assignment_id=aid, hit_id=a["hit_id"])
