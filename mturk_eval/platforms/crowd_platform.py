"""The crowd-platform interface: the only thing the workflow (mturk_eval.actions) knows about a platform.

MTurk stopped taking new customers on 2026-07-30, so the builder, ledger and report never call boto3
directly: they go through :class:`CrowdPlatform` (publish, list submissions, approve, reject, bonus,
block, expire, delete). :mod:`mturk_eval.platforms.mturk.mturk_platform` implements it for MTurk (real or any
MTurk-compatible endpoint); another platform (e.g. Prolific) is one more implementation.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterator


@dataclass(frozen=True)
class TaskType:
    """Settings shared by every task of a batch (MTurk's HIT type)."""

    title: str
    description: str
    keywords: str
    reward: str
    assignment_duration_s: int
    auto_approval_delay_s: int
    qualifications: tuple = ()

    def as_dict(self) -> dict:
        return {"title": self.title, "description": self.description, "keywords": self.keywords,
                "reward": self.reward, "assignment_duration_s": self.assignment_duration_s,
                "auto_approval_delay_s": self.auto_approval_delay_s, "qualifications": list(self.qualifications)}


@dataclass(frozen=True)
class TaskSpec:
    """One task to publish (MTurk's HIT)."""

    type_id: str
    question: str
    max_assignments: int
    lifetime_s: int
    request_token: str
    annotation: str


@dataclass(frozen=True)
class Published:
    task_id: str
    type_id: str | None
    group_id: str | None
    expiration: float | None = None
    recovered: bool = False  # True when the task already existed (a resumed publish)


@dataclass(frozen=True)
class TaskState:
    task_id: str
    status: str  # Assignable | Unassignable | Reviewable | Reviewing | Disposed
    pending: int
    available: int
    completed: int
    expiration: float | None
    annotation: str | None = None


@dataclass(frozen=True)
class Submission:
    assignment_id: str
    task_id: str
    worker_id: str
    status: str  # Submitted | Approved | Rejected
    answer_xml: str
    accept_time: float | None
    submit_time: float | None
    extra: dict = field(default_factory=dict)


class CrowdPlatform(abc.ABC):
    """What the workflow needs from a crowd platform. Errors a user can act on are UserErrors."""

    name: str = "platform"
    target: str = "sandbox"

    @abc.abstractmethod
    def balance(self) -> Decimal | None:
        """Money available to spend, or None where the platform cannot tell."""

    @abc.abstractmethod
    def create_task_type(self, settings: TaskType) -> str: ...

    @abc.abstractmethod
    def publish(self, spec: TaskSpec) -> Published:
        """Create the task exactly once per ``spec.request_token``; a repeat returns the existing task."""

    @abc.abstractmethod
    def find_by_annotation(self, annotations: set[str]) -> dict[str, Published]:
        """Tasks already on the platform whose annotation is in ``annotations`` (crash recovery)."""

    @abc.abstractmethod
    def task_state(self, task_id: str) -> TaskState: ...

    @abc.abstractmethod
    def list_submissions(self, task_id: str) -> Iterator[Submission]: ...

    @abc.abstractmethod
    def approve(self, assignment_id: str, feedback: str | None = None) -> None: ...

    @abc.abstractmethod
    def reject(self, assignment_id: str, feedback: str) -> None: ...

    @abc.abstractmethod
    def bonus(self, worker_id: str, assignment_id: str, amount: str, reason: str, request_token: str) -> bool:
        """Pay once per ``request_token``; False when the platform says it was already paid."""

    def bonus_payments(self, assignment_id: str) -> list[tuple[str, str]] | None:
        """(amount, reason) of every bonus paid for ``assignment_id``, or None where the platform cannot
        list them. Used to find a bonus paid by a run that crashed before recording it."""
        return None

    @abc.abstractmethod
    def block(self, worker_id: str, reason: str) -> None: ...

    @abc.abstractmethod
    def expire(self, task_id: str) -> None: ...

    @abc.abstractmethod
    def delete(self, task_id: str) -> None: ...

    @abc.abstractmethod
    def preview_url(self, group_id: str) -> str | None: ...

    @property
    def submit_url(self) -> str:
        """Where a task form posts when the page is opened without ``turkSubmitTo``."""
        return ""
