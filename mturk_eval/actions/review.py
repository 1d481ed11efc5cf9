"""``review``: approve, reject, block and bonus, from what the ledger has stored. Dry run by default.

Safety rules: only assignments whose valid answers are stored in the ledger are approved (collect
writes the answers and the assignment in one transaction); rejecting needs an explicit opt-in and
sends feedback a worker can read; each bonus has a ledger row and a deterministic SendBonus
``UniqueRequestToken`` per (assignment, label), written before the call, so no rerun pays twice.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from decimal import Decimal

from mturk_eval.actions.common import experiment_lock, make_platform, open_ledger, select_batches
from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.platforms.mturk import fees
from mturk_eval.platforms.crowd_platform import CrowdPlatform

DEFAULT_REJECT_FEEDBACK = (
    "Your answer failed a quality-check item: one reply in this task was deliberately broken or off-topic"
    " and was rated as fine. Sorry, we cannot accept this work."
)
DEFAULT_BLOCK_REASON = "Repeatedly failed quality-check items in our rating tasks."
_MONEY = re.compile(r"[0-9]+(\.[0-9]{1,2})?")
_WORKER = re.compile(r"A[A-Z0-9]{1,63}")
# MTurk remembers a SendBonus UniqueRequestToken for 24 hours: a bonus left pending longer ago than this
# is looked up (ListBonusPayments) before it is sent again.
BONUS_CHECK_AFTER_S = 12 * 3600


@dataclass
class Action:
    kind: str          # approve | reject | bonus | block | skip
    assignment_id: str | None
    worker_id: str
    detail: str = ""
    done: bool = False
    amount: str | None = None          # bonus: what is sent (a resumed bonus keeps its stored amount)
    reason: str | None = None          # bonus: the message sent with it
    pending_since: float | None = None  # bonus: when an earlier run stored it (resumed), else None

    def format(self) -> str:
        what = f"{self.kind:7s} {self.assignment_id or '-':30s} worker {self.worker_id}"
        return f"{what}  {self.detail}".rstrip()


def bonus_token(experiment: str, target: str, assignment_id: str, label: str) -> str:
    raw = "\x1f".join(["bonus", experiment, target, assignment_id, label])
    return "mb-" + hashlib.sha256(raw.encode()).hexdigest()[:48]


def bonus_total(actions: list[Action], amount: str) -> tuple[int, Decimal]:
    """How many bonuses ``actions`` pay and what they cost with MTurk's fee (each at its own amount: a
    resumed bonus keeps the one stored in the ledger; ``amount`` is for actions without one)."""
    paid = [a.amount or amount for a in actions if a.kind == "bonus"]
    return len(paid), sum((fees.money(x) + fees.bonus_fee(x) for x in paid), Decimal("0.00"))


def check_options(*, reject_failed_attention: bool = False, feedback: str = DEFAULT_REJECT_FEEDBACK,
                  block_workers: tuple[str, ...] = (), bonus: str | None = None, bonus_reason: str = "",
                  **_: object) -> None:
    """Refuse bad review options (before any ledger is looked at, so the message is about the option)."""
    if bonus is not None and (not _MONEY.fullmatch(bonus) or Decimal(bonus) <= 0):
        raise UserError(f"--bonus: expected dollars like 0.10, got {bonus!r}")
    if bonus is not None and not bonus_reason.strip():
        raise UserError("--bonus-reason: workers see it with the bonus; give one")
    if reject_failed_attention and not feedback.strip():
        raise UserError("--feedback: a rejected worker must be told why; give a reason")
    for w in block_workers:
        if not _WORKER.fullmatch(w):
            raise UserError(f"--block: expected a worker id like A1B2C3..., got {w!r}")


def plan(cfg: ExperimentConfig, ledger, *, target: str, reject_failed_attention: bool = False,
         feedback: str = DEFAULT_REJECT_FEEDBACK, block_failed_attention: bool = False,
         block_workers: tuple[str, ...] = (), block_reason: str = DEFAULT_BLOCK_REASON,
         bonus: str | None = None, bonus_reason: str = "", bonus_label: str = "bonus",
         batches: tuple[str, ...] = ()) -> list[Action]:
    """What review would do, in execution order: approvals/rejections, bonuses, blocks.

    Only the assignments of ``batches``' HITs are looked at (default: every batch); so are the workers
    ``block_failed_attention`` blocks. Workers named in ``block_workers`` are blocked whatever the batch."""
    check_options(reject_failed_attention=reject_failed_attention, feedback=feedback, block_workers=block_workers,
                  bonus=bonus, bonus_reason=bonus_reason)
    actions: list[Action] = []
    approved: list[tuple[str, str]] = []
    failed_workers: set[str] = set()
    selected = set(select_batches(ledger, batches))
    hit_ids = {h.hit_id for h in ledger.hits() if h.hit_id and h.batch in selected}
    for a in ledger.assignments():
        if a.hit_id not in hit_ids:
            continue
        if a.attention_passed is False:
            failed_workers.add(a.worker_id)
        if a.status == "Approved":
            approved.append((a.assignment_id, a.worker_id))
            continue
        if a.status != "Submitted":
            continue
        if not a.valid or ledger.answer_count(a.assignment_id) == 0:
            actions.append(Action("skip", a.assignment_id, a.worker_id, f"answer not usable: {a.error}"))
            continue
        if a.attention_passed is False and reject_failed_attention:
            actions.append(Action("reject", a.assignment_id, a.worker_id, f"feedback: {feedback}"))
            continue
        note = "failed attention check (kept; --reject-failed-attention to reject)" if a.attention_passed is False else ""
        actions.append(Action("approve", a.assignment_id, a.worker_id, note))
        approved.append((a.assignment_id, a.worker_id))
    if bonus is not None:
        cost = fees.money(bonus) + fees.bonus_fee(bonus)
        for assignment_id, worker_id in approved:
            token = bonus_token(cfg.name, target, assignment_id, bonus_label)
            row = ledger.bonus(token)
            if row is not None and row["state"] == "paid":
                continue
            if row is not None:
                # Stored by an earlier run that stopped before MTurk answered: MTurk may have paid it,
                # so it is sent as stored (same token, amount and reason), whatever this run's options.
                amount, reason = row["amount"], row["reason"]
                note = " (resuming the bonus left pending by an earlier run"
                if fees.money(amount) != fees.money(bonus) or reason != bonus_reason:
                    note += f": its stored amount and reason are sent, not --bonus {bonus} / --bonus-reason"
                note += ")"
                cost_row = fees.money(amount) + fees.bonus_fee(amount)
                actions.append(Action("bonus", assignment_id, worker_id,
                                      f"${amount} (+ fee = ${cost_row}): {reason}{note}", amount=amount,
                                      reason=reason, pending_since=row["created_at"]))
                continue
            actions.append(Action("bonus", assignment_id, worker_id, f"${bonus} (+ fee = ${cost}): {bonus_reason}",
                                  amount=bonus, reason=bonus_reason))
    to_block = list(dict.fromkeys([*block_workers, *(sorted(failed_workers) if block_failed_attention else [])]))
    for w in to_block:
        row = ledger.block(w)
        if row is not None and row["state"] == "blocked":
            continue
        actions.append(Action("block", None, w, f"reason: {block_reason}"))
    return actions


def review(cfg: ExperimentConfig, *, target: str = "sandbox", endpoint_url: str | None = None, apply: bool = False,
           platform: CrowdPlatform | None = None, **options) -> list[Action]:
    """Plan the review; with ``apply`` carry it out, recording each step in the ledger."""
    check_options(**options)
    # The ledger is opened (and checked) before the lock is taken: a refused run leaves no lock file;
    # so is an unknown --batch.
    with open_ledger(cfg, target, create=False) as ledger:
        select_batches(ledger, options.get("batches", ()))
    with open_ledger(cfg, target, create=False) as ledger, experiment_lock(cfg, target, "review"):
        actions = plan(cfg, ledger, target=target, **options)
        if not apply:
            return actions
        plat = platform or make_platform(target, endpoint_url)
        feedback = options.get("feedback", DEFAULT_REJECT_FEEDBACK)
        for act in actions:
            if act.kind == "approve":
                # Re-read: approve only what the ledger holds answers for, right now.
                rec = ledger.assignment_record(act.assignment_id)
                if rec is None or not rec["valid"] or ledger.answer_count(act.assignment_id) == 0:
                    continue
                plat.approve(act.assignment_id)
                ledger.set_assignment_status(act.assignment_id, "Approved", "approved")
            elif act.kind == "reject":
                plat.reject(act.assignment_id, feedback)
                ledger.set_assignment_status(act.assignment_id, "Rejected", "rejected", feedback)
            elif act.kind == "bonus":
                label = options.get("bonus_label", "bonus")
                token = bonus_token(cfg.name, target, act.assignment_id, label)
                if act.pending_since is not None and time.time() - act.pending_since > BONUS_CHECK_AFTER_S \
                        and _paid_on_platform(ledger, plat, act):
                    ledger.mark_bonus_paid(token)
                    act.detail += "; found already paid (ListBonusPayments), not sent again"
                    act.done = True
                    continue
                ledger.add_bonus(token, act.assignment_id, act.worker_id, act.amount, act.reason)
                plat.bonus(act.worker_id, act.assignment_id, act.amount, act.reason, token)
                ledger.mark_bonus_paid(token)
            elif act.kind == "block":
                reason = options.get("block_reason", DEFAULT_BLOCK_REASON)
                ledger.record_block(act.worker_id, reason, "pending")
                plat.block(act.worker_id, reason)
                ledger.record_block(act.worker_id, reason, "blocked")
            else:
                continue
            act.done = True
        return actions


def _paid_on_platform(ledger, plat: CrowdPlatform, act: Action) -> bool:
    """Whether the platform paid ``act``'s bonus although the ledger has it pending: more payments of that
    amount and reason on the assignment than the ledger has marked paid. Platforms that cannot list
    bonuses answer False (the bonus is sent again with its token)."""
    listing = plat.bonus_payments(act.assignment_id)
    if listing is None:
        return False
    same = lambda amount, reason: fees.money(amount) == fees.money(act.amount) and reason == act.reason  # noqa: E731
    on_platform = sum(1 for amount, reason in listing if same(amount, reason))
    in_ledger = sum(1 for b in ledger.bonuses() if b["assignment_id"] == act.assignment_id
                    and b["state"] == "paid" and same(b["amount"], b["reason"]))
    return on_platform > in_ledger
