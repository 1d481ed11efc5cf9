"""MTurk as a :class:`mturk_eval.platforms.crowd_platform.CrowdPlatform`: the boto3 calls, and nothing else.

Every call goes through :func:`mturk_eval.platforms.mturk.retry.call` (backoff with jitter on throttling and
service faults). Idempotence rules implemented here: a repeated ``UniqueRequestToken`` on
CreateHITWithHITType answers ``AWS.MechanicalTurk.HitAlreadyExists`` with the HIT id in its message,
which is recovered (GetHIT) instead of creating another HIT; approving or rejecting an assignment that
already has that status, and a bonus whose token was already used, are not errors.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, Callable, Iterator

from botocore.exceptions import ClientError

from mturk_eval.errors import UserError
from mturk_eval.platforms.mturk import retry
from mturk_eval.platforms.mturk.client import WORKER_SITES, submit_url_for
from mturk_eval.platforms.crowd_platform import CrowdPlatform, Published, Submission, TaskSpec, TaskState, TaskType

HIT_ALREADY_EXISTS = "AWS.MechanicalTurk.HitAlreadyExists"
# Expiring a HIT = setting its expiration to a moment in the past (MTurk's documented way).
EXPIRE_AT = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc)
_ID_IN_MESSAGE = re.compile(r"\b([A-Z0-9]{20,64})\b")


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


class MTurkPlatform(CrowdPlatform):
    name = "mturk"

    def __init__(self, client, target: str, endpoint_url: str | None = None, *,
                 sleep: Callable[[float], None] | None = None, attempts: int = 8):
        self.client = client
        self.target = target
        self.endpoint_url = endpoint_url
        self._retry: dict[str, Any] = {"attempts": attempts}
        if sleep is not None:
            self._retry["sleep"] = sleep

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
        try:
            r = self._call(
                "create_hit_with_hit_type", raw_errors=True,
                HITTypeId=spec.type_id, MaxAssignments=spec.max_assignments, LifetimeInSeconds=spec.lifetime_s,
                Question=spec.question, RequesterAnnotation=spec.annotation, UniqueRequestToken=spec.request_token,
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
        return TaskState(task_id=hit["HITId"], status=hit.get("HITStatus", ""),
                         pending=hit.get("NumberOfAssignmentsPending", 0),
                         available=hit.get("NumberOfAssignmentsAvailable", 0),
                         completed=hit.get("NumberOfAssignmentsCompleted", 0),
                         expiration=_epoch(hit.get("Expiration")), annotation=hit.get("RequesterAnnotation"))

    # ------------------------------------------------------------------ submissions
    def list_submissions(self, task_id: str) -> Iterator[Submission]:
        params: dict[str, Any] = {"HITId": task_id, "MaxResults": 100,
                                  "AssignmentStatuses": ["Submitted", "Approved", "Rejected"]}
        while True:
            r = self._call("list_assignments_for_hit", **params)
            for a in r.get("Assignments", []):
                yield Submission(
                    assignment_id=a["AssignmentId"], task_id=a.get("HITId", task_id), worker_id=a["WorkerId"],
                    status=a["AssignmentStatus"], answer_xml=a.get("Answer", ""),
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
        if self.target in WORKER_SITES:
            return f"{WORKER_SITES[self.target]}/mturk/preview?groupId={group_id}"
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/mturk/preview?groupId={group_id}"
        return None

    @property
    def submit_url(self) -> str:
        return submit_url_for(self.target, self.endpoint_url)
