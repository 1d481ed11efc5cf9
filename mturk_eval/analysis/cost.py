"""What an experiment's crowd work cost, from its ledger: rewards, bonuses and the platform's fees, in the
platform's currency (MTurk USD; a Prolific study the GBP or USD of ``[platform.prolific] currency``) and
with the platform's own name for its fees.

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
    reward: Decimal | None = None        # the tasks' own reward per submission (median), from the ledger
    currency: str = "USD"                # the platform's: MTurk USD, Prolific the study's GBP or USD
    fee_label: str = "MTurk fees"        # the platform's own name for its fees, as the report prints it
    submissions_word: str = "assignments"  # MTurk "assignments", Prolific and invite links "submissions"

    @property
    def fees(self) -> Decimal:
        return self.reward_fees + self.bonus_fees

    @property
    def total(self) -> Decimal:
        return self.rewards + self.bonuses + self.fees

    def as_dict(self) -> dict[str, Any]:
        """For report.json: amounts in ``currency`` as floats (cents exact), ``fees`` named ``fee_label``."""
        return {
            "currency": self.currency, "fee_label": self.fee_label, "submissions_word": self.submissions_word,
            "approved_assignments": self.approved, "rewards": float(self.rewards),
            "bonuses_paid": self.bonuses_paid, "bonuses": float(self.bonuses),
            "fees": float(self.fees), "total": float(self.total),
            "submitted_assignments": self.submitted, "submitted_cost": float(self.submitted_cost),
            "bonuses_pending": self.bonuses_pending, "bonuses_pending_cost": float(self.bonuses_pending_cost),
            "rejected_assignments": self.rejected,
        }


def ledger_spend(ledger: Any, cfg: ExperimentConfig) -> Spend:
    """The spend recorded in an open :class:`mturk_eval.ledger.Ledger`."""
    plat = registry.get_platform(ledger.get_meta("platform") or registry.DEFAULT)
    reward_of = {r["task_id"]: (r["reward"], r["places"]) for r in ledger.task_status_rows() if r["task_id"]}
    s = Spend(**_money_words(plat, cfg))
    submission_fee, bonus_fee = _fee_rules(plat, cfg)
    paid = []
    for a in ledger.submissions():
        reward, n = reward_of.get(a.task_id, (cfg.hit.reward, cfg.hit.assignments_per_hit))
        paid.append(plat.paid_reward(reward))
        amount, fee = plat.paid_reward(reward), submission_fee(reward, n, cfg.hit)
        if a.status == APPROVED:
            s.approved += 1
            s.rewards += amount
            s.reward_fees += fee
        elif a.status == REJECTED:
            s.rejected += 1
        else:
            s.submitted += 1
            s.submitted_cost += amount + fee
    if paid:
        s.reward = sorted(paid)[len(paid) // 2]
    for b in ledger.bonuses():
        amount = money(b["amount"])
        if b["state"] == "paid":
            s.bonuses_paid += 1
            s.bonuses += amount
            s.bonus_fees += bonus_fee(amount)
            s.bonus_by_assignment[b["submission_id"]] = s.bonus_by_assignment.get(b["submission_id"], ZERO) + amount
        else:
            s.bonuses_pending += 1
            s.bonuses_pending_cost += amount + bonus_fee(amount)
    return s


# How each platform names its money in the report (Prolific: the study's currency and its "service fee").
_WORDS = {"mturk": ("MTurk fees", "assignments"), "prolific": ("Prolific service fees + VAT", "submissions"),
          "links": ("fees (none: invite links)", "submissions")}


def _money_words(plat: Any, cfg: ExperimentConfig) -> dict[str, str]:
    name = getattr(plat, "name", "mturk")
    currency = "USD"
    if name == "prolific":
        from mturk_eval.platforms.prolific.workflow import settings_of

        currency = settings_of(cfg).currency
    label, word = _WORDS.get(name, (f"{getattr(plat, 'fee_label', 'platform fee')}s", "submissions"))
    return {"currency": currency, "fee_label": label, "submissions_word": word}


def _fee_rules(plat: Any, cfg: ExperimentConfig) -> tuple[Any, Any]:
    """(submission_fee(reward, places, hit), bonus_fee(amount)) in major units: the platform's rules; for
    Prolific at the config's ``fee_rate`` and ``vat_rate`` (the account's own), as publish and review price."""
    if getattr(plat, "name", "") != "prolific":
        return plat.submission_fee, plat.bonus_fee
    from mturk_eval.platforms.prolific import fees
    from mturk_eval.platforms.prolific.workflow import settings_of

    st = settings_of(cfg)

    def fee(amount: Any) -> Decimal:
        c = fees.charge(Decimal(str(amount)) * 100, st.fee_rate, st.vat_rate, st.currency)
        return c.major(c.fees + c.vat)

    return (lambda reward, places, hit: fee(reward)), fee
