"""Routing of the local Prolific emulator (moto's ``urls.py``) and the WSGI app that mounts it.

:class:`ProlificEmulator` answers:

* the researcher API under ``/api/v1/`` (trailing slash optional, as the contract says the API
  accepts both), with the token check (``Authorization: Token <token>``), the fault options of the
  local sandbox (429 bursts, 5xx, dropped connections, latency; fault operation names are the
  contract's operationIds, e.g. ``create-study``), and Prolific's nested error bodies;
* the participant side of Prolific, which the real one keeps on app.prolific.com:
  ``GET /_prolific/studies/<id>/take?PROLIFIC_PID=...`` opens a study as a participant (a submission
  starts and the browser is sent to ``external_study_url`` with ``{{%PROLIFIC_PID%}}``,
  ``{{%STUDY_ID%}}`` and ``{{%SESSION_ID%}}`` filled in), ``GET /submissions/complete?cc=CODE`` is the
  completion redirect target (the real path), ``POST /_prolific/submissions/<id>/return`` returns a
  submission;
* emulator admin, JSON: ``GET /_prolific/state``, ``POST /_prolific/clock`` ``{"advance_s": N}``,
  ``POST /_prolific/faults`` (the fault configuration), ``POST /_prolific/submissions/<id>/status``
  ``{"status": "SCREENED OUT"}`` (any of the contract's submission statuses, emulator only).

:func:`is_prolific_path` tells the one local server process which requests are for this app.
"""
from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from mturk_eval.emulators.prolific import responses as r
from mturk_eval.emulators.prolific.models import ProlificAPIError, ProlificBackend, new_id
from mturk_eval.platforms.prolific import contract
from mturk_eval.emulators.faults import DropConnection, FaultConfig, FaultInjector

API = "/api/v1"
PARTICIPANT_COOKIE = "prolific_session"
PID_COOKIE = "prolific_pid"


def _api(path: str, endpoint: str, methods: list[str]) -> Rule:
    return Rule(API + path, endpoint=endpoint, methods=methods)


url_map = Map([
    _api("/users/me/", "get-user", ["GET"]),
    _api("/workspaces/", "get-workspaces", ["GET"]),
    _api("/workspaces/<workspace_id>/", "get-workspace", ["GET"]),
    _api("/workspaces/<workspace_id>/balance/", "get-workspace-balance", ["GET"]),
    _api("/workspaces/<workspace_id>/projects/", "get-projects", ["GET"]),
    _api("/projects/<project_id>/", "get-project", ["GET"]),
    _api("/projects/<project_id>/studies/", "get-project-studies", ["GET"]),
    _api("/filters/", "get-filters", ["GET"]),
    _api("/study-cost-calculator/", "calculate-study-cost", ["POST"]),
    _api("/reward-recommendations/", "get-reward-recommendations", ["GET"]),
    _api("/studies/", "get-studies", ["GET"]),
    _api("/studies/", "create-study", ["POST"]),
    _api("/studies/<id>/", "get-study", ["GET"]),
    _api("/studies/<id>/", "update-study", ["PATCH"]),
    _api("/studies/<id>/", "delete-study", ["DELETE"]),
    _api("/studies/<id>/transition/", "transition-study", ["POST"]),
    _api("/studies/<id>/cost/", "get-study-cost", ["GET"]),
    _api("/studies/<id>/submissions/", "get-study-submissions", ["GET"]),
    _api("/studies/<id>/submissions/counts/", "count-study-submissions", ["GET"]),
    _api("/submissions/", "get-submissions", ["GET"]),
    _api("/submissions/bulk-approve/", "bulk-approve-submissions", ["POST"]),
    _api("/submissions/bonus-payments/", "create-bonus-payments", ["POST"]),
    _api("/submissions/<id>/", "get-submission", ["GET"]),
    _api("/submissions/<id>/transition/", "transition-submission", ["POST"]),
    _api("/bulk-bonus-payments/<id>/pay/", "pay-bonus-payments", ["POST"]),
    _api("/participant-groups/", "get-participant-groups", ["GET"]),
    _api("/participant-groups/", "create-participant-group", ["POST"]),
    _api("/participant-groups/<id>/", "get-participant-group", ["GET"]),
    _api("/participant-groups/<id>/", "update-participant-group", ["PATCH"]),
    _api("/participant-groups/<id>/", "delete-participant-group", ["DELETE"]),
    _api("/participant-groups/<id>/participants/", "get-participant-group-participants", ["GET"]),
    _api("/participant-groups/<id>/participants/", "add-to-participant-group", ["POST"]),
    _api("/participant-groups/<id>/participants/", "remove-from-participant-group", ["DELETE"]),
    Rule("/_prolific/studies/<id>/take", endpoint="take", methods=["GET"]),
    Rule("/submissions/complete", endpoint="complete", methods=["GET"]),
    Rule("/_prolific/submissions/<id>/return", endpoint="return", methods=["POST"]),
    Rule("/_prolific/submissions/<id>/status", endpoint="admin-status", methods=["POST"]),
    Rule("/_prolific/state", endpoint="admin-state", methods=["GET"]),
    Rule("/_prolific/clock", endpoint="admin-clock", methods=["POST"]),
    Rule("/_prolific/faults", endpoint="admin-faults", methods=["POST"]),
], strict_slashes=False, merge_slashes=False)

HANDLERS = {rule.endpoint: getattr(r, rule.endpoint.replace("-", "_"))
            for rule in url_map.iter_rules() if rule.rule.startswith(API)}


def is_prolific_path(path: str) -> bool:
    return path.startswith((API + "/", "/_prolific/")) or path.rstrip("/") in (API, "/submissions/complete")


def _json(status: int, body) -> Response:
    if status == 204:
        return Response(status=204)
    return Response(json.dumps(body), status=status, content_type="application/json")


def _error(status: int, detail, title: str | None = None) -> Response:
    e = ProlificAPIError(status, detail, title)
    return _json(status, {"error": {"status": status, "title": e.title, "detail": detail}})


def _page(title: str, body: str, status: int = 200) -> Response:
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
           f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
    return Response(doc, status=status, content_type="text/html; charset=utf-8")


class ProlificEmulator:
    """The WSGI app. ``faults`` may be shared with the other emulators of the same server."""

    def __init__(self, backend: ProlificBackend, faults: FaultInjector | None = None, max_body: int = 512 * 1024):
        self.backend = backend
        self.faults = faults or FaultInjector()
        self.max_body = max_body
        self.calls: dict[str, int] = {}

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.max_body
        adapter = url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed:
            response = _error(405, f"Method \"{request.method}\" not allowed.")
        except NotFound:
            response = _error(404, f"No API path {request.path[:100]} (the local emulator implements the"
                                   " operations in docs/prolific.md).") if request.path.startswith(API) else \
                _page("Not found", "<p>There is no such page on the local Prolific emulator.</p>", 404)
        except HTTPException as exc:  # e.g. a redirect for a missing slash (not produced: strict_slashes off)
            response = exc.get_response(environ)
        else:
            if endpoint in HANDLERS:
                response = self.on_api(request, endpoint, args)
            else:
                response = getattr(self, "on_" + endpoint.replace("-", "_"))(request, **args)
        return response(environ, start_response)

    # ------------------------------------------------------------------ the researcher API
    def on_api(self, request: Request, op: str, args: dict) -> Response:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return _error(401, "Authentication credentials were not provided.")
        scheme, _, token = auth.partition(" ")
        if scheme != "Token" or not self.backend.token_ok(token.strip()):
            return _error(401, "Invalid token.")
        body = None
        raw = request.get_data(cache=False)
        if raw:
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype != "application/json":
                return _error(415, f"Unsupported media type \"{ctype[:60]}\" in request.", "Unsupported Media Type")
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                return _error(400, f"JSON parse error - {exc}")
        decision = self.faults.decide(op)
        if decision.delay_s:
            time.sleep(decision.delay_s)
        if decision.action == "throttle":
            return _error(429, "Request was throttled.")
        if decision.action == "error":
            return _error(500, "A server error occurred.")
        if decision.action == "drop":
            raise DropConnection("emulator fault: connection dropped before the operation")
        call = r.Call(args=args, query=dict(request.args), body=body,
                      base_url=request.host_url.rstrip("/") + request.path, path=request.path)
        try:
            with self.backend.transaction() as now:
                call.now = now
                status, out = HANDLERS[op](self.backend, call)
        except ProlificAPIError as exc:
            return _error(exc.status, exc.detail, exc.title)
        self.calls[op] = self.calls.get(op, 0) + 1
        if decision.action == "drop_after":
            raise DropConnection("emulator fault: connection dropped after the operation")
        return _json(status, out)

    # ------------------------------------------------------------------ the participant side
    def on_take(self, request: Request, id: str) -> Response:
        pid = request.args.get("PROLIFIC_PID") or request.cookies.get(PID_COOKIE) or ""
        if not pid:
            pid = new_id()
        if not re.fullmatch(r"[A-Za-z0-9]{1,64}", pid):
            return _page("Bad participant id", "<p>PROLIFIC_PID must be letters and digits.</p>", 400)
        simulated = request.args.get("simulated") == "1"
        try:
            with self.backend.transaction() as now:
                sub = self.backend.start_submission(id, pid, now, simulated=simulated)
                study = self.backend.study(id)
        except ProlificAPIError as exc:
            return _page("Study not available", f"<p>{html.escape(str(exc.detail))}</p>", exc.status)
        url = study.get("external_study_url") or ""
        for placeholder, value in ((contract.PID, pid), (contract.STUDY_ID, id), (contract.SESSION_ID, sub["id"])):
            url = url.replace(placeholder, quote(value, safe=""))
        resp = redirect(url, 302)
        resp.set_cookie(PARTICIPANT_COOKIE, sub["id"], samesite="Lax", httponly=True, path="/")
        resp.set_cookie(PID_COOKIE, pid, samesite="Lax", httponly=True, path="/")
        return resp

    def on_complete(self, request: Request) -> Response:
        code = request.args.get("cc", "")
        sid = request.cookies.get(PARTICIPANT_COOKIE, "")
        if not sid:
            return _page("No study in progress", "<p>Open the study from Prolific first.</p>", 400)
        try:
            with self.backend.transaction() as now:
                sub = self.backend.complete_submission(sid, code, now)
        except ProlificAPIError as exc:
            return _page("Submission not completed", f"<p>{html.escape(str(exc.detail))}</p>", exc.status)
        body = (f"<p>Thank you: your submission is recorded with code <strong id=code>{html.escape(code)}</strong>.</p>"
                f"<p id=status>Status: {html.escape(sub['status'])}</p>")
        resp = _page("Submission complete", body)
        resp.delete_cookie(PARTICIPANT_COOKIE, path="/")
        return resp

    def on_return(self, request: Request, id: str) -> Response:
        try:
            with self.backend.transaction() as now:
                sub = self.backend.return_submission(id, now)
        except ProlificAPIError as exc:
            return _error(exc.status, exc.detail)
        return _json(200, sub)

    # ------------------------------------------------------------------ admin
    def on_admin_state(self, request: Request) -> Response:
        with self.backend.transaction():
            state = self.backend.state()
        return _json(200, state | {"calls": dict(self.calls), "fault_counts": dict(self.faults.counts)})

    def on_admin_clock(self, request: Request) -> Response:
        try:
            seconds = float(json.loads(request.get_data() or b"{}")["advance_s"])
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"expected {{\"advance_s\": seconds}}: {exc}")
        return _json(200, {"now": self.backend.advance_clock(seconds)})

    def on_admin_status(self, request: Request, id: str) -> Response:
        try:
            status = json.loads(request.get_data() or b"{}")["status"]
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"expected {{\"status\": one of {', '.join(contract.SUBMISSION_STATUSES)}}}: {exc}")
        try:
            with self.backend.transaction() as now:
                sub = self.backend.force_submission_status(id, str(status), now)
        except ProlificAPIError as exc:
            return _error(exc.status, exc.detail)
        return _json(200, sub)

    def on_admin_faults(self, request: Request) -> Response:
        try:
            cfg = FaultConfig.from_dict(json.loads(request.get_data() or b"{}"))
        except Exception as exc:  # a bad key or value: a UserError or a JSON error
            return _error(400, str(exc))
        self.faults.configure(cfg)
        return _json(200, {"faults": cfg.to_dict()})


def make_emulator(state: str | Path = ":memory:", faults: FaultConfig | None = None, **backend_options) -> ProlificEmulator:
    return ProlificEmulator(ProlificBackend(state, **backend_options), FaultInjector(faults))


def take_url(base_url: str, study_id: str, participant_id: str | None = None) -> str:
    """Where a participant opens a study on the emulator."""
    url = f"{base_url.rstrip('/')}/_prolific/studies/{study_id}/take"
    return url + ("?" + urlencode({"PROLIFIC_PID": participant_id}) if participant_id else "")
