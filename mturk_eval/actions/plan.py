"""``plan``: read the config and/or pilot, build the rating model, price and simulate the grid, write
plan.md / plan.json / power_curve.png (the CLI module ``cli/plan.py`` only parses options)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mturk_eval.config import ExperimentConfig
from mturk_eval.errors import UserError

DEFAULT_ITEMS = [25, 50, 100, 150, 200, 300]
DEFAULT_RATERS = [3, 5, 7]


@dataclass
class PlanResult:
    out: Path
    terminal: str
    plan: object


def read_pilot(path: str, cfg: ExperimentConfig, responses_path: str | None = None):
    """(ratings, responses index or None): pilot ratings from any source ``report`` reads, through the
    report's own loader (:func:`mturk_eval.analysis.frames.read_source`): a ledger (.sqlite), an MTurk batch
    results CSV, or a long ratings file (CSV, JSONL, Parquet), with the config's aspects and scales."""
    from mturk_eval.analysis.frames import read_source
    from mturk_eval.analysis.ratings import read_responses

    p = Path(path)
    if not p.exists():
        raise UserError(f"--pilot: {path}: no such file")
    responses = read_responses(responses_path) if responses_path else None
    return read_source(p, responses=responses, config=cfg)[0], responses


def run_plan(*, config_path: str | None, pilot: str | None, responses_path: str | None, effect: float,
             power: float, items: list[int] | None, raters: list[int] | None, aspect: str | None,
             systems: int | None, platforms: list[str], studies: int, seed: int | None, out_dir: Path | None,
             design: str = "auto", prompt_share: float | None = None,
             echo: Callable[[str], None] | None = None) -> PlanResult:
    from mturk_eval.analysis.aspects import config_aspects
    from mturk_eval.config import find_config, load_config
    from mturk_eval.planning.cost import ProlificCalculator, check_platforms
    from mturk_eval.planning.model import default_model, model_from_pilot
    from mturk_eval.planning.plan import (PlanInputs, check_design, make_plan, make_setting, summary_lines,
                                          terminal_table, write_plan)

    check_design(design)

    if config_path is None:   # $MTURK_EVAL_CONFIG or mturk-eval.toml here or above, as every verb finds it
        found = find_config(required=False)
        config_path = str(found) if found else None
    if config_path is None and pilot is None:
        raise UserError("--config: expected an experiment config or --pilot ratings, got neither; none found "
                        "either ($MTURK_EVAL_CONFIG, mturk-eval.toml here or above: `mturk-eval init` writes one)")
    # The plan reads no data: the config's data paths need not resolve (every verb that reads them checks).
    cfg = load_config(config_path, data_paths=False) if config_path else ExperimentConfig(name="plan")
    inputs = PlanInputs(effect, power, DEFAULT_ITEMS if items is None else items,   # checked before any slow work
                        DEFAULT_RATERS if raters is None else raters, studies)
    chosen = check_platforms(platforms, cfg if config_path else None)
    if out_dir is None:
        if not config_path:
            raise UserError("--out: expected an output directory when no --config is given, got none")
        out_dir = cfg.run_dir / "plan"
    if pilot is not None:
        ratings, responses = read_pilot(pilot, cfg, responses_path)
        model = model_from_pilot(ratings, cfg, f"pilot `{pilot}`", responses)
    else:
        model = default_model(config_aspects(cfg))
    if systems is None:
        if config_path:
            systems = len(cfg.methods) * len(cfg.models)
        else:
            per_set: dict[str, int] = {}
            for label in model.systems:
                es = label.split(" / ")[0]
                per_set[es] = per_set.get(es, 0) + 1
            systems = max(per_set.values(), default=2)
    setting = make_setting(cfg, model, effect=effect, systems=max(systems, 2), aspect=aspect, design=design,
                           prompt_share=prompt_share)   # every input checked before any slow work or call
    calculator = None
    if "prolific" in chosen and ProlificCalculator.wanted():
        calculator = ProlificCalculator(cfg, echo=echo)
    done = [0]
    n_designs = len(set(inputs.items)) * len(set(inputs.raters))

    def progress(d):
        done[0] += 1
        if echo:
            echo(f"  design {done[0]}/{n_designs}: {d.items} items x {d.raters} raters")

    plan = make_plan(cfg, setting, inputs, platforms=chosen, seed=cfg.seed if seed is None else seed,
                     progress=progress, calculator=calculator)
    write_plan(plan, out_dir)
    terminal = terminal_table(plan) + "\n" + "\n".join(summary_lines(plan))
    return PlanResult(out=out_dir, terminal=terminal, plan=plan)
