"""Prolific's money rules: what a study and a bonus cost, and the minimum hourly reward.

Cost = participants' rewards + Prolific's service fee (a share of the rewards) + VAT on the fee.
The contract gives no fee table; its one worked example (create-bonus-payments: 2 x 4.25 -> amount
850, fees 283.34, vat 0) is a fee of one third rounded up to a hundredth of a minor unit, which is
the default here. Prolific's researcher help says UK workspaces pay 20% VAT on fees, so ``vat_rate``
is a setting too (default 0). Both are settings because they depend on the account (⚠ unverified):
``publish`` shows Prolific's own calculator figure (POST /study-cost-calculator/) beside this one and
prices a run at the higher of the two.

Amounts are :class:`~decimal.Decimal` minor units (pence/cents) with hundredths, as the API's fee
fields are; shown amounts are rounded up to the cent, so a figure shown is never below one charged.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from fractions import Fraction

from mturk_eval.errors import UserError

HUNDREDTH = Decimal("0.01")
DEFAULT_FEE_RATE = "1/3"
DEFAULT_VAT_RATE = "0"
# Prolific's enforced minimum (researcher help "payment principles"): £6.00 / $8.00 per hour.
MIN_HOURLY_REWARD = {"GBP": "6.00", "USD": "8.00"}
SYMBOLS = {"GBP": "£", "USD": "$"}


def rate(value: str, name: str = "rate") -> Fraction:
    """A share given as a decimal ("0.3333") or a fraction ("1/3"), from 0 to 1."""
    try:
        r = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{name}: expected a share like 0.33 or 1/3, got {value!r}") from None
    if not 0 <= r <= 1:
        raise UserError(f"{name}: expected a share from 0 to 1, got {value!r}")
    return r


def _part(amount: Decimal, share: Fraction) -> Decimal:
    """``amount * share`` rounded up to a hundredth of a minor unit (283.333 -> 283.34)."""
    exact = Fraction(amount) * share
    return (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(HUNDREDTH, rounding=ROUND_CEILING)


@dataclass(frozen=True)
class Cost:
    """Rewards, fees and VAT in minor units (Decimal, hundredths kept)."""

    rewards: Decimal
    fees: Decimal
    vat: Decimal
    currency: str = "GBP"

    @property
    def total(self) -> Decimal:
        return self.rewards + self.fees + self.vat

    def major(self, minor: Decimal | None = None) -> Decimal:
        """``minor`` (default the total) in major units, rounded up to the cent."""
        value = self.total if minor is None else minor
        return (value / 100).quantize(HUNDREDTH, rounding=ROUND_CEILING)

    def money(self, minor: Decimal | None = None) -> str:
        return f"{SYMBOLS.get(self.currency, self.currency + ' ')}{self.major(minor)}"

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.rewards + other.rewards, self.fees + other.fees, self.vat + other.vat, self.currency)

    def describe(self) -> str:
        return (f"rewards {self.money(self.rewards)} + Prolific fee {self.money(self.fees)}"
                f" + VAT {self.money(self.vat)} = {self.money()}")


def charge(rewards_minor: Decimal | int, fee_rate: str = DEFAULT_FEE_RATE, vat_rate: str = DEFAULT_VAT_RATE,
           currency: str = "GBP") -> Cost:
    """What paying ``rewards_minor`` to participants costs: the fee on it and the VAT on the fee."""
    rewards = Decimal(str(rewards_minor)).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)
    fees = _part(rewards, rate(fee_rate, "fee_rate"))
    vat = _part(fees, rate(vat_rate, "vat_rate"))
    return Cost(rewards, fees, vat, currency)


def study_cost(reward_minor: int, places: int, *, fee_rate: str = DEFAULT_FEE_RATE,
               vat_rate: str = DEFAULT_VAT_RATE, currency: str = "GBP") -> Cost:
    """The cost of a study paying ``reward_minor`` (pence/cents) to each of ``places`` participants.

    Public: the study planner prices designs with it. ``study_cost(150, 100).major()`` -> Decimal('200.00').
    """
    if reward_minor < 0 or places < 0:
        raise UserError(f"study cost: reward and places must be >= 0, got {reward_minor} and {places}")
    return charge(Decimal(reward_minor) * places, fee_rate, vat_rate, currency)


def bonus_cost(amounts_minor: list[int], *, fee_rate: str = DEFAULT_FEE_RATE, vat_rate: str = DEFAULT_VAT_RATE,
               currency: str = "GBP") -> Cost:
    """The cost of one bulk bonus (each amount in minor units); commission applies to bonuses too."""
    return charge(sum(amounts_minor), fee_rate, vat_rate, currency)


def hourly_reward(reward_minor: int, minutes: int) -> Decimal:
    """Reward per estimated hour, in major units (2 decimals, rounded down: never flattering)."""
    from decimal import ROUND_FLOOR

    return (Decimal(reward_minor) * 60 / Decimal(minutes) / 100).quantize(HUNDREDTH, rounding=ROUND_FLOOR)


def check_hourly(reward_minor: int, minutes: int, currency: str, minimum: str | None = None) -> Decimal:
    """Refuse a reward below the minimum per estimated hour (default Prolific's £6 / $8)."""
    floor = Decimal(minimum if minimum is not None else MIN_HOURLY_REWARD.get(currency, "8.00"))
    per_hour = hourly_reward(reward_minor, minutes)
    if per_hour < floor:
        sym = SYMBOLS.get(currency, currency + " ")
        need = -(-int(floor * 100) * minutes // 60)  # ceil(floor * minutes / 60) in minor units
        raise UserError(f"prolific.reward: {sym}{Decimal(reward_minor) / 100:.2f} for an estimated {minutes} min is"
                        f" {sym}{per_hour}/h, below the minimum {sym}{floor:.2f}/h; pay at least {sym}{need / 100:.2f}"
                        " (or lower prolific.min_hourly_reward if your agreement with Prolific allows); nothing"
                        " was sent")
    return per_hour
