"""The whole plan: the rating model (pilot or defaults), power on an items x raters grid (simulated and
analytic), minimum detectable differences, cost per platform, the cheapest design reaching the requested
power, and the files: plan.md, plan.json and power_curve.png (written atomically)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError
from mturk_eval.planning.cost import design_cost
from mturk_eval.planning.model import AspectModel, RatingModel
from mturk_eval.planning.power import (DESIGNS, Design, Setting, analytic_mdd, analytic_power, simulate_power,
                                       simulated_mdd, target_shift)


def check_effect(effect: float, am: AspectModel) -> None:
    """An effect above 0 and inside the target aspect's scale, with room for it beside the aspect's mean."""
    width = am.high - am.low
    if not 0 < effect < width:
        raise UserError(f"--effect: expected a difference of mean ratings above 0 and below {width:g} (the "
                        f"{am.low}-{am.high} scale of {am.aspect}), got {effect:g}")
    target_shift(am, effect)


# --design: one of the simulated designs, or auto: what the report would run on the pilot, else paired.
DESIGN_CHOICES = ("auto", *DESIGNS)


def check_design(design: str) -> None:
    if design not in DESIGN_CHOICES:
        raise UserError(f"--design: expected one of {', '.join(DESIGN_CHOICES)}, got {design!r}")


@dataclass(frozen=True)
class PlanInputs:
    """The requested difference and power, the items x raters grid and the simulated studies per design,
    checked on construction (cheap: build it before any slow work)."""
    effect: float
    power: float
    items: list[int]
    raters: list[int]
    studies: int

    def __post_init__(self) -> None:
        if not self.effect > 0:
            raise UserError(f"--effect: expected a difference of mean ratings above 0, got {self.effect:g}")
        if not 0 < self.power < 1:
            raise UserError(f"--power: expected a probability strictly between 0 and 1, got {self.power:g}")
        if not self.items:
            raise UserError("--items: expected at least one number of items per system, got an empty grid")
        if not self.raters:
            raise UserError("--raters: expected at least one number of raters per item, got an empty grid")
        if min(self.items) < 2:
            raise UserError(f"--items: expected at least 2 items per system, got {min(self.items)}")
        if min(self.raters) < 1:
            raise UserError(f"--raters: expected at least 1 rater per item, got {min(self.raters)}")
        if self.studies < 100:
            raise UserError(f"--studies: expected at least 100 simulated studies per design, got {self.studies}")


@dataclass
class Plan:
    model: RatingModel
    setting: dict[str, Any]
    grid: list[dict[str, Any]]
    cheapest: dict[str, Any]
    mdd: list[dict[str, Any]]
    platforms: list[str]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model.as_dict(), "setting": self.setting, "grid": self.grid,
                "cheapest": self.cheapest, "mdd": self.mdd, "platforms": self.platforms, "notes": self.notes}


def make_setting(cfg: ExperimentConfig, model: RatingModel, *, effect: float, systems: int,
                 aspect: str | None = None, design: str = "paired", prompt_share: float | None = None) -> Setting:
    """The simulated analysis for ``model`` with every input checked (before any slow work). ``design``
    "auto": what the report would run on the pilot (its own rule), else the toolkit's paired studies."""
    if design == "auto":
        design = model.design or "paired"
    if systems < 2:
        raise UserError(f"systems: expected at least 2 systems to compare, got {systems}")
    if aspect is None:  # the hardest aspect: the largest total variance
        aspect = max(model.aspects, key=lambda a: a.total).aspect
    check_effect(effect, model.aspect(aspect))
    if design == "unpaired" and prompt_share:
        raise UserError(f"--prompt-share: the design is unpaired (--design unpaired, or --design auto on a pilot"
                        f" whose systems share no prompts) and shares no prompts between systems; expected no"
                        f" --prompt-share, got {prompt_share:g}")
    return Setting(model, systems=systems, aspect=aspect, alpha=cfg.report.alpha, family=cfg.report.holm_family,
                   design=design, prompt_share=prompt_share)


def make_plan(cfg: ExperimentConfig, setting: Setting, inputs: PlanInputs, *, platforms: list[str],
              eval_sets: int = 1, seed: int = 0, progress=None, calculator=None) -> Plan:
    """The plan for ``setting`` (from :func:`make_setting`) and ``inputs``, both checked when they were
    made. ``calculator`` (optional): a :class:`~mturk_eval.planning.cost.ProlificCalculator` pricing each
    design's Prolific places with Prolific's own figure beside the offline one."""
    model, systems, aspect = setting.model, setting.systems, setting.aspect
    effect, power, items, raters, studies = inputs.effect, inputs.power, inputs.items, inputs.raters, inputs.studies
    designs = [Design(i, k) for i in sorted(set(items)) for k in sorted(set(raters))]
    grid = []
    for d in designs:
        sim = simulate_power(d, setting, effect, studies, seed)
        row = {"items": d.items, "raters": d.raters, "power": sim, "power_analytic": analytic_power(d, setting, effect),
               "mdd_analytic": analytic_mdd(d, setting, power),
               "ratings": d.ratings(systems, len(model.aspects)) * eval_sets,
               "cost": {p: design_cost(p, cfg, d.items, d.raters, systems, eval_sets) for p in platforms}}
        if calculator is not None and "prolific" in row["cost"]:
            calculator.price(row["cost"]["prolific"])
        if model.work_time_s:
            row["rater_hours"] = row["cost"][platforms[0]]["places"] * model.work_time_s / 3600.0
        grid.append(row)
        if progress is not None:
            progress(d)
    cheapest = {}
    for p in platforms:
        ok = [g for g in grid if g["power"] >= power]
        best = min(ok, key=lambda g: (g["cost"][p]["total"], g["ratings"])) if ok else None
        cheapest[p] = None if best is None else {"items": best["items"], "raters": best["raters"],
                                                  "power": best["power"], "cost": best["cost"][p]}
    mdd_designs = designs if len(designs) <= 4 else sorted(
        {Design(c["items"], c["raters"]) for c in cheapest.values() if c}, key=lambda d: (d.items, d.raters))
    mdd = [{"items": d.items, "raters": d.raters, "mdd": simulated_mdd(d, setting, power, studies, seed),
            "mdd_analytic": analytic_mdd(d, setting, power)} for d in mdd_designs]
    notes = []
    worst = model.pessimistic()
    if worst is not None:   # the pilot's uncertainty: the chosen designs with the components at their upper bounds
        wset = Setting(worst, systems=systems, aspect=aspect, alpha=cfg.report.alpha, family=cfg.report.holm_family,
                       design=setting.design, prompt_share=0.0 if setting.paired else None)
        for p, c in cheapest.items():
            if c is not None:
                c["power_if_components_at_upper_bounds"] = simulate_power(Design(c["items"], c["raters"]), wset,
                                                                           effect, studies, seed)
    if not any(cheapest.values()):
        best = max(grid, key=lambda g: g["power"])
        notes.append(f"No design on the grid reaches power {power:g} for a difference of {effect:g}; the best is "
                     f"{best['items']} items x {best['raters']} raters at {best['power']:.2f}. Add larger designs "
                     "or plan for a larger difference.")
    if calculator is not None:
        notes.extend(calculator.notes())
    am = model.aspect(aspect)
    info = {"effect": effect, "power": power, "alpha": cfg.report.alpha, "aspect": aspect,
            "scale": [am.low, am.high], "systems": systems, "design": setting.design,
            "test": "wilcoxon signed-rank (paired)" if setting.paired else "mann-whitney rank-sum (unpaired)",
            "design_reason": design_reason(model, setting),
            "prompt_share": {a: setting.prompt(a) for a in setting.aspects},
            "eval_sets": eval_sets, "comparisons": setting.comparisons,
            "holm_family": cfg.report.holm_family, "studies": studies, "seed": seed,
            "pairs": [list(p) for p in combinations(range(systems), 2)],
            "excluded_share": model.excluded_share, "excluded_worker_share": model.excluded_worker_share,
            "ratings_per_rater": model.ratings_per_rater,
            "work_time_s": model.work_time_s}
    return Plan(model=model, setting=info, grid=grid, cheapest=cheapest, mdd=mdd, platforms=platforms, notes=notes)


def design_reason(model: RatingModel, setting: Setting) -> str:
    if model.design is None:   # no pilot, or one without two systems of an eval set to compare
        return "the toolkit's studies give every system the same prompts" if setting.paired else "--design"
    if model.design == setting.design:
        return f"as the report would test the pilot ({model.design_reason})"
    return f"--design (the report would test the pilot {model.design}: {model.design_reason})"


def _money(c: dict[str, Any]) -> str:
    sym = {"USD": "$", "GBP": "£"}.get(c["currency"], "")
    return "free" if c["platform"] == "links" else f"{sym}{c['total']:,.2f}"


def terminal_table(plan: Plan) -> str:
    from mturk_eval.analysis.render import markdown_table

    header = ["Items", "Raters", "Power (simulated)", "Power (analytic)", "MDD (analytic)",
              *[f"Cost {p}" for p in plan.platforms]]
    rows = [[str(g["items"]), str(g["raters"]), f"{g['power']:.2f}", f"{g['power_analytic']:.2f}",
             f"{g['mdd_analytic']:.2f}", *[_money(g["cost"][p]) for p in plan.platforms]] for g in plan.grid]
    return markdown_table(header, rows)


def summary_lines(plan: Plan) -> list[str]:
    s = plan.setting
    out = [f"{s['aspect']} ({s['scale'][0]}-{s['scale'][1]}), {s['design']} design ({s['design_reason']}): the "
           f"report's {s['test']}, Holm over {s['comparisons']} comparisons"]
    for p, c in plan.cheapest.items():
        if c is None:
            out.append(f"{p}: no design on the grid reaches power {s['power']:g}")
        else:
            worst = c.get("power_if_components_at_upper_bounds")
            extra = "" if worst is None else f"; {worst:.2f} if the pilot's variance components are at their upper 95% bounds"
            out.append(f"{p}: cheapest design reaching power {s['power']:g}: {c['items']} items x {c['raters']} "
                       f"raters (power {c['power']:.2f}{extra}), {_money(c['cost'])} ({c['cost']['rule']})")
    for m in plan.mdd:
        v = "not reached below 2 points" if not math.isfinite(m["mdd"]) else f"{m['mdd']:.2f}"
        out.append(f"{m['items']} items x {m['raters']} raters: minimum detectable difference at power "
                   f"{s['power']:g}: {v} (simulated), {m['mdd_analytic']:.2f} (analytic)")
    return out + plan.notes


def plan_markdown(plan: Plan) -> str:
    s = plan.setting
    m = plan.model
    lines = [f"# Study plan\n", f"Rating model: {m.source}.\n"]
    comp = ["| Aspect | Scale | Mean | s2 item | s2 rater | s2 residual | prompt share | intervals (95%) |",
            "|---|---|---|---|---|---|---|---|"]
    for a in m.aspects:
        iv = "; ".join(f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in a.intervals.items()) if a.intervals else "-"
        comp.append(f"| {a.aspect} | {a.low}-{a.high} | {a.mean:.2f} | {a.item:.3f} | {a.rater:.3f} | {a.residual:.3f} "
                    f"| {a.prompt_share:.2f} | {iv} |")
    lines.append("\n".join(comp) + "\n")
    if s["design"] == "paired":
        shares = sorted(set(s["prompt_share"].values()))
        share = f"{shares[0]:.2f}" if len(shares) == 1 else "per aspect as above"
        how = ("each prompt answered by every system; the report's paired Wilcoxon signed-rank test on exact "
               f"per-prompt differences of item means (exact up to 25 pairs); prompt share of the item variance "
               f"{share}")
    else:
        how = ("each system answering its own prompts; the report's Mann-Whitney rank-sum test on exact item "
               "means (exact up to 50 items of the two systems together)")
    lines.append(
        f"\nQuestion: can the report find system (a) different from (b) on **{s['aspect']}** (scale "
        f"{s['scale'][0]}-{s['scale'][1]}) when the true difference of mean ratings is {s['effect']:g}, with "
        f"{s['systems']} systems per eval set (Holm over {s['comparisons']} comparisons, family `{s['holm_family']}`, "
        f"alpha {s['alpha']:g})? Design: **{s['design']}** ({s['design_reason']}): {how}. "
        f"Power is the share of {s['studies']} simulated studies per design (seed {s['seed']}) in which that test "
        f"finds it; {s['excluded_worker_share']:.0%} of raters excluded whole and {s['excluded_share']:.0%} of the "
        "other ratings lost to the report's exclusions (the pilot's shares; 0 without a pilot); raters drawn from "
        f"a pool in which each rates about {s['ratings_per_rater']:.0f} items. The analytic column is a normal "
        "approximation (3/pi efficiency, Bonferroni's first Holm step) for a quick check.\n")
    lines.append("\n" + terminal_table(plan))
    lines.append("\n" + "".join(f"- {x}\n" for x in summary_lines(plan)))
    if s.get("work_time_s"):
        lines.append(f"\nTime per task in the pilot: {s['work_time_s']:.0f} s (median).\n")
    lines.append("\n![Power by design](power_curve.png)\n")
    return "\n".join(lines)


def power_curve_png(plan: Plan, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k in sorted({g["raters"] for g in plan.grid}):
        rows = sorted((g for g in plan.grid if g["raters"] == k), key=lambda g: g["items"])
        ax.plot([g["items"] for g in rows], [g["power"] for g in rows], marker="o", label=f"{k} raters")
    ax.axhline(plan.setting["power"], color="grey", ls="--", lw=1)
    ax.set_xlabel("items (prompts) per system")
    ax.set_ylabel("power (simulated)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Power to detect {plan.setting['effect']:g} on {plan.setting['aspect']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plan(plan: Plan, out: Path) -> Path:
    from mturk_eval.io import atomic_directory, atomic_write_text

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    with atomic_directory(out) as tmp:
        atomic_write_text(tmp / "plan.json", json.dumps(clean(plan.as_dict()), indent=2) + "\n")
        atomic_write_text(tmp / "plan.md", plan_markdown(plan))
        power_curve_png(plan, tmp / "power_curve.png")
    return out
