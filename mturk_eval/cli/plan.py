"""``mturk-eval plan``: power, sample sizes and cost of a rating study before paying for it (thin over
mturk_eval.planning)."""
from __future__ import annotations

import click


def _numbers(values: tuple[str, ...], name: str) -> list[int]:
    from mturk_eval.errors import UserError

    out = []
    for v in values:
        for part in str(v).replace(",", " ").split():
            try:
                out.append(int(part))
            except ValueError:
                raise UserError(f"{name}: expected whole numbers, got {part!r}") from None
    return out


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Experiment TOML: its systems, platforms, prices, alpha and Holm family. Optional with --pilot.")
@click.option("--pilot", "pilot", type=click.Path(dir_okay=False),
              help="Pilot ratings: a long ratings file (CSV/JSONL), an MTurk batch results CSV or a ledger (.sqlite).")
@click.option("--responses", "responses_path", type=click.Path(dir_okay=False),
              help="responses.jsonl for a batch-CSV pilot's item fields.")
@click.option("--effect", type=float, default=0.2, show_default=True,
              help="Difference of mean ratings (on the aspect's scale) to detect.")
@click.option("--power", type=float, default=0.8, show_default=True, help="Requested power.")
@click.option("--items", "items", multiple=True, help="Items (prompts) per system; repeat or comma-separate. "
              "Default 25,50,100,150,200,300.")
@click.option("--raters", "raters", multiple=True, help="Raters per item; repeat or comma-separate. Default 3,5,7.")
@click.option("--aspect", help="Aspect of the planned difference: one the config or pilot names (default: the one "
              "with the largest variance).")
@click.option("--design", default="auto", show_default=True,
              help="paired (every system answers the same prompts: Wilcoxon signed-rank), unpaired (each its own: "
              "Mann-Whitney), or auto: what the report would run on the pilot, else paired.")
@click.option("--prompt-share", type=float, help="Share of the item variance that is the prompt's, shared by the "
              "systems' responses to it (paired designs; default: a paired pilot's estimate, else 0).")
@click.option("--systems", type=int, help="Systems per eval set (default: the config's methods x models, or the pilot's).")
@click.option("--platform", "platforms", multiple=True, help="Price on this platform: mturk, prolific, links "
              "(default: every platform the config sets up).")
@click.option("--studies", type=int, default=1000, show_default=True, help="Simulated studies per design.")
@click.option("--seed", type=int, help="Simulation seed (default: the experiment's seed).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Output directory (default: runs/<experiment>/plan/). Replaced atomically.")
def plan(config_path, pilot, responses_path, effect, power, items, raters, aspect, design, prompt_share, systems,
         platforms, studies, seed, out_dir) -> None:
    """Plan a study before paying for it: the rating model (from a pilot, or the paper's Table 2 SDs),
    power of each design on an items x raters grid by simulating the report's own analysis, the minimum
    detectable difference, cost per platform and the cheapest design reaching the requested power."""
    from pathlib import Path

    from mturk_eval.actions.plan import run_plan

    result = run_plan(config_path=config_path, pilot=pilot, responses_path=responses_path, effect=effect,
                      power=power, items=_numbers(items, "--items") if items else None,
                      raters=_numbers(raters, "--raters") if raters else None, aspect=aspect, design=design,
                      prompt_share=prompt_share, systems=systems,
                      platforms=list(platforms), studies=studies, seed=seed,
                      out_dir=Path(out_dir) if out_dir else None, echo=lambda s: click.echo(s, err=True))
    click.echo(result.terminal)
    click.echo(f"plan written to {result.out / 'plan.md'}")
