"""MTurk's fees and the cost of a batch (rules in ../shared/docs/mturk-facts.md).

Commission: 20% of the reward and of bonuses, another 20% of the reward when a HIT has 10 or more
assignments, +5% for Masters, at least $0.01 per assignment or bonus. Decimal arithmetic, rounded to
cents per assignment (half up).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def money(value: str | Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


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


@dataclass(frozen=True)
class CostEstimate:
    hits: int
    assignments_per_hit: int
    reward: Decimal
    fee_per_assignment: Decimal

    @property
    def assignments(self) -> int:
        return self.hits * self.assignments_per_hit

    @property
    def rewards(self) -> Decimal:
        return self.reward * self.assignments

    @property
    def fees(self) -> Decimal:
        return self.fee_per_assignment * self.assignments

    @property
    def total(self) -> Decimal:
        return self.rewards + self.fees

    def describe(self) -> str:
        return (f"{self.hits} HITs x {self.assignments_per_hit} assignments = {self.assignments} assignments"
                f" at ${self.reward} + ${self.fee_per_assignment} MTurk fee each:"
                f" rewards ${self.rewards} + fees ${self.fees} = total ${self.total}")


def estimate(hits: int, assignments_per_hit: int, reward: str, masters: bool = False) -> CostEstimate:
    return CostEstimate(hits, assignments_per_hit, money(reward),
                        assignment_fee(reward, assignments_per_hit, masters))
