"""MTurk's fees and the cost of a batch (rules in ../shared/docs/mturk-facts.md).

Commission: 20% of the reward and of bonuses, another 20% of the reward when a HIT has 10 or more
assignments, +5% for Masters, at least $0.01 per assignment or bonus. Decimal arithmetic, rounded to
cents per assignment (half up).
"""
from __future__ import annotations

from decimal import Decimal

from mturk_eval.platforms.crowd_platform import CENT, CostEstimate, money  # noqa: F401 (money: MTurk's callers)


def fee_rate(max_assignments: int, masters: bool = False) -> Decimal:
    rate = Decimal("0.20")
    if max_assignments >= 10:
        rate += Decimal("0.20")
    if masters:
        rate += Decimal("0.05")
    return rate


def assignment_fee(reward: str | Decimal, max_assignments: int, masters: bool = False) -> Decimal:
    return max(CENT, money(Decimal(str(reward)) * fee_rate(max_assignments, masters)))


def bonus_fee(amount: str | Decimal) -> Decimal:
    return max(CENT, money(Decimal(str(amount)) * Decimal("0.20")))


def estimate(hits: int, assignments_per_hit: int, reward: str, masters: bool = False) -> CostEstimate:
    return CostEstimate(hits, assignments_per_hit, money(reward), assignment_fee(reward, assignments_per_hit, masters),
                        "MTurk fee", ("HITs", "assignments"))
