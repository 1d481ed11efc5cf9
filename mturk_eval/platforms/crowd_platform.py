"""The crowd-platform interface: the only thing the workflow (mturk_eval.actions) knows about a platform.

In neutral terms: a *task* is one page of rating items that ``places`` different raters each complete
once; a *submission* is one rater's completed task, with its answers as ``{form field: value}``; a
*rater* is whoever the platform says submitted (MTurk's worker, Prolific's participant, an invite link).
Submission states are the three of :data:`SUBMISSION_STATES`; each platform maps its own onto them.

Everything platform-specific lives with the platform (one package each under ``mturk_eval.platforms``):
its settings dataclass (validated in ``__post_init__``), its answer format (MTurk's QuestionFormAnswers
XML is parsed by the MTurk platform, never above it), its states, request-token rules, rater-id pattern,
fee rules and eligibility rules (MTurk's qualification requirements). The registry
(:mod:`mturk_eval.platforms.registry`) picks a platform by name.

Amazon Mechanical Turk closed on 2026-09-30: the MTurk platform stays for the bundled local
MTurk-compatible server and other compatible services; real raters come through the toolkit's own rating
site (invite links, Prolific, ExternalQuestion).
"""
from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Callable, ClassVar, Iterator

from mturk_eval.errors import UserError

if TYPE_CHECKING:
    from mturk_eval.config import ExperimentConfig, HITConfig

SUBMITTED, APPROVED, REJECTED = "Submitted", "Approved", "Rejected"
SUBMISSION_STATES = (SUBMITTED, APPROVED, REJECTED)
"""A submission is waiting for review, approved (paid where the platform pays) or rejected."""

TARGETS = ("sandbox", "live", "local")
"""Which instance of a platform a verb aims at: its test environment (``sandbox``: for MTurk the bundled
local server), the real one (``live``, real money), or any compatible server by URL (``local``)."""

CENT = Decimal("0.01")


class PlatformUnreachable(UserError):
    """The platform could not be reached; whether the last call took effect is unknown. ``reason`` is the
    short form (address and cause) that callers adding their own context use instead of the whole line."""

    def __init__(self, reason: str, hint: str):
        super().__init__(f"{reason}; {hint}")
        self.reason = reason


def money(value: str | Decimal | float) -> Decimal:
    """Dollars rounded to cents, half up."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def resolve_target(live: bool = False, endpoint_url: str | None = None) -> str:
    """``sandbox`` (the default), ``live`` or ``local`` (any ``--endpoint-url``)."""
    if live and endpoint_url:
        raise UserError("--live and --endpoint-url: choose one target (--endpoint-url is for compatible servers)")
    if endpoint_url:
        if not endpoint_url.startswith(("http://", "https://")):
            raise UserError(f"--endpoint-url: expected an http:// or https:// URL, got {endpoint_url!r}")
        return "local"
    return "live" if live else "sandbox"


@dataclass(frozen=True)
class UnitNames:
    """How a platform names its units in the workflow's messages: a task and a submission (MTurk: a HIT
    and an assignment)."""

    task: str = "task"
    tasks: str = "tasks"
    submission: str = "submission"
    submissions: str = "submissions"
    rater: str = "rater"


@dataclass(frozen=True)
class CostEstimate:
    """What publishing ``tasks`` tasks of ``places`` submissions each costs: rewards plus the platform's fee."""

    tasks: int
    places: int
    reward: Decimal
    fee_per_submission: Decimal
    fee_label: str = "platform fee"
    units: tuple[str, str] = ("tasks", "submissions")  # the platform's words, e.g. ("HITs", "assignments")

    @property
    def submissions(self) -> int:
        return self.tasks * self.places

    @property
    def rewards(self) -> Decimal:
        return self.reward * self.submissions

    @property
    def fees(self) -> Decimal:
        return self.fee_per_submission * self.submissions

    @property
    def total(self) -> Decimal:
        return self.rewards + self.fees

    def describe(self) -> str:
        task, sub = self.units
        return (f"{self.tasks} {task} x {self.places} {sub} = {self.submissions} {sub}"
                f" at ${self.reward} + ${self.fee_per_submission} {self.fee_label} each:"
                f" rewards ${self.rewards} + fees ${self.fees} = total ${self.total}")


@dataclass(frozen=True)
class TaskType:
    """Settings shared by every task of a batch (MTurk's HIT type). ``requirements`` are the platform's
    own eligibility rules (MTurk: QualificationRequirement dicts)."""

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
    """One task to publish. ``request_token`` is the workflow's deterministic idempotency key: the same
    token must never make a second task, however the platform achieves that."""

    type_id: str
    question: str
    max_assignments: int
    lifetime_s: int
    request_token: str
    annotation: str
    # For platforms that host the task page themselves (the rating site: links, Prolific): the task's
    # key ("<batch>/<n>") and its items in slot order (item fields plus ``attention_check``).
    task_key: str = ""
    items: tuple = ()


@dataclass(frozen=True)
class Published:
    task_id: str
    type_id: str | None
    group_id: str | None
    expiration: float | None = None
    recovered: bool = False  # True when the task already existed (a resumed publish)


@dataclass(frozen=True)
class TaskState:
    """A task as the platform sees it now. ``status`` is the platform's own word (shown to the user);
    ``pending`` submissions are in progress, ``available`` places are still open to raters,
    ``completed`` submissions are reviewed (approved or rejected). ``deletable``: the platform would
    delete it now (nothing in progress, everything reviewed)."""

    task_id: str
    status: str
    pending: int
    available: int
    completed: int
    expiration: float | None
    annotation: str | None = None
    deletable: bool = False


@dataclass(frozen=True)
class Submission:
    """One rater's completed task. ``fields`` are the answers as ``{form field: value}`` (None when the
    platform could not read them: ``error`` says why); ``raw`` is the platform's own answer document,
    kept verbatim in the ledger; ``status`` one of :data:`SUBMISSION_STATES`."""

    submission_id: str
    task_id: str
    rater_id: str
    status: str
    fields: dict[str, str] | None
    raw: str
    accept_time: float | None
    submit_time: float | None
    error: str | None = None
    extra: dict = field(default_factory=dict)


class CrowdPlatform(abc.ABC):
    """What the workflow needs from a crowd platform. Errors a user can act on are UserErrors.

    Constructing a platform never contacts it (the workflow prices and checks a run first); the first
    call that needs the platform does."""

    name: ClassVar[str] = "platform"
    title: ClassVar[str] = "the platform"  # how messages name it ("MTurk has 5 completed ...")
    fee_label: ClassVar[str] = "platform fee"
    vocabulary: ClassVar[UnitNames] = UnitNames()  # how messages name its units (MTurk: HITs, assignments)
    request_token_limit: ClassVar[int | None] = None  # the longest request token it takes (MTurk: 64)
    annotation_limit: ClassVar[int | None] = None     # the longest task annotation it takes (MTurk: 255)
    target: str = "sandbox"

    # ------------------------------------------------------------------ identity
    @property
    def instance(self) -> str:
        """Which instance of the platform this is (MTurk: the endpoint URL; the rating site: its URL and
        study id), recorded in the ledger when it is created; a verb aimed at another one is refused."""
        return ""

    # ------------------------------------------------------------------ the platform's own rules
    @classmethod
    def request_token(cls, experiment: str, target: str, batch: str, task_key: str, item_ids: list[str]) -> str:
        """The task's deterministic idempotency key (``me-`` + 48 hex digits of a SHA-256 over the
        experiment, target, batch, task key and item ids), cut to ``request_token_limit``. Ledgers keep
        it: changing this rule would make a resumed publish create tasks a second time."""
        raw = "\x1f".join([experiment, target, batch, task_key, *item_ids])
        token = "me-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:48]
        return token if cls.request_token_limit is None else token[:cls.request_token_limit]

    @classmethod
    def annotation(cls, experiment: str, task_key: str, token: str) -> str:
        """The task's annotation (``mturk-eval:<experiment>:<task key>:<token>``, how a crashed publish
        finds its tasks again). Within ``annotation_limit`` the task key and token stay whole: a long
        experiment name is shortened and tagged with its hash, so two annotations never collide by
        truncation."""
        tail = f":{task_key}:{token}"
        head = f"mturk-eval:{experiment}"
        limit = cls.annotation_limit
        if limit is not None and len(head) + len(tail) > limit:
            tag = "~" + hashlib.sha256(experiment.encode("utf-8")).hexdigest()[:8]
            head = head[:limit - len(tail) - len(tag)] + tag
        return head + tail

    @classmethod
    def submission_fee(cls, reward: str | Decimal, places: int, hit: "HITConfig") -> Decimal:
        """The platform's fee on one submission's reward (class-level: a report prices a ledger offline)."""
        return Decimal("0.00")

    @classmethod
    def bonus_fee(cls, amount: str | Decimal) -> Decimal:
        return Decimal("0.00")

    @classmethod
    def estimate_cost(cls, tasks: int, places: int, reward: str | Decimal, hit: "HITConfig") -> CostEstimate:
        return CostEstimate(tasks, places, cls.paid_reward(reward), cls.submission_fee(reward, places, hit),
                            cls.fee_label, (cls.vocabulary.tasks, cls.vocabulary.submissions))

    @classmethod
    def paid_reward(cls, reward: str | Decimal) -> Decimal:
        """What the platform pays a rater for one submission of ``hit.reward`` (invite links: nothing)."""
        return money(reward)

    @classmethod
    def validate_rater_id(cls, rater_id: str, what: str = "--block") -> None:
        """Refuse a rater id that cannot be one of this platform's (UserError naming ``what``)."""

    def task_type(self, cfg: "ExperimentConfig") -> TaskType:
        """The batch's task settings from ``[hit]`` (with the platform's own eligibility rules)."""
        h = cfg.hit
        return TaskType(title=h.title, description=h.description, keywords=h.keywords, reward=h.reward,
                        assignment_duration_s=h.assignment_duration_s, auto_approval_delay_s=h.auto_approval_delay_s)

    def ledger_target(self) -> str | None:
        """A ledger of the platform's own (``runs/<exp>/ledger.<target>.sqlite``) instead of the one the
        target options name (sandbox, live, local); None: those."""
        return None

    def published(self, echo: Callable[[str], None]) -> None:
        """The platform's own last step of a publish run (also one with nothing new to create; not a dry
        run): e.g. the invite links of the links platform. Default: nothing."""

    @classmethod
    def task_document(cls, items: list[dict], cfg: "ExperimentConfig", submit_url: str) -> str:
        """What the platform is sent for one task: by default the rating page itself (the rating site
        serves it); MTurk wraps it in an HTMLQuestion. Refuses (UserError) what the platform cannot take."""
        from mturk_eval.tasks.builder import render_html

        return render_html(items, cfg.language, submit_url, cfg.hit.template_dir)

    document_suffix: ClassVar[str] = ".html"  # preview's file name for the task document
    preview_submit_url: ClassVar[str] = ""   # where a previewed page's form points (it is not submitted)

    def notices(self) -> list[str]:
        """One-line notes a verb prints before it contacts the platform (e.g. MTurk's closure on --live)."""
        return []

    # ------------------------------------------------------------------ operations
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
    def approve(self, submission_id: str, feedback: str | None = None) -> None: ...

    @abc.abstractmethod
    def reject(self, submission_id: str, feedback: str) -> None: ...

    @abc.abstractmethod
    def bonus(self, rater_id: str, submission_id: str, amount: str, reason: str, request_token: str) -> bool:
        """Pay once per ``request_token``; False when the platform says it was already paid."""

    def bonus_payments(self, submission_id: str) -> list[tuple[str, str]] | None:
        """(amount, reason) of every bonus paid for ``submission_id``, or None where the platform cannot
        list them. Used to find a bonus paid by a run that crashed before recording it."""
        return None

    @abc.abstractmethod
    def block(self, rater_id: str, reason: str) -> None: ...

    @abc.abstractmethod
    def expire(self, task_id: str) -> None: ...

    @abc.abstractmethod
    def delete(self, task_id: str) -> None: ...

    @abc.abstractmethod
    def preview_url(self, group_id: str) -> str | None: ...

    @property
    def submit_url(self) -> str:
        """Where a task form posts when the page is opened without a platform-given submit address."""
        return ""

