"""Prolific as a crowd platform: one study per batch, pointing participants at the rating site.

The rating site (``mturk_eval.site``) hands out the tasks and stores the answers; Prolific recruits,
tracks submissions (one per participant, its id = the site's SESSION_ID) and pays. This module holds
the Prolific side of every verb, with its exactly-once rules (:mod:`records` documents the order of
writes):

* :meth:`ProlificPlatform.ensure_study` creates the batch's study at most once (intent recorded, then a
  lookup by ``internal_name`` before any create), publishes it, and only ever raises its places;
* :meth:`approve` uses bulk approve in chunks for many submissions (transition for one);
* :meth:`reject` checks Prolific's category and 100-character message before sending;
* :meth:`pay_bonuses` sets a bulk bonus up, records it, then pays it, settling a crash in between by
  asking the API;
* :meth:`block` adds participants to a participant group that later studies exclude by filter;
* :meth:`pause` / :meth:`stop` (STOP is final).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from mturk_eval.errors import UserError
from mturk_eval.platforms.prolific import contract, fees
from mturk_eval.platforms.prolific.client import OutcomeUnknown, ProlificClient, ProlificError
from mturk_eval.platforms.prolific.records import Records
from mturk_eval.platforms.prolific.settings import ProlificSettings, check_rejection

COMPLETED_CODE_PREFIX = "C"
FAILED_CODE_PREFIX = "F"


def internal_name(experiment: str, batch: str) -> str:
    """The hidden name that identifies the study of ``batch`` of ``experiment`` (crash recovery)."""
    return f"mturk-eval:{experiment}:{batch}"


def completion_codes(experiment: str, batch: str) -> dict[str, str]:
    """Deterministic, unguessable-enough codes per batch: {"COMPLETED": ..., "FAILED_ATTENTION_CHECK": ...}."""
    h = hashlib.sha256(f"{experiment}\x1f{batch}".encode()).hexdigest().upper()
    return {"COMPLETED": COMPLETED_CODE_PREFIX + h[:7], "FAILED_ATTENTION_CHECK": FAILED_CODE_PREFIX + h[7:14]}


def study_url(entry_url: str) -> str:
    """The rating site's Prolific entry point (``<public url>/p/<batch>``) with Prolific's three placeholders."""
    base = entry_url.rstrip("/")
    return (f"{base}?PROLIFIC_PID={contract.PID}&STUDY_ID={contract.STUDY_ID}"
            f"&SESSION_ID={contract.SESSION_ID}")


def check_public_url(url: str, emulator: bool) -> None:
    """A real study needs an https site URL; the emulator takes http on loopback too."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.netloc:
        return
    if emulator and parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return
    raise UserError(f"--public-url: {url!r} is not an https:// address; Prolific participants open it from their"
                    " own browsers, so a real study needs the rating site behind HTTPS (see `mturk-eval serve"
                    " --help`); nothing was sent")


@dataclass
class StudyOutcome:
    study_id: str
    status: str
    places: int
    created: bool = False       # created by this run
    recovered: bool = False     # found by internal_name after a crash
    published: bool = False     # PUBLISH sent by this run
    raised_by: int = 0          # places added by this run


class ProlificPlatform:
    name = "prolific"

    def __init__(self, client: ProlificClient, settings: ProlificSettings, *, emulator: bool = False,
                 echo: Callable[[str], None] = print):
        self.client = client
        self.settings = settings
        self.emulator = emulator
        self.echo = echo
        self._workspace: str | None = None
        self._project: str | None = None

    @property
    def target(self) -> str:
        return "emulator" if self.emulator else "live"

    # ------------------------------------------------------------------ account
    def workspace_and_project(self) -> tuple[str, str | None]:
        """The configured workspace/project, or the only one the token sees (more is a one-line error)."""
        if self._workspace:
            return self._workspace, self._project
        s = self.settings
        ws = s.workspace
        if not ws:
            found = self.client.workspaces()
            if len(found) != 1:
                names = ", ".join(f"{w['id']} ({w.get('title', '')})" for w in found[:5]) or "none"
                raise UserError(f"prolific.workspace: the token sees {len(found)} workspaces ({names}); set"
                                " prolific.workspace to one id; nothing was sent")
            ws = found[0]["id"]
        project = s.project or None
        if not project:
            projects = self.client.projects(ws)
            if len(projects) == 1:
                project = projects[0]["id"]
            elif len(projects) > 1:
                names = ", ".join(f"{p['id']} ({p.get('title', '')})" for p in projects[:5])
                raise UserError(f"prolific.project: workspace {ws} has {len(projects)} projects ({names}); set"
                                " prolific.project to one id; nothing was sent")
        self._workspace, self._project = ws, project
        return ws, project

    def check_filters(self, filters: list[dict]) -> None:
        """Every filter id must be in Prolific's catalogue (GET /filters/, a read)."""
        if not filters:
            return
        known = {f.get("filter_id") for f in self.client.filters()}
        for i, f in enumerate(filters):
            if f["filter_id"] not in known:
                raise UserError(f"prolific filters[{i}]: unknown filter id {f['filter_id']!r} (GET /filters/ lists"
                                f" {len(known)} ids, e.g. {', '.join(sorted(k for k in known if k)[:6])}); nothing"
                                " was sent")

    def calculator(self, reward: int, places: int) -> Decimal:
        return Decimal(str(self.client.cost_calculator(reward, places)))

    # ------------------------------------------------------------------ the study of a batch
    def study_body(self, *, experiment: str, batch: str, title: str, description: str, places: int,
                   public_url: str, filters: list[dict]) -> dict[str, Any]:
        s = self.settings
        codes = completion_codes(experiment, batch)
        body: dict[str, Any] = {
            "name": s.name or title,
            "internal_name": internal_name(experiment, batch),
            "description": s.description or description,
            "external_study_url": study_url(public_url),
            "prolific_id_option": "url_parameters",
            "completion_codes": [
                {"code": codes["COMPLETED"], "code_type": "COMPLETED", "actions": [{"action": s.completion}]},
                {"code": codes["FAILED_ATTENTION_CHECK"], "code_type": "FAILED_ATTENTION_CHECK",
                 "actions": [{"action": "MANUALLY_REVIEW"}]},
            ],
            "total_available_places": places,
            "estimated_completion_time": s.estimated_completion_time,
            "reward": s.reward_minor,
            "device_compatibility": list(s.device_compatibility),
            "peripheral_requirements": list(s.peripheral_requirements),
            "filters": filters,
            "submissions_config": {"max_submissions_per_participant": 1},
        }
        if s.maximum_allowed_time:
            body["maximum_allowed_time"] = s.maximum_allowed_time
        _, project = self.workspace_and_project()
        if project:
            body["project"] = project
        return body

    def find_study(self, name: str) -> dict | None:
        _, project = self.workspace_and_project()
        listing = self.client.studies(project) if project else self.client.studies()
        found = [st for st in listing if st.get("internal_name") == name]
        if len(found) > 1:
            raise UserError(f"Prolific has {len(found)} studies named {name!r} ({', '.join(st['id'] for st in found)});"
                            " delete the extra drafts in Prolific, then run publish again")
        return found[0] if found else None

    def ensure_study(self, records: Records, batch: str, body: dict[str, Any]) -> StudyOutcome:
        """Create (once), publish and grow the batch's study to ``body``'s places."""
        name, places = body["internal_name"], body["total_available_places"]
        rec = records.study(batch)
        if rec is None:
            records.study_intent(batch, name, self.client.api_url, places, body["reward"])
            rec = records.study(batch)
        out: StudyOutcome | None = None
        if rec.study_id is None:
            found = self.find_study(name)
            if found is None:
                try:
                    created = self.client.create_study(body)
                except OutcomeUnknown:
                    # The create may have happened: look before trying again (once).
                    created = self.find_study(name) or self.client.create_study(body)
                    out = StudyOutcome(created["id"], created["status"], places, recovered=True)
                out = out or StudyOutcome(created["id"], created["status"], places, created=True)
            else:
                out = StudyOutcome(found["id"], found["status"], places, recovered=True)
            records.set_study(batch, study_id=out.study_id, state="created")
        study = self.client.get_study(rec.study_id or out.study_id)
        out = out or StudyOutcome(study["id"], study["status"], study["total_available_places"])
        current = int(study["total_available_places"])
        if places < current:
            raise UserError(f"batch {batch}: the study {study['id']} already has {current} places and this run asks"
                            f" for {places}; Prolific only lets places grow (publish the same items, or a new"
                            " --batch); nothing was sent")
        if study["status"] == "UNPUBLISHED":
            if places != current:
                self.client.update_study(study["id"], {"total_available_places": places})
            try:
                self.client.transition_study(study["id"], "PUBLISH")
            except ProlificError as exc:
                if exc.status != 400 or self.client.get_study(study["id"])["status"] == "UNPUBLISHED":
                    raise
            out.published = True
        elif places > current:
            self.client.update_study(study["id"], {"total_available_places": places})
            out.raised_by = places - current
        study = self.client.get_study(study["id"])
        out.status, out.places = study["status"], int(study["total_available_places"])
        records.set_study(batch, state="published", places=out.places)
        return out

    # ------------------------------------------------------------------ submissions
    def submissions(self, study_id: str) -> Iterator[dict]:
        return self.client.study_submissions(study_id)

    def approve(self, submission_ids: list[str], bulk_from: int = 2) -> None:
        if not submission_ids:
            return
        if len(submission_ids) < bulk_from:
            for sid in submission_ids:
                self.client.transition_submission(sid, {"action": "APPROVE"})
            return
        for i in range(0, len(submission_ids), contract.BULK_APPROVE_MAX):
            self.client.bulk_approve(submission_ids[i:i + contract.BULK_APPROVE_MAX])  # one after another

    def reject(self, submission_id: str, category: str, message: str) -> None:
        check_rejection(category, message)
        try:
            self.client.transition_submission(submission_id, {"action": "REJECT", "rejection_category": category,
                                                              "message": message})
        except ProlificError as exc:
            if exc.status != 400 or self.client.submission(submission_id)["status"] != "REJECTED":
                raise

    # ------------------------------------------------------------------ bonuses (two steps)
    def pay_bonuses(self, records: Records, echo: Callable[[str], None]) -> tuple[int, Decimal]:
        """Settle, set up and pay every bonus row of the ledger; (participants paid, total minor units)."""
        paid_n, paid_total = 0, Decimal(0)
        # 1. Rows an earlier run left 'paying': did Prolific pay them?
        for bulk_id in sorted({b["bulk_id"] for b in records.bonuses("paying")}):
            self.settle_bulk(records, bulk_id)
        # 2. Set up what has no bulk yet (one bulk per study; a lost answer leaves only an unpaid draft).
        intents = records.bonuses("intent")
        for study_id in sorted({b["study_id"] for b in intents}):
            rows = [b for b in intents if b["study_id"] == study_id]
            csv = "\n".join(f"{b['submission_id']},{contract.major_units(b['amount'])}" for b in rows)
            try:
                setup = self.client.create_bonus(study_id, csv)
            except OutcomeUnknown:
                setup = self.client.create_bonus(study_id, csv)  # an unpaid set-up costs nothing
            records.bonus_set_up([(b["submission_id"], b["label"]) for b in rows], setup["id"],
                                 float(setup["total_amount"]))
            echo(f"bonus set up: {setup['id']} for {len(rows)} participants, Prolific's total"
                 f" {contract.major_units(setup['total_amount'])} (amount {contract.major_units(setup['amount'])}"
                 f" + fees {contract.major_units(setup['fees'])} + VAT {contract.major_units(setup['vat'])})")
        # 3. Pay each set-up exactly once: 'paying' is committed before the call.
        for bulk_id in sorted({b["bulk_id"] for b in records.bonuses("set_up")}):
            rows = records.bulk_rows(bulk_id)
            records.bulk_state(bulk_id, "paying")
            try:
                self.client.pay_bonus(bulk_id)
            except OutcomeUnknown as exc:
                raise UserError(f"{exc.message}; bulk bonus {bulk_id} ({len(rows)} participants) may or may not be"
                                " paid: run review again to settle it by asking Prolific (it is never paid twice"
                                " blindly)") from None
            except ProlificError:
                records.bulk_state(bulk_id, "set_up")  # refused by Prolific: nothing was paid
                raise
            records.bulk_state(bulk_id, "paid")
            paid_n += len(rows)
            paid_total += Decimal(str(rows[0]["bulk_total"]))
        return paid_n, paid_total

    def settle_bulk(self, records: Records, bulk_id: str) -> None:
        """A bulk left 'paying': paid if every participant shows the bonus, else stop and name it."""
        rows = records.bulk_rows(bulk_id)
        shown = 0
        for b in rows:
            payments = self.client.submission(b["submission_id"]).get("bonus_payments") or []
            earlier = sum(1 for o in records.bonuses("paid")
                          if o["submission_id"] == b["submission_id"] and o["amount"] == b["amount"])
            amounts = [round(float(p if not isinstance(p, dict) else p.get("amount", 0))) for p in payments]
            if sum(1 for a in amounts if a == b["amount"]) > earlier:
                shown += 1
        if shown == len(rows):
            records.bulk_state(bulk_id, "paid")
            self.echo(f"bonus {bulk_id}: found paid on Prolific (an earlier run stopped before recording it);"
                      " not paid again")
            return
        total = contract.major_units(rows[0]["bulk_total"] or 0)
        raise UserError(f"bulk bonus {bulk_id} ({len(rows)} participants, total {total}) was being paid when an"
                        f" earlier run stopped, and Prolific shows it on {shown} of them (payments take minutes);"
                        " check the study's bonus payments in Prolific, then run review with"
                        f" --bonus-paid {bulk_id} if it was paid or --bonus-unpaid {bulk_id} to pay it; nothing"
                        " was paid")

    # ------------------------------------------------------------------ blocking
    def blocklist_group(self, create: bool) -> str | None:
        ws, _ = self.workspace_and_project()
        name = self.settings.blocklist_group
        for g in self.client.groups(ws):
            if g.get("name") == name and not g.get("is_deleted"):
                return g["id"]
        if not create:
            return None
        try:
            return self.client.create_group(ws, name, "Participants blocked by mturk-eval review")["id"]
        except OutcomeUnknown:
            return self.blocklist_group(create=False) or self.client.create_group(ws, name)["id"]

    def block(self, participant_ids: list[str]) -> str:
        gid = self.blocklist_group(create=True)
        self.client.add_to_group(gid, participant_ids)
        return gid

    # ------------------------------------------------------------------ expiring
    def pause(self, study_id: str) -> tuple[str, bool]:
        """PAUSE an ACTIVE study; (status, whether a transition was sent)."""
        return self._transition(study_id, "PAUSE", frm=("ACTIVE",), done=("PAUSED",))

    def stop(self, study_id: str) -> tuple[str, bool]:
        """STOP (final) an ACTIVE, PAUSED or AWAITING REVIEW study; (status, whether it was sent)."""
        return self._transition(study_id, "STOP", frm=("ACTIVE", "PAUSED", "AWAITING REVIEW"),
                                done=("AWAITING REVIEW", "COMPLETED"))

    def _transition(self, study_id: str, action: str, frm: tuple[str, ...], done: tuple[str, ...]) -> tuple[str, bool]:
        status = self.client.get_study(study_id)["status"]
        if status not in frm:
            return status, False
        try:
            return self.client.transition_study(study_id, action)["status"], True
        except ProlificError as exc:
            status = self.client.get_study(study_id)["status"]
            if exc.status == 400 and status in done:  # a retried transition that had gone through
                return status, True
            raise


def submission_id_ok(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9-]{1,64}", value))


def hourly_check(settings: ProlificSettings) -> Decimal:
    return fees.check_hourly(settings.reward_minor, settings.estimated_completion_time, settings.currency,
                             settings.hourly_minimum)
