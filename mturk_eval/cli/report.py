"""``mturk-eval report``: the paper's tables, agreement, tests, workers and plots (thin over
mturk_eval.analysis.report.build_report)."""
from __future__ import annotations

import click


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Experiment TOML file. Needed for the ledger; optional with --ratings/--batch-csv and --out.")
@click.option("--ratings", "ratings_path", type=click.Path(dir_okay=False),
              help="Long-format ratings instead of the ledger: CSV with a header or JSONL (columns item_id, "
                   "eval_set, method, model, worker_id, aspect, score; optional persona_id, assignment_id, "
                   "attention_check, attention_passed, simulated, work_time_s, status).")
@click.option("--batch-csv", "batch_csv", type=click.Path(dir_okay=False),
              help="MTurk batch results CSV (website download or `collect --export-csv`) instead of the ledger.")
@click.option("--target", type=click.Choice(["sandbox", "live", "local", "prolific", "prolific-emulator"]),
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
def report(config_path, ratings_path, batch_csv, target, responses_path, out_dir, seed, no_plots, quiet) -> None:
    """Write the results section: Tables 2/3 (7/8 for Japanese) as Markdown, LaTeX, CSV and JSON,
    confidence intervals, Holm-corrected tests between systems, Krippendorff's alpha, worker figures,
    plots, and report.md (with a banner when any rating was simulated)."""
    from mturk_eval.analysis.report import build_report
    from mturk_eval.config import ExperimentConfig, load_config
    from mturk_eval.errors import UserError

    if config_path is not None:
        cfg = load_config(config_path)
    else:
        if ratings_path is None and batch_csv is None:
            raise UserError("--config: expected an experiment config (or --ratings/--batch-csv with --out), got none")
        if out_dir is None:
            raise UserError("--out: expected an output directory when no --config is given, got none")
        cfg = ExperimentConfig(name="report")
    result = build_report(cfg, ratings_path=ratings_path, batch_csv=batch_csv, target=target,
                          responses_path=responses_path, out_dir=out_dir, seed=seed, plots=not no_plots,
                          progress=not quiet, default_responses=config_path is not None)
    if not quiet:
        click.echo(result.terminal)
        for w in result.analysis.warnings:
            click.echo(f"warning: {w}", err=True)
    click.echo(f"report written to {result.out_dir / 'report.md'}")
