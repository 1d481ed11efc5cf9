"""Prolific's researcher API over HTTP (requests): the token, retries, paging and error lines.

* The token comes from ``PROLIFIC_TOKEN`` only (:func:`token_from_env`). It is sent in one header to
  the API base URL and nowhere else: every URL is built from the base, a paging link that points
  elsewhere is refused, redirects are not followed, and neither ``repr`` nor any message shows it.
* 429 and 5xx answers and lost connections are retried with bounded exponential back-off and full
  jitter (``min(cap, base * 2**n) * random()``), except that a request which is not idempotent (creating
  a study, a group or a bonus set-up, paying a bonus) is never sent twice blindly: when its answer is
  lost or is a 5xx, :class:`OutcomeUnknown` tells the caller to settle it by asking the API.
  429 is always retried: Prolific refused the request.
* Any other 4xx becomes one line with Prolific's own message (the nested ``{"error": {...}}`` body,
  the flat ``{"message", "detail"}`` one, or raw text, as the official CLI reads them).
"""
from __future__ import annotations

import json
import os
import random
import re
import time
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit

import requests

from mturk_eval.errors import UserError
from mturk_eval.platforms.prolific import contract

TOKEN_ENV = "PROLIFIC_TOKEN"
# The token the local emulator accepts when no real one is wanted (--sandbox never sends PROLIFIC_TOKEN).
EMULATOR_TOKEN = "mturk-eval-local-emulator-token"
# A refused connection (nothing listening) is tried this many times at most, whatever the attempts.
MAX_UNREACHABLE = 3


class ProlificError(UserError):
    """Prolific answered with an error (one line: method, path, status, Prolific's message)."""

    def __init__(self, message: str, status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.status = status
        self.detail = detail


class OutcomeUnknown(ProlificError):
    """A request that must not be repeated blindly got no clear answer (lost connection, 5xx)."""


def token_from_env(pattern: str = contract.TOKEN_PATTERN, env: dict | None = None) -> str:
    """PROLIFIC_TOKEN, checked for shape; the messages never show the value."""
    value = (env if env is not None else os.environ).get(TOKEN_ENV)
    if value is None or not value.strip():
        raise UserError(f"{TOKEN_ENV} is not set: create an API token in Prolific (Settings > API tokens) and"
                        f" export {TOKEN_ENV}=...; mturk-eval reads it from the environment only and never stores"
                        " it; nothing was sent")
    token = value.strip()
    if token.lower().startswith("token "):
        raise UserError(f"{TOKEN_ENV} starts with 'Token ': give the token alone (mturk-eval adds the"
                        " 'Authorization: Token' header itself); nothing was sent")
    if not re.fullmatch(pattern, token):
        why = "it holds spaces or other characters a token does not have" if re.search(r"[^\x21-\x7e]", token) \
            else f"{len(token)} characters, not of the form {pattern}"
        raise UserError(f"{TOKEN_ENV} does not look like a Prolific API token ({why}); copy it again from"
                        " Prolific (Settings > API tokens); nothing was sent")
    return token


def error_line(method: str, path: str, status: int, body: bytes | str) -> tuple[str, str]:
    """(one line, Prolific's message) for an error answer, reading the shapes the contract names."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    detail = ""
    title = ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        title = str(err.get("title") or "")
        d = err.get("detail")
        detail = d if isinstance(d, str) else json.dumps(d, separators=(",", ":"))
        if err.get("additional_information"):
            detail += f" ({err['additional_information']})"
    elif isinstance(data, dict) and ("message" in data or "detail" in data):
        title = str(data.get("message") or "")
        d = data.get("detail", "")
        detail = d if isinstance(d, str) else json.dumps(d, separators=(",", ":"))
    elif isinstance(data, str):
        detail = data
    else:
        detail = text.strip()
    detail = " ".join(detail.split())[:400]
    head = f"{status} {title}".strip()
    return f"Prolific {method} {path}: {head}: {detail or '(no message)'}", detail


class ProlificClient:
    """One researcher account's API (``api_url`` ends in ``/api/v1/``)."""

    # Items asked for per page of submissions: ``limit`` (limit/offset paging) and ``page_size`` (page paging).
    submissions_limit = 200
    submissions_page_size = 100

    def __init__(self, api_url: str, token: str, *, attempts: int = 8, base: float = 0.5, cap: float = 30.0,
                 timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None, session: requests.Session | None = None):
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self._token = token
        self.attempts, self.base, self.cap, self.timeout = attempts, base, cap, timeout
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxies or .netrc: the token goes to api_url only
        self.calls: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"ProlificClient({self.api_url!r}, token=<hidden>)"

    # ------------------------------------------------------------------ the wire
    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            a, b = urlsplit(path), urlsplit(self.api_url)
            if (a.scheme, a.netloc) != (b.scheme, b.netloc) or not a.path.startswith(b.path):
                raise ProlificError(f"Prolific sent a link outside {self.api_url} ({a.scheme}://{a.netloc}{a.path});"
                                    " not following it with the token")
            return path
        return urljoin(self.api_url, path.lstrip("/"))

    def _backoff(self, n: int) -> None:
        self.sleep(min(self.cap, self.base * (2 ** n)) * self.rng.random())

    def request(self, method: str, path: str, *, body: Any = None, params: dict | None = None,
                idempotent: bool | None = None) -> Any:
        """Send one call; the decoded JSON answer (None for an empty body)."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        url = self._url(path)
        shown = urlsplit(url).path
        headers = {"Authorization": f"Token {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        key = f"{method} {re.sub(r'/[0-9a-fA-F-]{16,}', '/{id}', shown)}"
        unreachable = 0
        for n in range(self.attempts):
            last = n + 1 == self.attempts
            try:
                self.calls[key] = self.calls.get(key, 0) + 1
                r = self.session.request(method, url, data=data, params=params, headers=headers,
                                         timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.ConnectionError as exc:
                never_sent = isinstance(exc, requests.exceptions.ConnectTimeout) or "NewConnectionError" in repr(exc) \
                    or "Connection refused" in str(exc)
                if not idempotent and not never_sent:
                    raise OutcomeUnknown(f"Prolific {method} {shown}: the connection was lost before an answer came;"
                                         " whether it was done is not known") from None
                unreachable += never_sent
                if last or unreachable >= MAX_UNREACHABLE:  # nothing listening: a few quick tries, not minutes
                    raise ProlificError(f"{self.api_url}: cannot reach the Prolific API ({_cause(exc)};"
                                        f" {method} {shown}, {n + 1} tries); check the URL and the network,"
                                        " then run the command again") from None
                self._backoff(n)
                continue
            except requests.exceptions.Timeout:
                if not idempotent:
                    raise OutcomeUnknown(f"Prolific {method} {shown}: no answer in {self.timeout:g} s; whether it"
                                         " was done is not known") from None
                if last:
                    raise ProlificError(f"{self.api_url}: no answer from the Prolific API in {self.timeout:g} s"
                                        f" ({method} {shown}, {self.attempts} tries)") from None
                self._backoff(n)
                continue
            status = r.status_code
            if status == 429 or (status >= 500 and idempotent):
                if last:
                    line, detail = error_line(method, shown, status, r.content)
                    raise ProlificError(f"{line} (still failing after {self.attempts} tries)", status, detail)
                self._backoff(n)
                continue
            if status >= 500:
                line, detail = error_line(method, shown, status, r.content)
                raise OutcomeUnknown(f"{line}; whether it was done is not known", status, detail)
            if 300 <= status < 400:
                raise ProlificError(f"Prolific {method} {shown}: answered {status} (a redirect to"
                                    f" {urlsplit(r.headers.get('Location', '')).netloc or 'elsewhere'}); not"
                                    " following it with the token; check platform.prolific.api_url", status)
            if status >= 400:
                line, detail = error_line(method, shown, status, r.content)
                raise ProlificError(line, status, detail)
            if not r.content:
                return None
            try:
                return r.json()
            except ValueError:
                raise ProlificError(f"Prolific {method} {shown}: answered {status} with a body that is not"
                                    f" JSON ({r.content[:80]!r})", status) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ paging
    def pages(self, path: str, params: dict | None = None, *, style: str = "limit", size: int = 200) -> Iterator[dict]:
        """Every item of a list, following whichever paging the answer shows: ``_links.next`` when
        present, else ``limit``/``offset`` or ``page``/``page_size`` (``style``) until a short page."""
        params = dict(params or {})
        if style == "limit":
            params.setdefault("limit", size)
            params.setdefault("offset", 0)
        else:
            params.setdefault("page_size", size)
            params.setdefault("page", 1)
        seen = 0
        url = path
        while True:
            data = self.request("GET", url, params=params)
            items = data.get("results", []) if isinstance(data, dict) else (data or [])
            yield from items
            seen += len(items)
            links = data.get("_links") if isinstance(data, dict) else None
            nxt = ((links or {}).get("next") or {}).get("href")
            if nxt:
                url, params = nxt, None  # the link carries its own query (checked by _url)
                continue
            count = ((data.get("meta") or {}) if isinstance(data, dict) else {}).get("count")
            if params is None or not items or (count is not None and seen >= count):
                return
            if len(items) < params.get("limit", params.get("page_size", size)):
                return
            if style == "limit":
                params["offset"] += len(items)
            else:
                params["page"] += 1

    # ------------------------------------------------------------------ operations (§1-§10)
    def me(self) -> dict:
        return self.request("GET", "users/me/")

    def workspaces(self) -> list[dict]:
        return list(self.pages("workspaces/"))

    def projects(self, workspace_id: str) -> list[dict]:
        return list(self.pages(f"workspaces/{workspace_id}/projects/"))

    def filters(self) -> list[dict]:
        data = self.request("GET", "filters/")
        return data.get("results", []) if isinstance(data, dict) else data

    def cost_calculator(self, reward: int, places: int) -> float:
        return self.request("POST", "study-cost-calculator/", body={"reward": reward, "total_available_places": places},
                            idempotent=True)["total_cost"]

    def create_study(self, body: dict) -> dict:
        return self.request("POST", "studies/", body=body, idempotent=False)

    def get_study(self, study_id: str) -> dict:
        return self.request("GET", f"studies/{study_id}/")

    def studies(self, project_id: str | None = None) -> list[dict]:
        if project_id:
            return list(self.pages(f"projects/{project_id}/studies/", style="page", size=100))
        data = self.request("GET", "studies/")
        return data.get("results", []) if isinstance(data, dict) else data

    def update_study(self, study_id: str, fields: dict) -> dict:
        return self.request("PATCH", f"studies/{study_id}/", body=fields, idempotent=True)

    def transition_study(self, study_id: str, action: str) -> dict:
        # Repeating a transition the study already made is refused (400), not done twice: safe to retry.
        return self.request("POST", f"studies/{study_id}/transition/", body={"action": action}, idempotent=True)

    def study_submissions(self, study_id: str) -> Iterator[dict]:
        return self.pages(f"studies/{study_id}/submissions/", size=self.submissions_limit)

    def submissions(self, study_id: str, status: str | None = None) -> Iterator[dict]:
        params = {"study": study_id}
        if status:
            params["status"] = status.replace(" ", "_")
        return self.pages("submissions/", params, style="page", size=self.submissions_page_size)

    def submission(self, submission_id: str) -> dict:
        return self.request("GET", f"submissions/{submission_id}/")

    def counts(self, study_id: str) -> dict:
        return self.request("GET", f"studies/{study_id}/submissions/counts/")

    def transition_submission(self, submission_id: str, body: dict) -> dict:
        # Documented idempotent: "the second request will be ignored".
        return self.request("POST", f"submissions/{submission_id}/transition/", body=body, idempotent=True)

    def bulk_approve(self, submission_ids: list[str]) -> Any:
        return self.request("POST", "submissions/bulk-approve/", body={"submission_ids": submission_ids},
                            idempotent=True)

    def create_bonus(self, study_id: str, csv_bonuses: str) -> dict:
        return self.request("POST", "submissions/bonus-payments/", body={"study_id": study_id,
                                                                          "csv_bonuses": csv_bonuses},
                            idempotent=False)

    def pay_bonus(self, bulk_id: str) -> Any:
        return self.request("POST", f"bulk-bonus-payments/{bulk_id}/pay/", body={}, idempotent=False)

    def groups(self, workspace_id: str) -> list[dict]:
        return list(self.pages("participant-groups/", {"workspace_id": workspace_id}))

    def create_group(self, workspace_id: str, name: str, description: str = "") -> dict:
        return self.request("POST", "participant-groups/", body={"name": name, "workspace_id": workspace_id,
                                                                 "description": description}, idempotent=False)

    def add_to_group(self, group_id: str, participant_ids: list[str]) -> dict:
        return self.request("POST", f"participant-groups/{group_id}/participants/",
                            body={"participant_ids": participant_ids}, idempotent=True)

    def group_members(self, group_id: str) -> list[dict]:
        return list(self.pages(f"participant-groups/{group_id}/participants/"))


def _cause(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\]\s*([^'\")\]]+)", text)
    if m:
        return m.group(1).strip().rstrip(".")
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the connection was closed before an answer came"
    return type(exc).__name__
