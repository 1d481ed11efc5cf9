"""MTurk as a :class:`mturk_eval.platforms.crowd_platform.CrowdPlatform`: the boto3 calls and MTurk's own rules
(fees, qualification requirements, worker-id pattern, QuestionFormAnswers, HIT states, the limits on
request tokens and annotations, its words: HITs and assignments).

Amazon Mechanical Turk closed on 2026-09-30 (Amazon's sandbox with it). The platform stays for the
bundled local MTurk-compatible server (``--sandbox``), any MTurk-compatible service (``--endpoint-url``)
and old studies; ``--live`` says so before it tries anything.

Every call goes through :func:`mturk_eval.platforms.mturk.retry.call` (backoff with jitter on throttling and
service faults). Idempotence rules implemented here: a repeated ``UniqueRequestToken`` on
CreateHITWithHITType answers ``AWS.MechanicalTurk.HitAlreadyExists`` with the HIT id in its message,
which is recovered (GetHIT) instead of creating another HIT; approving or rejecting an assignment that
already has that status, and a bonus whose token was already used, are not errors.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterator

from botocore.exceptions import ClientError

from mturk_eval.errors import UserError
from mturk_eval.platforms.crowd_platform import (TARGETS, CrowdPlatform, Published, Submission, TaskSpec, TaskState,
                                                 TaskType, UnitNames, resolve_target)
from mturk_eval.platforms.mturk import answers, fees, quals, question, retry
from mturk_eval.platforms.mturk.client import ENDPOINTS, SUBMIT_URLS, WORKER_SITES, make_client, submit_url_for

if TYPE_CHECKING:
    from mturk_eval.config import ExperimentConfig, HITConfig

HIT_ALREADY_EXISTS = "AWS.MechanicalTurk.HitAlreadyExists"
# Expiring a HIT = setting its expiration to a moment in the past (MTurk's documented way).
EXPIRE_AT = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc)
_ID_IN_MESSAGE = re.compile(r"\b([A-Z0-9]{20,64})\b")
WORKER_ID_RE = re.compile(r"A[A-Z0-9]{1,63}")
CLOSED_NOTICE = ("note: Amazon Mechanical Turk closed on 2026-09-30; --live reaches its production endpoint,"
                 " which no longer takes work (real raters: the rating site, via invite links or Prolific)")

QUESTIONS = ("html", "external")
SANDBOX_CLOSED = ("Amazon's MTurk sandbox closed with MTurk on 2026-09-30: --sandbox now means the bundled local"
                  " MTurk-compatible server (`mturk-eval publish --sandbox` starts it), or give --endpoint-url URL")


@dataclass
class MTurkSettings:
    """``[platform.mturk]`` and the target options. ``target``: sandbox (the bundled local server, or the
    service at ``endpoint_url``), live (MTurk's production endpoint, closed since 2026-09-30) or local
    (any MTurk-compatible service at ``endpoint_url``). ``sandbox_dir``: the experiment's run folder
    when the bundled sandbox is used (mturk_eval.emulators.background): found on first contact, or
    started there with ``start_sandbox``."""

    target: str = "sandbox"
    endpoint_url: str | None = None
    sandbox_dir: str | None = None
    start_sandbox: bool = False
    question: str = "html"
    public_url: str | None = None
    frame_height: int = 0
    run_dir: str | None = None
    site_public_url: str | None = None
    config_path: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UserError(f"platform.mturk.target: expected one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.endpoint_url is not None:
            resolve_target(live=self.target == "live", endpoint_url=self.endpoint_url)
        elif self.target == "local":
            raise UserError("target local needs --endpoint-url")
        if self.question not in QUESTIONS:
            raise UserError(f"platform.mturk.question: expected \"html\" (HTMLQuestion) or \"external\""
                            f" (ExternalQuestion on the rating site), got {self.question!r}")
        if isinstance(self.frame_height, bool) or not isinstance(self.frame_height, int) or self.frame_height < 0:
            raise UserError(f"platform.mturk.frame_height: expected pixels >= 0 (0: the whole frame), got"
                            f" {self.frame_height!r}")
        if self.question == "html":
            if self.public_url is not None:
                raise UserError("--public-url: HTMLQuestions carry the page itself; set [platform.mturk] question ="
                                " \"external\" to send workers to the rating site")
            return
        url = self.site_url_given
        if url is None and not self.bundled:
            raise UserError("platform.mturk.question = \"external\": give the rating site's public URL (--public-url"
                            " or [site] public_url; run `mturk-eval serve` there); only with the bundled sandbox"
                            " (--sandbox) is the site started by itself")
        if url is not None:
            loopback = re.fullmatch(r"http://(127\.[0-9.]+|localhost)(:[0-9]+)?(/\S*)?", url)
            if not (url.startswith("https://") or (loopback and self.target != "live")):
                raise UserError(f"--public-url: {url!r}: MTurk frames only https:// pages (http:// on loopback for"
                                " a local service)")

    @property
    def bundled(self) -> bool:
        """The bundled local sandbox (--sandbox, no --endpoint-url)."""
        return self.target == "sandbox" and self.endpoint_url is None

    @property
    def site_url_given(self) -> str | None:
        """The rating site's address for ExternalQuestions when one is given: --public-url, else (not the
        bundled sandbox, which starts its own site) [site] public_url; None when publish finds it."""
        return self.public_url or (None if self.bundled else self.site_public_url)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


class MTurkPlatform(CrowdPlatform):
    name = "mturk"
    title = "MTurk"
    fee_label = "MTurk fee"
    vocabulary = UnitNames(task="HIT", tasks="HITs", submission="assignment", submissions="assignments",
                           rater="worker")
    request_token_limit = 64   # UniqueRequestToken
    annotation_limit = 255     # RequesterAnnotation
    Settings = MTurkSettings
    settings: MTurkSettings | None = None  # from_settings: [platform.mturk] (question, the site's URL)
    _site_url: str | None = None
    _site_lock = threading.Lock()  # publish runs in threads: the site is found or started once
    _type: TaskType | None = None

    def __init__(self, client=None, target: str = "sandbox", endpoint_url: str | None = None, *,
                 sleep: Callable[[float], None] | None = None, attempts: int = 8, concurrency: int = 4,
                 sandbox_dir: str | None = None, start_sandbox: bool = False):
        """``client``: a boto3 mturk client, or None to make one on the first call (constructing the
        platform contacts nothing). ``sandbox_dir``: use the experiment's bundled sandbox (its URL is
        learnt on the first call, when it is found, restarted or, with ``start_sandbox``, started)."""
        self._client = client
        self.target = target
        self.endpoint_url = endpoint_url
        self.sandbox_dir = sandbox_dir if endpoint_url is None and target == "sandbox" else None
        self.start_sandbox = start_sandbox
        self._pool = max(10, concurrency + 2)
        self._retry: dict[str, Any] = {"attempts": attempts}
        if sleep is not None:
            self._retry["sleep"] = sleep

    @classmethod
    def from_settings(cls, settings: MTurkSettings, concurrency: int = 4) -> "MTurkPlatform":
        plat = cls(None, settings.target, settings.endpoint_url, concurrency=concurrency,
                   sandbox_dir=settings.sandbox_dir, start_sandbox=settings.start_sandbox)
        plat.settings = settings
        if plat.external:  # the rating page itself (what raters see on the site), not an HTMLQuestion
            plat.task_document = CrowdPlatform.task_document  # type: ignore[method-assign]
            plat.document_suffix = ".html"  # type: ignore[misc]
        return plat

    # ------------------------------------------------------------------ ExternalQuestions on the rating site
    @property
    def external(self) -> bool:
        """HITs are ExternalQuestions pointing at the rating site's ``/mturk/<task id>`` ([platform.mturk]
        question = "external") rather than HTMLQuestions carrying the page."""
        return self.settings is not None and self.settings.question == "external"

    @property
    def site_url(self) -> str:
        """The rating site's address in the ExternalQuestions: --public-url, else (bundled sandbox) the site
        in the background, started by publish, else [site] public_url."""
        with self._site_lock:
            return self._find_site_url()

    def _find_site_url(self) -> str:
        if self._site_url is None:
            s = self.settings
            url = s.site_url_given
            if url is None:
                from mturk_eval.emulators.background import ensure_site

                url = ensure_site(s.run_dir or self.sandbox_dir, s.config_path, start=self.start_sandbox).url
            self._site_url = url.rstrip("/")
        return self._site_url

    def _site_task(self, spec: TaskSpec) -> str:
        """Register the task in the site's store (exactly once per request token, as the HIT): its id."""
        from mturk_eval.site.store import SiteStore, site_store_path

        if not spec.items or not self.settings.run_dir:
            raise UserError("platform mturk (external): the task's items and the experiment folder are needed")
        duration = self._type.assignment_duration_s if self._type else 3600
        with SiteStore.open(site_store_path(self.settings.run_dir)) as store:
            tid, _ = store.add_task(spec.task_key.split("/")[0], spec.task_key, list(spec.items),
                                    k=spec.max_assignments, reservation_s=duration, request_token=spec.request_token,
                                    annotation=spec.annotation)
        return tid

    @property
    def client(self):
        if self._client is None and self.sandbox_dir is not None and self.endpoint_url is None:
            from mturk_eval.emulators.background import ensure_sandbox

            self.endpoint_url = ensure_sandbox(self.sandbox_dir, start=self.start_sandbox).url
        if self._client is None and self.target == "sandbox" and self.endpoint_url is None:
            raise UserError(SANDBOX_CLOSED)
        if self._client is None:
            self._client = make_client(self.target if self.endpoint_url is None else "local", self.endpoint_url,
                                       max_pool_connections=self._pool)
        return self._client

    # ------------------------------------------------------------------ identity and MTurk's rules
    @property
    def instance(self) -> str:
        if self.sandbox_dir is not None:
            from mturk_eval.emulators.background import state_path

            return f"the bundled MTurk sandbox ({state_path(self.sandbox_dir).resolve()})"
        return (self.endpoint_url or ENDPOINTS.get(self.target, "")).rstrip("/")

    def notices(self) -> list[str]:
        return [CLOSED_NOTICE] if self.target == "live" else []

    @classmethod
    def submission_fee(cls, reward, places: int, hit: "HITConfig") -> Decimal:
        return fees.assignment_fee(reward, places, quals.uses_masters(hit.qualifications))

    @classmethod
    def bonus_fee(cls, amount) -> Decimal:
        return fees.bonus_fee(amount)

    @classmethod
    def validate_rater_id(cls, rater_id: str, what: str = "--block") -> None:
        if not WORKER_ID_RE.fullmatch(rater_id):
            raise UserError(f"{what}: expected a worker id like A1B2C3..., got {rater_id!r}")

    document_suffix = ".xml"
    preview_submit_url = SUBMIT_URLS["sandbox"]

    @classmethod
    def task_document(cls, items: list[dict], cfg: "ExperimentConfig", submit_url: str) -> str:
        """An HTMLQuestion (at most 65,535 bytes). With ExternalQuestions (:meth:`from_settings`) an instance
        gives the rating page the site shows; the ExternalQuestion pointing at it is made in :meth:`publish`."""
        return question.html_question(items, cfg, submit_url)

    def task_type(self, cfg: "ExperimentConfig") -> TaskType:
        # (kept on the instance: with ExternalQuestions its assignment duration is the site's reservation time)
        h = cfg.hit
        self._type = TaskType(title=h.title, description=h.description, keywords=h.keywords, reward=h.reward,
                              assignment_duration_s=h.assignment_duration_s, auto_approval_delay_s=h.auto_approval_delay_s,
                              qualifications=tuple(quals.build_requirements(h.qualifications, self.target)))
        return self._type

    def _call(self, op: str, raw_errors: bool = False, **params: Any) -> dict:
        return retry.call(getattr(self.client, op), raw_errors=raw_errors, **self._retry, **params)

    # ------------------------------------------------------------------ account and types
    def balance(self) -> Decimal | None:
        r = self._call("get_account_balance")
        value = r.get("AvailableBalance")
        return None if value is None else Decimal(value)

    def create_task_type(self, settings: TaskType) -> str:
        params: dict[str, Any] = {
            "AutoApprovalDelayInSeconds": settings.auto_approval_delay_s,
            "AssignmentDurationInSeconds": settings.assignment_duration_s,
            "Reward": settings.reward,
            "Title": settings.title,
            "Keywords": settings.keywords,
            "Description": settings.description,
        }
        if settings.qualifications:
            params["QualificationRequirements"] = list(settings.qualifications)
        return self._call("create_hit_type", **params)["HITTypeId"]

    # ------------------------------------------------------------------ publishing
    def _published(self, hit: dict, recovered: bool = False) -> Published:
        return Published(task_id=hit["HITId"], type_id=hit.get("HITTypeId"), group_id=hit.get("HITGroupId"),
                         expiration=_epoch(hit.get("Expiration")), recovered=recovered)

    def publish(self, spec: TaskSpec) -> Published:
        doc = spec.question
        if self.external:
            from mturk_eval.platforms.mturk.external import external_question

            doc = external_question(self.site_url, self._site_task(spec), self.settings.frame_height)
        try:
            r = self._call(
                "create_hit_with_hit_type", raw_errors=True,
                HITTypeId=spec.type_id, MaxAssignments=spec.max_assignments, LifetimeInSeconds=spec.lifetime_s,
                Question=doc, RequesterAnnotation=spec.annotation, UniqueRequestToken=spec.request_token,
            )
        except ClientError as exc:
            if retry.turk_error_code(exc) != HIT_ALREADY_EXISTS and "already exists" not in retry.error_message(exc).lower():
                raise UserError(retry.describe(exc)) from None
            return self._recover(spec, retry.error_message(exc))
        return self._published(r["HIT"])

    def _recover(self, spec: TaskSpec, message: str) -> Published:
        m = _ID_IN_MESSAGE.search(message)
        if m:
            hit = self._call("get_hit", HITId=m.group(1))["HIT"]
            return self._published(hit, recovered=True)
        found = self.find_by_annotation({spec.annotation})
        if spec.annotation in found:
            p = found[spec.annotation]
            return Published(p.task_id, p.type_id, p.group_id, p.expiration, recovered=True)
        raise UserError(f"MTurk says the HIT with request token {spec.request_token} exists but names no HIT id"
                        f" and none carries its annotation; message: {message}")

    def find_by_annotation(self, annotations: set[str]) -> dict[str, Published]:
        found: dict[str, Published] = {}
        params: dict[str, Any] = {"MaxResults": 100}
        while True:
            r = self._call("list_hits", **params)
            for hit in r.get("HITs", []):
                if hit.get("RequesterAnnotation") in annotations:
                    found[hit["RequesterAnnotation"]] = self._published(hit, recovered=True)
            token = r.get("NextToken")
            if not token or not r.get("HITs") or len(found) == len(annotations):
                return found
            params["NextToken"] = token

    def task_state(self, task_id: str) -> TaskState:
        hit = self._call("get_hit", HITId=task_id)["HIT"]
        status = hit.get("HITStatus", "")
        pending = hit.get("NumberOfAssignmentsPending", 0)
        # DeleteHIT: only Reviewable HITs with nothing in progress (every assignment approved or rejected:
        # the workflow checks that against its ledger).
        return TaskState(task_id=hit["HITId"], status=status, pending=pending,
                         available=hit.get("NumberOfAssignmentsAvailable", 0),
                         completed=hit.get("NumberOfAssignmentsCompleted", 0),
                         expiration=_epoch(hit.get("Expiration")), annotation=hit.get("RequesterAnnotation"),
                         deletable=status == "Reviewable" and not pending)

    # ------------------------------------------------------------------ submissions
    def list_submissions(self, task_id: str) -> Iterator[Submission]:
        params: dict[str, Any] = {"HITId": task_id, "MaxResults": 100,
                                  "AssignmentStatuses": ["Submitted", "Approved", "Rejected"]}
        while True:
            r = self._call("list_assignments_for_hit", **params)
            for a in r.get("Assignments", []):
                raw = a.get("Answer", "")
                try:
                    fields, error = answers.parse_fields(raw), None
                except answers.AnswerError as exc:
                    fields, error = None, str(exc)
                yield Submission(
                    submission_id=a["AssignmentId"], task_id=a.get("HITId", task_id), rater_id=a["WorkerId"],
                    status=a["AssignmentStatus"], fields=fields, raw=raw, error=error,
                    accept_time=_epoch(a.get("AcceptTime")), submit_time=_epoch(a.get("SubmitTime")),
                    extra={k: _epoch(a.get(k)) for k in ("AutoApprovalTime", "ApprovalTime", "RejectionTime")
                           if a.get(k) is not None} | ({"RequesterFeedback": a["RequesterFeedback"]}
                                                        if a.get("RequesterFeedback") else {}),
                )
            token = r.get("NextToken")
            if not token or not r.get("Assignments"):
                return
            params["NextToken"] = token

    def _status_is(self, assignment_id: str, status: str) -> bool:
        r = self._call("get_assignment", AssignmentId=assignment_id)
        return r["Assignment"]["AssignmentStatus"] == status

    def approve(self, assignment_id: str, feedback: str | None = None) -> None:
        params: dict[str, Any] = {"AssignmentId": assignment_id}
        if feedback:
            params["RequesterFeedback"] = feedback
        try:
            self._call("approve_assignment", raw_errors=True, **params)
        except ClientError as exc:
            if not self._status_is(assignment_id, "Approved"):
                raise UserError(retry.describe(exc)) from None

    def reject(self, assignment_id: str, feedback: str) -> None:
        try:
            self._call("reject_assignment", raw_errors=True, AssignmentId=assignment_id, RequesterFeedback=feedback)
        except ClientError as exc:
            if not self._status_is(assignment_id, "Rejected"):
                raise UserError(retry.describe(exc)) from None

    def bonus(self, worker_id: str, assignment_id: str, amount: str, reason: str, request_token: str) -> bool:
        try:
            self._call("send_bonus", raw_errors=True, WorkerId=worker_id, BonusAmount=amount,
                       AssignmentId=assignment_id, Reason=reason, UniqueRequestToken=request_token)
        except ClientError as exc:
            msg = retry.error_message(exc).lower()
            # A reused token: "The idempotency token ... has already been processed" (DuplicateRequest).
            if "duplicate" in retry.turk_error_code(exc).lower() or ("already" in msg and ("token" in msg or "processed" in msg)):
                return False
            raise UserError(retry.describe(exc)) from None
        return True

    def bonus_payments(self, assignment_id: str) -> list[tuple[str, str]]:
        """(amount, reason) of every bonus MTurk paid for ``assignment_id`` (ListBonusPayments): how a
        bonus left pending longer than MTurk remembers its token is checked before it is sent again."""
        found: list[tuple[str, str]] = []
        params: dict[str, Any] = {"AssignmentId": assignment_id, "MaxResults": 100}
        while True:
            r = self._call("list_bonus_payments", **params)
            found += [(str(b.get("BonusAmount", "")), b.get("Reason", "")) for b in r.get("BonusPayments", [])]
            token = r.get("NextToken")
            if not token or not r.get("BonusPayments"):
                return found
            params["NextToken"] = token

    def block(self, worker_id: str, reason: str) -> None:
        self._call("create_worker_block", WorkerId=worker_id, Reason=reason)

    def expire(self, task_id: str) -> None:
        self._call("update_expiration_for_hit", HITId=task_id, ExpireAt=EXPIRE_AT)

    def delete(self, task_id: str) -> None:
        self._call("delete_hit", HITId=task_id)

    # ------------------------------------------------------------------ links
    def preview_url(self, group_id: str) -> str | None:
        if self.endpoint_url:  # the bundled sandbox or another compatible service: its own worker site
            return f"{self.endpoint_url.rstrip('/')}/mturk/preview?groupId={group_id}"
        if self.target in WORKER_SITES and self.sandbox_dir is None:
            return f"{WORKER_SITES[self.target]}/mturk/preview?groupId={group_id}"
        return None

    @property
    def submit_url(self) -> str:
        if self.sandbox_dir is not None and self.endpoint_url is None:
            return "/mturk/externalSubmit"  # the bundled sandbox's worker site serves the task itself
        return submit_url_for(self.target, self.endpoint_url)
