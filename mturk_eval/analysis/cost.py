"""What an experiment's crowd work cost, from its ledger: rewards, bonuses and MTurk's fees.

Read through the ledger's public methods (``assignments``, ``hit_status_rows``, ``bonuses``) and priced
with :mod:`mturk_eval.platforms.mturk.fees`, the same way ``mturk-eval status`` prices "cost so far": approved
assignments (reward + assignment fee) and paid bonuses (amount + bonus fee). Assignments still
``Submitted`` (not yet reviewed; MTurk approves them automatically after the HIT's auto-approval delay)
and pending bonuses are given apart, as what will be added unless rejected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mturk_eval.config import ExperimentConfig
from mturk_eval.platforms.mturk import fees, quals

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
    masters = quals.uses_masters(cfg.hit.qualifications)
    reward_of = {r["hit_id"]: (r["reward"], r["max_assignments"]) for r in ledger.hit_status_rows() if r["hit_id"]}
    s = Spend()
    for a in ledger.assignments():
        reward, n = reward_of.get(a.hit_id, (cfg.hit.reward, cfg.hit.assignments_per_hit))
        amount, fee = fees.money(reward), fees.assignment_fee(reward, n, masters)
        if a.status == "Approved":
            s.approved += 1
            s.rewards += amount
            s.reward_fees += fee
        elif a.status == "Rejected":
            s.rejected += 1
        else:
            s.submitted += 1
            s.submitted_cost += amount + fee
    for b in ledger.bonuses():
        amount = fees.money(b["amount"])
        if b["state"] == "paid":
            s.bonuses_paid += 1
            s.bonuses += amount
            s.bonus_fees += fees.bonus_fee(amount)
            s.bonus_by_assignment[b["assignment_id"]] = s.bonus_by_assignment.get(b["assignment_id"], ZERO) + amount
        else:
            s.bonuses_pending += 1
            s.bonuses_pending_cost += amount + fees.bonus_fee(amount)
    return s
