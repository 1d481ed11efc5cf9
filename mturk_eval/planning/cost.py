"""What a design costs on each platform, with the rules the workflow verbs charge.

- MTurk: ``platforms.mturk.fees.estimate`` as ``publish`` prices a batch (20% commission, +20% for HITs of
  10 or more assignments, +5% Masters, at least $0.01 per assignment), one HIT per ``hit.items_per_hit``
  responses and ``raters`` assignments per HIT, reward ``hit.reward``. On every platform the attention
  checks ``publish`` mixes in (``hit.attention_check_rate``) fill tasks as responses do, and are priced.
- Prolific: ``platforms.prolific.fees.study_cost`` (participants' rewards + the service fee + VAT on the
  fee, the ``[platform.prolific]`` fee_rate and vat_rate), one place per task of ``hit.items_per_hit``
  responses, reward ``platform.prolific.reward``. With ``PROLIFIC_TOKEN`` in the environment,
  :class:`ProlificCalculator` also asks Prolific's own calculator (POST /study-cost-calculator/: a read,
  nothing is created or paid) once per distinct (reward, places) and the design is priced, as ``publish``
  counts it, at the higher of the two figures; a failed call is one line and the offline figures stand.
- Invite links: nothing is paid through the tool (raters you invite yourself), cost 0.
"""
from __future__ import annotations

import math
import os
from decimal import Decimal
from typing import Any, Callable

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.platforms.prolific.contract import major_units

PLATFORMS = ("mturk", "prolific", "links")


def configured_platforms(cfg: ExperimentConfig | None) -> list[str]:
    """The platforms a config sets up: MTurk always ([hit] has defaults); Prolific when the file has a
    [platform.prolific] section or ``[platform] name = "prolific"``; invite links when it has a
    [platform.links] or [site] section, or [platform] names it. Without a config (a pilot alone): all three
    at their default prices."""
    if cfg is None or not cfg.source_text:
        return list(PLATFORMS)
    import tomllib

    try:
        raw = tomllib.loads(cfg.source_text)
    except tomllib.TOMLDecodeError:
        raw = {}
    named, tables = cfg.platform.name, cfg.platform.settings
    out = ["mturk"]
    if "prolific" in tables or named == "prolific":
        out.append("prolific")
    if "links" in tables or "site" in raw or named == "links":
        out.append("links")
    return out


def check_platforms(requested: list[str], cfg: ExperimentConfig | None) -> list[str]:
    have = configured_platforms(cfg)
    for p in requested:
        if p not in PLATFORMS:
            raise UserError(f"--platform: expected one of {', '.join(PLATFORMS)}, got {p!r}")
        if p not in have:
            raise UserError(f"--platform {p}: {cfg.source_path or 'the config'} does not set up {p} "
                            f"(expected a [platform.{p}] section; set up: {', '.join(have)})")
    return requested or have


def tasks_of(items: int, raters: int, systems: int, items_per_task: int,
             attention_check_rate: float = 0.0) -> tuple[int, int]:
    """(tasks, places): one task holds ``items_per_task`` responses or attention checks (``publish`` adds
    ``attention_check_rate`` of them, :func:`tasks.builder.attention_check_count`); each task is done by
    ``raters`` raters."""
    from mturk_eval.tasks.builder import attention_check_count

    responses = items * systems
    tasks = math.ceil((responses + attention_check_count(responses, attention_check_rate)) / max(items_per_task, 1))
    return tasks, tasks * raters


def design_cost(platform: str, cfg: ExperimentConfig, items: int, raters: int, systems: int,
                eval_sets: int = 1) -> dict[str, Any]:
    """Cost of rating ``items`` prompts x ``systems`` systems x ``eval_sets`` eval sets, ``raters`` each."""
    per_task = cfg.hit.items_per_hit
    tasks, places = tasks_of(items * eval_sets, raters, systems, per_task, cfg.hit.attention_check_rate)
    if platform == "mturk":
        from mturk_eval.platforms.mturk import quals
        from mturk_eval.platforms.mturk.fees import estimate

        e = estimate(tasks, raters, cfg.hit.reward, masters=quals.uses_masters(cfg.hit.qualifications))
        return {"platform": "mturk", "currency": "USD", "total": float(e.total), "rewards": float(e.rewards),
                "fees": float(e.fees), "tasks": tasks, "places": places,
                "rule": f"{tasks} HITs x {raters} assignments at ${e.reward} + ${e.fee_per_submission} fee"}
    if platform == "prolific":
        from mturk_eval.platforms.prolific.fees import study_cost

        from mturk_eval.platforms.prolific.workflow import settings_of

        pc = settings_of(cfg)
        reward_minor = pc.reward_minor
        c = study_cost(reward_minor, places, fee_rate=pc.fee_rate, vat_rate=pc.vat_rate, currency=pc.currency)
        return {"platform": "prolific", "currency": pc.currency, "total": float(c.major()),
                "rewards": float(c.major(c.rewards)), "fees": float(c.major(c.fees + c.vat)), "tasks": tasks,
                "places": places, "rule": f"{places} places at {c.money(Decimal(reward_minor))}: {c.describe()}"}
    if platform == "links":
        return {"platform": "links", "currency": "", "total": 0.0, "rewards": 0.0, "fees": 0.0, "tasks": tasks,
                "places": places, "rule": "invite links: nothing paid through the tool"}
    raise UserError(f"--platform: expected one of {', '.join(PLATFORMS)}, got {platform!r}")


class ProlificCalculator:
    """Prolific's own figure for each design's places (POST /study-cost-calculator/, read-only) beside the
    offline one, with the token from ``PROLIFIC_TOKEN`` (never shown); one call per distinct (reward,
    places). The first failure (a malformed token, an unreachable or refusing API) is one line through
    ``echo``; from then on every design keeps its offline figure, and the plan says so."""

    def __init__(self, cfg: ExperimentConfig, echo: Callable[[str], None] | None = None,
                 env: dict | None = None, api_url: str | None = None):
        from mturk_eval.platforms.prolific.workflow import settings_of

        self.settings = settings_of(cfg)
        self.api_url = api_url or self.settings.api_url
        self.env = os.environ if env is None else env
        self.echo = echo or (lambda line: None)
        self.cache: dict[tuple[int, int], Decimal] = {}
        self.calls = 0
        self.failure: str | None = None
        self._client = None

    @staticmethod
    def wanted(env: dict | None = None) -> bool:
        from mturk_eval.platforms.prolific.client import TOKEN_ENV

        return bool(((os.environ if env is None else env).get(TOKEN_ENV) or "").strip())

    def _connect(self):
        from mturk_eval.platforms.prolific.workflow import api_client

        s = self.settings
        # A plan must not hang on a failing API: few attempts, short waits (the call is only a quote).
        return api_client(s, self.api_url, env=self.env, attempts=min(s.retry_attempts, 3),
                          base=min(s.retry_base_s, 0.5), cap=min(s.retry_cap_s, 2.0), timeout=15.0)

    def quote(self, reward_minor: int, places: int) -> Decimal | None:
        """Prolific's total for ``places`` places at ``reward_minor`` (minor units), or None after a failure."""
        if self.failure is not None:
            return None
        key = (reward_minor, places)
        if key not in self.cache:
            try:
                if self._client is None:
                    self._client = self._connect()
                self.calls += 1
                self.cache[key] = Decimal(str(self._client.cost_calculator(reward_minor, places)))
            except UserError as exc:
                self.failure = exc.message
                self.echo(f"Prolific's cost calculator failed ({exc.message}); the plan uses the offline Prolific "
                          "figures")
                return None
        return self.cache[key]

    def price(self, cost: dict[str, Any]) -> None:
        """Adds Prolific's figure to one design's Prolific cost (from :func:`design_cost`) and prices it at
        the higher of the two, as ``publish`` counts a run."""
        reward_minor = self.settings.reward_minor
        cost["offline_total"] = cost["total"]
        total = self.quote(reward_minor, cost["places"])
        if total is None:
            cost["calculator_total"] = None
            return
        major = float(major_units(total))
        cost["calculator_total"] = major
        cost["total"] = max(cost["offline_total"], major)
        cost["rule"] += f"; Prolific's calculator: {major:,.2f} (counted: the higher)"

    def notes(self) -> list[str]:
        if self.failure is not None:
            return [f"Prolific's cost calculator could not be used ({self.failure}): Prolific costs are the offline "
                    "figures (reward + fee_rate + vat_rate)."]
        return [f"Prolific costs: the higher of the offline figure and Prolific's own calculator at {self.api_url} "
                f"({self.calls} call(s), one per distinct number of places; a quote, nothing was created or paid)."]
