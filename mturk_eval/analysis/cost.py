"""What an experiment's crowd work cost, from its ledger: rewards, bonuses and the platform's fees.

Read through the ledger's public methods (``submissions``, ``task_status_rows``, ``bonuses``) and priced
with the fee rules of the ledger's platform (``registry.get_platform(...).submission_fee`` and
``bonus_fee``; for MTurk :mod:`mturk_eval.platforms.mturk.fees`), the same way ``mturk-eval status`` prices "cost so far": approved
assignments (reward + assignment fee) and paid bonuses (amount + bonus fee). Assignments still
``Submitted`` (not yet reviewed; MTurk approves them automatically after the HIT's auto-approval delay)
and pending bonuses are given apart, as what will be added unless rejected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mturk_eval.config import ExperimentConfig
from mturk_eval.platforms import registry
from mturk_eval.platforms.crowd_platform import APPROVED, REJECTED, money

ZERO = Decimal("0.00")


@dataclass
class Spend:
    approved: int = 0
    rewards: Decimal = ZERO              # approved assignments
    reward_fees: Decimal = ZERO
    bonuses_paid: int = 0
    bonuses: Decimal = ZERO              # paid bonuses
    bonus_fees: Decimal = ZERO
    submitted: int = 0                   # not yet reviewed
    submitted_cost: Decimal = ZERO       # their rewards + fees, if approved
    bonuses_pending: int = 0
    bonuses_pending_cost: Decimal = ZERO  # amounts + fees
    rejected: int = 0
    bonus_by_assignment: dict[str, Decimal] = field(default_factory=dict)  # paid bonuses per assignment

    @property
    def fees(self) -> Decimal:
        return self.reward_fees + self.bonus_fees

    @property
    def total(self) -> Decimal:
        return self.rewards + self.bonuses + self.fees

    def as_dict(self) -> dict[str, Any]:
        """For report.json: dollar amounts as floats (cents exact)."""
        return {
            "approved_assignments": self.approved, "rewards": float(self.rewards),
            "bonuses_paid": self.bonuses_paid, "bonuses": float(self.bonuses),
            "mturk_fees": float(self.fees), "total": float(self.total),
            "submitted_assignments": self.submitted, "submitted_cost": float(self.submitted_cost),
            "bonuses_pending": self.bonuses_pending, "bonuses_pending_cost": float(self.bonuses_pending_cost),
            "rejected_assignments": self.rejected,
        }


def ledger_spend(ledger: Any, cfg: ExperimentConfig) -> Spend:
    """The spend recorded in an open :class:`mturk_eval.ledger.Ledger`."""
    plat = registry.get_platform(ledger.get_meta("platform") or registry.DEFAULT)
    reward_of = {r["task_id"]: (r["reward"], r["places"]) for r in ledger.task_status_rows() if r["task_id"]}
    s = Spend()
    for a in ledger.submissions():
        reward, n = reward_of.get(a.task_id, (cfg.hit.reward, cfg.hit.assignments_per_hit))
        amount, fee = plat.paid_reward(reward), plat.submission_fee(reward, n, cfg.hit)
        if a.status == APPROVED:
            s.approved += 1
            s.rewards += amount
            s.reward_fees += fee
        elif a.status == REJECTED:
            s.rejected += 1
        else:
            s.submitted += 1
            s.submitted_cost += amount + fee
    for b in ledger.bonuses():
        amount = money(b["amount"])
        if b["state"] == "paid":
            s.bonuses_paid += 1
            s.bonuses += amount
            s.bonus_fees += plat.bonus_fee(amount)
            s.bonus_by_assignment[b["submission_id"]] = s.bonus_by_assignment.get(b["submission_id"], ZERO) + amount
        else:
            s.bonuses_pending += 1
            s.bonuses_pending_cost += amount + plat.bonus_fee(amount)
    return s
