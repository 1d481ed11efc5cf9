"""The ``[prolific]`` section of an experiment config: one dataclass that validates itself.

Every key has a default, so a config without the section still loads; ``publish --platform prolific``
reads it. Points the contract marks unverified (⚠ in ../shared/docs/prolific/prolific-api.md) are
keys here with the documented value as default (docs/prolific.md lists them): the completion
redirect URL, the blocklist filter id, the token's shape, the fee and VAT rates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from mturk_eval.errors import UserError
from mturk_eval.platforms.prolific import contract
from mturk_eval.platforms.prolific import fees

DEFAULT_REJECTION = (
    "Your submission failed the attention-check item of this task: one reply was deliberately broken or"
    " off-topic and was rated as a good reply, which the instructions asked you to look out for."
)


@dataclass
class RejectionTemplate:
    """A reason for rejecting: one of Prolific's categories and a message of at least 100 characters."""

    category: str = "FAILED_CHECK"
    message: str = DEFAULT_REJECTION

    def __post_init__(self) -> None:
        check_rejection(self.category, self.message, "prolific.rejections")


def check_rejection(category: str, message: str, where: str = "--reject") -> None:
    """Prolific's rules for REJECT (§8a): a known category and a message of at least 100 characters."""
    if category not in contract.REJECTION_CATEGORIES:
        raise UserError(f"{where}: rejection category {category!r} is not one of Prolific's:"
                        f" {', '.join(contract.REJECTION_CATEGORIES)}; nothing was sent")
    n = len(message.strip())
    if n < contract.MIN_REJECTION_MESSAGE:
        raise UserError(f"{where}: the rejection message has {n} characters; Prolific needs at least"
                        f" {contract.MIN_REJECTION_MESSAGE} (the participant reads it); nothing was sent")


@dataclass
class ProlificSettings:
    # Where the API is; the emulator's URL is given by --sandbox / --api-url instead.
    api_url: str = contract.API_URL
    # Workspace and project ids; empty: the only one the token sees (more than one is an error).
    workspace: str = ""
    project: str = ""
    # The study's public title and description; empty: [hit] title and description.
    name: str = ""
    description: str = ""
    # Reward per approved submission, in major units of the account currency ("1.50" = £1.50).
    reward: str = "1.50"
    currency: Literal["GBP", "USD"] = "GBP"
    # Minutes (Prolific's units).
    estimated_completion_time: int = 10
    maximum_allowed_time: int = 40
    # What a COMPLETED code does: MANUALLY_REVIEW (review approves) or AUTOMATICALLY_APPROVE.
    completion: Literal["MANUALLY_REVIEW", "AUTOMATICALLY_APPROVE"] = "MANUALLY_REVIEW"
    device_compatibility: list[str] = field(default_factory=lambda: list(contract.DEVICES))
    peripheral_requirements: list[str] = field(default_factory=list)
    # Named filters: age range [lower, upper]; participant groups allowed; earlier studies blocked.
    age: list[int] = field(default_factory=list)
    allow_groups: list[str] = field(default_factory=list)
    block_studies: list[str] = field(default_factory=list)
    # Raw filter objects as Prolific takes them ({filter_id, selected_values} or {filter_id, selected_range}).
    filters: list[dict[str, Any]] = field(default_factory=list)
    # Blocked participants go into this participant group, applied as a blocklist filter on later studies.
    blocklist_group: str = "mturk-eval blocklist"
    blocklist_filter_id: str = contract.GROUP_BLOCKLIST  # ⚠ only in Prolific's skills repo
    # Refuse a reward below this per estimated hour; empty: Prolific's minimum (£6 / $8).
    min_hourly_reward: str = ""
    # Our own cost figure (Prolific's calculator is shown beside it); ⚠ account-dependent.
    fee_rate: str = fees.DEFAULT_FEE_RATE
    vat_rate: str = fees.DEFAULT_VAT_RATE
    # Where the rating site sends a participant who finished (the code is added as ?cc=).
    completion_url: str = contract.COMPLETION_URL
    # What a well-formed PROLIFIC_TOKEN looks like (ours, not Prolific's: ⚠).
    token_pattern: str = contract.TOKEN_PATTERN
    rejections: dict[str, RejectionTemplate] = field(
        default_factory=lambda: {"failed_attention": RejectionTemplate()})

    def __post_init__(self) -> None:
        def bad(key: str, expected: str, got: Any) -> UserError:
            return UserError(f"prolific.{key}: expected {expected}, got {got!r}")

        for key in ("api_url", "completion_url"):
            if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", getattr(self, key)):
                raise bad(key, "an http(s) URL", getattr(self, key))
        if not re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", self.reward) or contract.minor_units(self.reward) < 1:
            raise bad("reward", 'an amount like "1.50" (major units, above 0)', self.reward)
        if not 1 <= self.estimated_completion_time <= 24 * 60:
            raise bad("estimated_completion_time", "minutes from 1 to 1440", self.estimated_completion_time)
        if self.maximum_allowed_time and self.maximum_allowed_time < self.estimated_completion_time:
            raise bad("maximum_allowed_time", "minutes >= estimated_completion_time (or 0 for Prolific's default)",
                      self.maximum_allowed_time)
        for d in self.device_compatibility:
            if d not in contract.DEVICES:
                raise bad("device_compatibility", " or ".join(contract.DEVICES), d)
        if not self.device_compatibility:
            raise bad("device_compatibility", "at least one device", [])
        for p in self.peripheral_requirements:
            if p not in contract.PERIPHERALS:
                raise bad("peripheral_requirements", " or ".join(contract.PERIPHERALS), p)
        if self.age and (len(self.age) != 2 or not 18 <= self.age[0] <= self.age[1] <= 100):
            raise bad("age", "[lower, upper] with 18 <= lower <= upper <= 100", self.age)
        for i, f in enumerate(self.filters):
            check_filter(f, f"prolific.filters[{i}]")
        if self.min_hourly_reward and not re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", self.min_hourly_reward):
            raise bad("min_hourly_reward", 'an amount per hour like "6.00"', self.min_hourly_reward)
        fees.rate(self.fee_rate, "prolific.fee_rate")
        fees.rate(self.vat_rate, "prolific.vat_rate")
        try:
            re.compile(self.token_pattern)
        except re.error as exc:
            raise bad("token_pattern", f"a regular expression ({exc})", self.token_pattern) from None
        if not self.blocklist_group.strip():
            raise bad("blocklist_group", "a participant group name", self.blocklist_group)
        for name, t in self.rejections.items():
            if not isinstance(t, RejectionTemplate):
                self.rejections[name] = RejectionTemplate(**t) if isinstance(t, dict) else t

    @property
    def reward_minor(self) -> int:
        return contract.minor_units(self.reward)

    @property
    def hourly_minimum(self) -> str:
        return self.min_hourly_reward or fees.MIN_HOURLY_REWARD[self.currency]

    def named_filters(self, blocklist_group_id: str | None = None) -> list[dict[str, Any]]:
        """The study's filters: the named ones first, then the raw ones, then the blocklist group."""
        out: list[dict[str, Any]] = []
        if self.age:
            out.append({"filter_id": "age", "selected_range": {"lower": self.age[0], "upper": self.age[1]}})
        if self.allow_groups:
            out.append({"filter_id": contract.GROUP_ALLOWLIST, "selected_values": list(self.allow_groups)})
        if self.block_studies:
            out.append({"filter_id": contract.STUDIES_BLOCKLIST, "selected_values": list(self.block_studies)})
        out += [dict(f) for f in self.filters]
        if blocklist_group_id:
            out.append({"filter_id": self.blocklist_filter_id, "selected_values": [blocklist_group_id]})
        return out


def check_filter(f: Any, where: str) -> None:
    """A filter object's shape (§10): filter_id plus selected_values (strings) or selected_range."""
    if not isinstance(f, dict):
        raise UserError(f"{where}: expected a table {{filter_id, selected_values | selected_range}}, got {f!r}")
    unknown = sorted(set(f) - contract.FILTER_FIELDS)
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r} (a filter has {', '.join(sorted(contract.FILTER_FIELDS))})")
    if not isinstance(f.get("filter_id"), str) or not f["filter_id"]:
        raise UserError(f"{where}.filter_id: expected a filter id string, got {f.get('filter_id')!r}")
    has_values, has_range = "selected_values" in f, "selected_range" in f
    if has_values == has_range:
        raise UserError(f"{where}: give exactly one of selected_values and selected_range")
    if has_values and (not isinstance(f["selected_values"], list)
                       or not all(isinstance(v, str) for v in f["selected_values"])):
        raise UserError(f"{where}.selected_values: expected a list of strings, got {f['selected_values']!r}")
    if has_range:
        r = f["selected_range"]
        if not isinstance(r, dict) or set(r) - {"lower", "upper"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in r.values()):
            raise UserError(f"{where}.selected_range: expected {{lower = n, upper = n}}, got {r!r}")


def hourly_floor(s: ProlificSettings) -> Decimal:
    return Decimal(s.hourly_minimum)
