"""``mturk-eval report``: the paper's tables, agreement, tests, workers and plots (thin over
mturk_eval.analysis.report.build_report). From a ledger it first collects what is new on the platform
(``--no-collect`` reports what the ledger holds)."""
from __future__ import annotations

import click


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Experiment TOML file. Needed for the ledger; optional with --ratings/--batch-csv and --out.")
@click.option("--ratings", "ratings_path", type=click.Path(dir_okay=False),
              help="Long-format ratings instead of the ledger: CSV with a header, JSONL or Parquet (columns item_id, "
                   "eval_set, method, model, worker_id, aspect, score; optional persona_id, assignment_id, "
                   "attention_check, attention_passed, simulated, work_time_s, status).")
@click.option("--batch-csv", "batch_csv", type=click.Path(dir_okay=False),
              help="MTurk batch results CSV (website download or `collect --export-csv`) instead of the ledger.")
@click.option("--mapping", "mapping", type=click.Path(dir_okay=False),
              help="TOML mapping for an MTurk batch CSV from another template (items per HIT, item ids, systems, aspects "
                   "with their scales and answer columns); `mturk-eval mapping suggest FILE` writes a first one.")
@click.option("--target", type=click.Choice(["sandbox", "live", "local", "links", "prolific", "prolific-emulator"]),
              help="Which ledger to read (default: the only one that exists).")
@click.option("--responses", "responses_path", type=click.Path(dir_okay=False),
              help="responses.jsonl for automatic metrics, paired tests and batch-CSV item fields "
                   "(default: runs/<experiment>/responses.jsonl when it exists).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Output directory (default: runs/<experiment>/report/). Replaced atomically.")
@click.option("--seed", type=int, help="Seed of the item bootstrap and the mixed model's subsample (default: the "
              "experiment's seed).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the output path, no tables or progress.")
@click.option("--no-collect", is_flag=True,
              help="Do not collect new submissions first; report what the ledger holds.")
def report(config_path, ratings_path, batch_csv, mapping, target, responses_path, out_dir, seed, no_plots, quiet,
           no_collect) -> None:
    """Write the results section: Tables 2/3 (7/8 for Japanese) as Markdown, LaTeX, CSV and JSON,
    confidence intervals, Holm-corrected tests between systems, Krippendorff's alpha, rater figures,
    plots, and report.md (with a banner when any rating was simulated)."""
    from mturk_eval.analysis.ratings import kept_memory
    from mturk_eval.analysis.report import build_report
    from mturk_eval.config import ExperimentConfig, find_config, load_config
    from mturk_eval.errors import UserError

    if config_path is None and ratings_path is None and batch_csv is None:
        found = find_config(required=False)
        config_path = str(found) if found else None
    if config_path is not None:
        cfg = load_config(config_path)
        if ratings_path is None and batch_csv is None and not no_collect:
            target = _collect_first(cfg, config_path, target, quiet)
    else:
        if ratings_path is None and batch_csv is None:
            raise UserError("--config: expected an experiment config (or --ratings/--batch-csv with --out), got none;"
                            " none found either ($MTURK_EVAL_CONFIG, mturk-eval.toml here or above: `mturk-eval"
                            " init` writes one)")
        if out_dir is None:
            raise UserError("--out: expected an output directory when no --config is given, got none")
        cfg = ExperimentConfig(name="report")
    with kept_memory():   # this process's malloc keeps freed arrays' pages (fewer page faults; see its docstring)
        result = build_report(cfg, ratings_path=ratings_path, batch_csv=batch_csv, mapping=mapping, target=target,
                              responses_path=responses_path, out_dir=out_dir, seed=seed, plots=not no_plots,
                              progress=not quiet, default_responses=config_path is not None)
    if not quiet:
        click.echo(result.terminal)
        for w in result.analysis.warnings:
            click.echo(f"warning: {w}", err=True)
    click.echo(f"report written to {result.out_dir / 'report.md'}")


def _collect_first(cfg, config_path: str, target: str | None, quiet: bool) -> str | None:
    """Collect what is new on the platform of the experiment's ledger (the only one, or ``target``'s)
    before reporting, so a report never silently misses submitted work; returns the ledger's target.
    No ledger: the error names the command that makes one (publish). A platform that cannot be asked
    (no endpoint recorded, no bundled sandbox, unreachable): one warning line naming the command, and
    the report is made from what the ledger holds."""
    from mturk_eval.actions.collect import collect
    from mturk_eval.analysis.report import find_ledger
    from mturk_eval.cli.options import setup
    from mturk_eval.errors import UserError
    from mturk_eval.ledger import Ledger

    path = find_ledger(cfg, target)
    target = path.name.split(".")[1]
    with Ledger.open(path, create=False) as led:
        instance, platform = led.get_meta("instance"), led.get_meta("platform")
    endpoint = instance if target == "local" and instance and instance.startswith(("http://", "https://")) else None
    if platform == "prolific":  # one study per batch: Prolific's own workflow collects
        from mturk_eval.platforms.prolific.workflow import collect_before_report

        try:
            collect_before_report(cfg, target, echo=(lambda s: None) if quiet else click.echo)
        except UserError as exc:
            click.echo(f"warning: not collected first ({exc.message}); reporting what the ledger holds", err=True)
        return target
    try:
        if target == "local" and endpoint is None:
            raise UserError(f"{path} records no endpoint to collect from; run `mturk-eval collect --endpoint-url"
                            " URL` first")
        _, target, plat = setup(config_path, target != "live", endpoint, platform)
        r = collect(cfg, target=target, platform=plat, progress=not quiet)
    except UserError as exc:
        click.echo(f"warning: not collected first ({exc.message}); reporting what the ledger holds", err=True)
        return target
    if not quiet:
        click.echo(f"collected first: {r.new} new submissions, {r.updated} seen before ({r.hits} tasks)")
    return target
