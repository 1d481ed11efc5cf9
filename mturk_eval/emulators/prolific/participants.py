"""Simulated Prolific participants: they take a study on the local emulator the way people do.

Each participant (an id of 24 hex characters, as Prolific's) opens the study on the emulator's
participant side, which starts a submission and sends the browser to ``external_study_url`` with
PROLIFIC_PID, STUDY_ID and SESSION_ID filled in; the rating site gives a task; the participant rates
it (the sandbox's rating model: :mod:`mturk_eval.emulators.simulate`), submits, follows the site's
"Back to Prolific" link (the completion redirect, served by the emulator) and so appears as AWAITING
REVIEW with the code the site gave. A share returns the study instead (the emulator's return), as does
anyone the site has no task for ("no tasks left"), and a share walks away mid-task, so that the emulator times them out once its clock passes
``maximum_allowed_time``.

The rating model learns attention checks from the site's store (``task_items``), as the sandbox's
workers learn them from the ledger: something a simulator may read and a person could not.
Every URL is checked to be on 127.0.0.0/8 (or localhost) before it is requested; anything else is
refused, not tried.
"""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import requests
from lxml import html as lxml_html

from mturk_eval.errors import UserError
from mturk_eval.emulators.simulate import RatingModel, SimWorker, loopback_url as check_local, rate_item, work_time
from mturk_eval.tasks.answers import SIMULATED_FIELD, WORK_TIME_HEADER



@dataclass
class ParticipantsResult:
    completed: dict[str, str] = field(default_factory=dict)   # participant -> completion code
    returned: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)           # "no tasks left", study full, not eligible
    attention_checks: int = 0


def _get(session: requests.Session, url: str, **kw) -> requests.Response:
    return session.get(check_local(url), allow_redirects=False, timeout=30, **kw)


def _follow(session: requests.Session, url: str) -> requests.Response:
    """GET, following redirects one by one (each hop checked to be local)."""
    for _ in range(10):
        r = _get(session, url)
        if r.status_code not in (301, 302, 303, 307, 308):
            return r
        url = urljoin(url, r.headers["Location"])
    raise UserError(f"too many redirects from {url}")


def take_study(emulator_url: str, study_id: str, participant_id: str, worker: SimWorker, model: RatingModel,
               items_of: Callable[[str], list[dict[str, Any]] | None], behaviour: str = "complete") -> tuple[str, str]:
    """One participant's visit; ``behaviour`` is complete | return | abandon. (outcome, code or detail)."""
    s = requests.Session()
    s.trust_env = False
    start = f"{emulator_url.rstrip('/')}/_prolific/studies/{study_id}/take?PROLIFIC_PID={participant_id}&simulated=1"
    page = _follow(s, start)
    if page.status_code != 200 or "mturk_form" not in page.text:
        session_id = s.cookies.get("prolific_session")
        if session_id:  # Prolific let them in but the site has no task: they return the study, as asked
            s.post(check_local(f"{emulator_url.rstrip('/')}/_prolific/submissions/{session_id}/return"), timeout=30)
        return "refused", f"{page.status_code}"
    doc = lxml_html.document_fromstring(page.text)
    form = doc.get_element_by_id("mturk_form")
    if behaviour == "abandon":
        return "abandoned", ""
    if behaviour == "return":
        session_id = s.cookies.get("prolific_session")
        r = s.post(check_local(f"{emulator_url.rstrip('/')}/_prolific/submissions/{session_id}/return"), timeout=30)
        r.raise_for_status()
        return "returned", session_id
    hidden = {i.get("name"): i.get("value", "") for i in form.xpath(".//input[@type='hidden']") if i.get("name")}
    groups = sorted({i.get("name") for i in form.xpath(".//input[@type='radio']")})
    items = items_of(hidden.get("task", "")) or []
    data = dict(hidden)
    for g in groups:
        slot, _, aspect = g[1:].partition("_")
        item = items[int(slot)] if slot.isdigit() and int(slot) < len(items) else None
        data[g] = str(rate_item(worker, model, item, aspect))
    data[SIMULATED_FIELD] = "1"
    action = urljoin(page.url, form.get("action") or page.url)
    r = s.post(check_local(action), data=data, allow_redirects=False, timeout=30,
               headers={WORK_TIME_HEADER: str(work_time(worker, model))})
    if r.status_code not in (302, 303):
        return "refused", f"submit answered {r.status_code}"
    # The site sends the participant straight on to the completion URL (or shows a "Back to Prolific" link).
    final = _follow(s, urljoin(action, r.headers["Location"]))
    link = lxml_html.document_fromstring(final.text).xpath("//a[@id='handback-link']/@href")
    if link:
        final = _follow(s, urljoin(final.url, link[0]))
    if final.status_code != 200 or "id=code" not in final.text:
        return "refused", f"completion answered {final.status_code}"
    code = lxml_html.document_fromstring(final.text).xpath("string(//*[@id='code'])")
    return "completed", code


def simulate_participants(emulator_url: str, study_id: str, n: int, *, seed: int = 0,
                          model: RatingModel | None = None, return_share: float = 0.0, abandon_share: float = 0.0,
                          items_of: Callable[[str], list[dict[str, Any]] | None] | None = None) -> ParticipantsResult:
    """``n`` participants, one after another, each taking the study once."""
    check_local(emulator_url)
    model = model or RatingModel()
    rng = random.Random(seed)
    out = ParticipantsResult()
    for i in range(n):
        pid = secrets.token_hex(12) if seed is None else "%024x" % rng.getrandbits(96)
        worker = SimWorker(pid, rng.random() < model.careless_share, rng.gauss(0.0, model.worker_bias_sd),
                           random.Random(f"{seed}:{i}"))
        u = rng.random()
        behaviour = "return" if u < return_share else "abandon" if u < return_share + abandon_share else "complete"
        outcome, detail = take_study(emulator_url, study_id, pid, worker, model, items_of or (lambda t: None),
                                     behaviour)
        if outcome == "completed":
            out.completed[pid] = detail
        elif outcome == "returned":
            out.returned.append(pid)
        elif outcome == "abandoned":
            out.abandoned.append(pid)
        else:
            out.refused.append(pid)
    return out


# Statuses a finished (rated) submission may be put in; the others are taken from submissions still ACTIVE.
AFTER_RATING = ("APPROVED", "PARTIALLY APPROVED", "REJECTED")


def set_statuses(emulator_url: str, study_id: str, wanted: dict[str, int]) -> dict[str, list[str]]:
    """Emulator only: put ``wanted[status]`` of the study's submissions into each status through the admin
    route ``POST /_prolific/submissions/<id>/status``: APPROVED, PARTIALLY APPROVED and REJECTED from
    AWAITING REVIEW ones, the rest (RESERVED, RETURNED, TIMED-OUT, SCREENED OUT) from ACTIVE ones (the
    participants who walked away). Too few to draw from is a UserError naming the status."""
    base = check_local(emulator_url).rstrip("/")
    subs = requests.get(f"{base}/_prolific/state", timeout=30).json()["submissions"]
    pools = {k: [x["id"] for x in subs if x["study_id"] == study_id and x["status"] == k]
             for k in ("AWAITING REVIEW", "ACTIVE")}
    out: dict[str, list[str]] = {}
    for status, n in wanted.items():
        pool = pools["AWAITING REVIEW" if status in AFTER_RATING else "ACTIVE"]
        if len(pool) < n:
            src = "AWAITING REVIEW" if status in AFTER_RATING else "ACTIVE (walked away: --abandon-share)"
            raise UserError(f"--set-status {status}={n}: study {study_id} has only {len(pool)} {src} submissions"
                            " left to set")
        for sid in [pool.pop(0) for _ in range(n)]:
            r = requests.post(f"{base}/_prolific/submissions/{sid}/status", json={"status": status}, timeout=30)
            if r.status_code != 200:
                raise UserError(f"--set-status {status}: the emulator answered {r.status_code}: {r.text[:200]}")
            out.setdefault(status, []).append(sid)
    return out


def store_items(store) -> Callable[[str], list[dict[str, Any]] | None]:
    """``items_of`` from the rating site's store: a task's items with their attention checks."""
    return lambda task_id: store.task_items(task_id) if task_id else None
