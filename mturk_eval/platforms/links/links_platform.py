"""Invite links as a :class:`~mturk_eval.platforms.crowd_platform.CrowdPlatform`: the rating site's own store
(``runs/<exp>/site.sqlite``, :mod:`mturk_eval.site.store`) is the platform; no money, no fees, no bonuses.

``publish --platform links --raters N`` puts each planned task into the store (exactly once per request
token) and makes sure N invite links exist: one rater each, written to ``runs/<exp>/invites.csv`` (0600:
the tokens are secrets) and printed. Raters open their link on the site and do as many tasks as remain
for them. The links carry the site's address: ``--public-url`` / ``[platform.links] public_url`` /
``[site] public_url`` (a real study: you run ``mturk-eval serve`` behind HTTPS); with none of them,
``publish`` starts the rating site in the background on 127.0.0.1 (:func:`mturk_eval.emulators.background.ensure_site`). ``status``, ``collect``, ``review`` (approve = accept, reject = exclude:
the place opens again; block) and ``report`` work as for MTurk. Rater ids are ``r0001``, ``r0002``, ...
States: the store's submitted / approved / rejected map onto Submitted / Approved / Rejected.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from mturk_eval.errors import UserError
from mturk_eval.platforms.crowd_platform import (APPROVED, REJECTED, SUBMITTED, TARGETS, CrowdPlatform, Published,
                                                 Submission, TaskSpec, TaskState, TaskType)
from mturk_eval.site.store import RATER_RE, SiteStore, site_store_path
from mturk_eval.tasks.answers import SIMULATED_FIELD

INVITES_FILE = "invites.csv"
_STATUS = {"submitted": SUBMITTED, "approved": APPROVED, "rejected": REJECTED}


@dataclass
class LinksSettings:
    """``[platform.links]`` and the workflow options. ``raters``: invite links that should exist after
    ``publish`` (``--raters N``; more are added, none removed); ``public_url``: the site's address in the
    links (default ``site_public_url``, the config's ``[site] public_url``, else the experiment's background
    rating site: started by ``publish`` (``start_sandbox``), found by the other verbs); ``run_dir``,
    ``config_path``: the experiment's ``runs/<exp>`` and config file (filled in by the registry)."""

    raters: int = 0
    public_url: str | None = None
    run_dir: str | None = None
    site_public_url: str | None = None
    target: str = "sandbox"
    endpoint_url: str | None = None
    config_path: str | None = None
    start_sandbox: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.raters, bool) or not isinstance(self.raters, int) or not 0 <= self.raters <= 100000:
            raise UserError(f"--raters: expected a number of raters from 0 to 100000, got {self.raters!r}")
        if self.public_url is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", self.public_url):
            raise UserError(f"platform.links.public_url: expected an http(s):// URL, got {self.public_url!r}")
        if self.target == "live":
            raise UserError("--live: invite links involve no money, so there is no live or sandbox; drop --live")
        if self.target not in TARGETS:
            raise UserError(f"platform.links.target: expected one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.endpoint_url is not None:
            raise UserError("--endpoint-url: not used by invite links (the rating site is the platform)")


class LinksPlatform(CrowdPlatform):
    name: ClassVar[str] = "links"
    fee_label: ClassVar[str] = "no fee (invite links)"
    Settings = LinksSettings

    def __init__(self, settings: LinksSettings, store: SiteStore | None = None):
        if not settings.run_dir and store is None:
            raise UserError("platform links: no experiment folder given (run_dir)")
        self.settings = settings
        self.target = settings.target
        self._store = store
        self._type: TaskType | None = None
        self._url: str | None = None
        self.background_site = False  # the links point at the background site of --sandbox

    @classmethod
    def from_settings(cls, settings: LinksSettings, concurrency: int = 4) -> "LinksPlatform":
        return cls(settings)

    @property
    def store_path(self) -> Path:
        return self._store.path if self._store is not None else site_store_path(self.settings.run_dir)

    @property
    def store(self) -> SiteStore:
        if self._store is None:
            self._store = SiteStore.open(self.store_path)
        return self._store

    @property
    def public_url(self) -> str:
        """The site's address in the links: the configured one, else the background site (started by
        publish, found otherwise), else http://127.0.0.1:8000 (`mturk-eval serve`'s default)."""
        if self._url is None:
            url = self.settings.public_url or self.settings.site_public_url
            if url is None and self.settings.run_dir:
                from mturk_eval.emulators.background import ensure_site, find_site

                s = self.settings
                rec = (ensure_site(s.run_dir, s.config_path) if s.start_sandbox else find_site(s.run_dir, s.config_path))
                url, self.background_site = (rec.url, True) if rec else (None, False)
            self._url = (url or "http://127.0.0.1:8000").rstrip("/")
        return self._url

    def task_type(self, cfg: Any) -> TaskType:
        self._type = super().task_type(cfg)  # its assignment duration is the site's reservation time
        return self._type

    def ledger_target(self) -> str:
        return "links"

    # ------------------------------------------------------------------ identity and rules
    @property
    def instance(self) -> str:
        return f"rating site {Path(self.store_path).resolve()}"

    @classmethod
    def submission_fee(cls, reward: str | Decimal, places: int, hit: Any) -> Decimal:
        return Decimal("0.00")

    @classmethod
    def paid_reward(cls, reward: str | Decimal) -> Decimal:
        return Decimal("0.00")   # invite links pay nothing

    @classmethod
    def validate_rater_id(cls, rater_id: str, what: str = "--block") -> None:
        if not RATER_RE["links"].fullmatch(rater_id or ""):
            raise UserError(f"{what}: expected an invite rater id like r0001, got {rater_id!r}")

    def notices(self) -> list[str]:
        return ["invite links: no money is involved; raters rate on the rating site"]

    # ------------------------------------------------------------------ operations
    def balance(self) -> Decimal | None:
        return None

    def create_task_type(self, settings: TaskType) -> str:
        self._type = settings
        digest = json.dumps(settings.as_dict(), sort_keys=True)
        import hashlib

        return "links-" + hashlib.sha256(digest.encode()).hexdigest()[:16]

    def publish(self, spec: TaskSpec) -> Published:
        items, key = list(spec.items), spec.task_key
        if not items:
            raise UserError("platform links: the task's items were not given to publish")
        reservation = self._type.assignment_duration_s if self._type else 600
        tid, created = self.store.add_task(key.split("/")[0], key, items, k=spec.max_assignments,
                                           reservation_s=reservation, request_token=spec.request_token,
                                           annotation=spec.annotation)
        return Published(tid, None, None, None, recovered=not created)

    def find_by_annotation(self, annotations: set[str]) -> dict[str, Published]:
        return {ann: Published(tid, None, None, None, recovered=True)
                for ann, tid in self.store.tasks_by_annotation(annotations).items()}

    def task_state(self, task_id: str) -> TaskState:
        t = self.store.task(task_id)
        if t is None:
            raise UserError(f"task {task_id}: not on the rating site ({self.store_path})")
        subs = [a for a in self.store.assignments(task_id=task_id)]
        import time

        now = time.time()
        pending = sum(1 for a in subs if a.live(now))
        submitted = sum(1 for a in subs if a.state == "submitted")
        reviewed = sum(1 for a in subs if a.state in ("approved", "rejected"))
        taken = pending + submitted + sum(1 for a in subs if a.state == "approved")
        batch = self.store.batch(t["batch_id"])
        status = "Closed" if t["state"] != "open" or batch.state != "open" else (
            "Complete" if taken >= t["k"] and pending == 0 else "Open")
        return TaskState(task_id=task_id, status=status, pending=pending, available=max(0, t["k"] - taken),
                         completed=reviewed, expiration=None, annotation=t["annotation"],
                         deletable=pending == 0 and submitted == 0)

    def list_submissions(self, task_id: str) -> Iterator[Submission]:
        for a in self.store.assignments(task_id=task_id):
            if a.state not in _STATUS:
                continue
            fields = dict(a.answers or {})
            if a.simulated:
                fields[SIMULATED_FIELD] = "1"
            start = a.submitted_at - a.work_time_s if a.submitted_at and a.work_time_s is not None else a.reserved_at
            yield Submission(submission_id=a.assignment_id, task_id=a.task_id, rater_id=a.rater_id,
                             status=_STATUS[a.state], fields=fields, raw=json.dumps(a.answers, sort_keys=True),
                             accept_time=start, submit_time=a.submitted_at,
                             extra={"work_time_s": a.work_time_s, "platform": "links"})

    def approve(self, submission_id: str, feedback: str | None = None) -> None:
        self.store.review(submission_id, "approved", feedback)

    def reject(self, submission_id: str, feedback: str) -> None:
        self.store.review(submission_id, "rejected", feedback)

    def bonus(self, rater_id: str, submission_id: str, amount: str, reason: str, request_token: str) -> bool:
        raise UserError("invite links carry no money: there are no bonuses to pay (review --bonus is for paid"
                        " platforms)")

    def block(self, rater_id: str, reason: str) -> None:
        self.validate_rater_id(rater_id)
        self.store.block_rater("links", rater_id, reason)

    def expire(self, task_id: str) -> None:
        self.store.close_task(task_id)

    def delete(self, task_id: str) -> None:
        # The site keeps its records (answers already collected stay in the ledger); a deleted task
        # simply takes no more raters.
        self.store.close_task(task_id)

    def preview_url(self, group_id: str) -> str | None:
        return None

    # ------------------------------------------------------------------ invites
    def ensure_invites(self, n: int | None = None) -> tuple[list, int]:
        """Make sure ``n`` (default ``settings.raters``) active invite links exist; returns (all active
        invites, how many were made now). Revoked ones do not count."""
        n = self.settings.raters if n is None else n
        active = [i for i in self.store.invites() if i.revoked_at is None]
        made = self.store.create_invites(n - len(active)) if n > len(active) else []
        return active + made, len(made)

    def invite_url(self, token: str) -> str:
        return f"{self.public_url}/i/{token}"

    def write_invites(self, invites: list) -> Path:
        """``runs/<exp>/invites.csv`` (rater_id, url, created_at), readable by the owner only."""
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["rater_id", "url", "created_at"])
        for inv in invites:
            w.writerow([inv.rater_id, self.invite_url(inv.token), f"{inv.created_at:.0f}"])
        path = Path(self.store_path).parent / INVITES_FILE
        from mturk_eval.privacy import write_private_text

        write_private_text(path, out.getvalue())   # 0600 from the first byte: the tokens are secrets
        return path

    def published(self, echo: Callable[[str], None]) -> None:
        """After publish: the invite links (``--raters``), printed and written to invites.csv."""
        if not self.settings.raters:
            n_active = sum(1 for i in self.store.invites() if i.revoked_at is None)
            echo(f"invite links: {n_active} active; add raters with --raters N")
            return
        invites, made = self.ensure_invites()
        path = self.write_invites(invites)
        echo(f"invite links: {made} new, {len(invites)} active, written to {path} (keep it private:"
             " each link lets one person rate)")
        for inv in invites:
            echo(f"  {inv.rater_id}  {self.invite_url(inv.token)}")
        if self.background_site:
            echo(f"the rating site runs in the background on {self.public_url} (this machine only; for raters"
                 " elsewhere run `mturk-eval serve` behind HTTPS and set [site] public_url)")
        else:
            echo(f"raters open their link on the rating site: mturk-eval serve (public URL {self.public_url})")
