"""What a design costs on each platform, with the rules the workflow verbs charge.

- MTurk: ``platforms.mturk.fees.estimate`` as ``publish`` prices a batch (20% commission, +20% for HITs of
  10 or more assignments, +5% Masters, at least $0.01 per assignment), one HIT per ``hit.items_per_hit``
  responses and ``raters`` assignments per HIT, reward ``hit.reward``.
- Prolific: ``platforms.prolific.fees.study_cost`` (participants' rewards + the service fee + VAT on the
  fee, the ``[platform.prolific]`` fee_rate and vat_rate), one place per task of ``hit.items_per_hit``
  responses, reward ``platform.prolific.reward``; Prolific's own calculator is used by ``publish`` when a token is present,
  the planner prices offline.
- Invite links: nothing is paid through the tool (raters you invite yourself), cost 0.
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError

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


def tasks_of(items: int, raters: int, systems: int, items_per_task: int) -> tuple[int, int]:
    """(tasks, places): one task holds ``items_per_task`` responses; each is done by ``raters`` raters."""
    tasks = math.ceil(items * systems / max(items_per_task, 1))
    return tasks, tasks * raters


def design_cost(platform: str, cfg: ExperimentConfig, items: int, raters: int, systems: int,
                eval_sets: int = 1) -> dict[str, Any]:
    """Cost of rating ``items`` prompts x ``systems`` systems x ``eval_sets`` eval sets, ``raters`` each."""
    per_task = cfg.hit.items_per_hit
    tasks, places = tasks_of(items * eval_sets, raters, systems, per_task)
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
        reward_minor = int((Decimal(str(pc.reward)) * 100).to_integral_value())
        c = study_cost(reward_minor, places, fee_rate=pc.fee_rate, vat_rate=pc.vat_rate, currency=pc.currency)
        return {"platform": "prolific", "currency": pc.currency, "total": float(c.major()),
                "rewards": float(c.major(c.rewards)), "fees": float(c.major(c.fees + c.vat)), "tasks": tasks,
                "places": places, "rule": f"{places} places at {c.money(Decimal(reward_minor))}: {c.describe()}"}
    if platform == "links":
        return {"platform": "links", "currency": "", "total": 0.0, "rewards": 0.0, "fees": 0.0, "tasks": tasks,
                "places": places, "rule": "invite links: nothing paid through the tool"}
    raise UserError(f"--platform: expected one of {', '.join(PLATFORMS)}, got {platform!r}")
