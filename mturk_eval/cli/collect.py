"""``mturk-eval collect``: fetch submissions, validate and store their answers."""
from __future__ import annotations

from pathlib import Path

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.prolific_options import is_prolific, prolific_options
from mturk_eval.cli.options import target_options, batch_filter_option, setup


@click.command()
@config_option
@target_options
@prolific_options
@click.option("--export-csv", type=click.Path(dir_okay=False), default=None,
              help="Also write the ledger as an MTurk batch-results CSV to this file.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@batch_filter_option("--export-csv then holds only their submissions.")
def collect(config_path, platform_name, sandbox, endpoint_url, api_url, export_csv, no_progress, batches):
    """Fetch submissions (MTurk: assignments), validate and store their answers (safe to rerun).

    Says which batches were collected (all of them unless --batch is given).
    """
    if is_prolific(config_path, platform_name, api_url=api_url):
        from mturk_eval.cli import prolific_options as pro

        pro.refuse(endpoint_url=endpoint_url, export_csv=export_csv, batches=batches)
        pro.collect(config_path, sandbox, api_url)
        return
    from mturk_eval.actions.collect import collect as run

    cfg, target, plat = setup(config_path, sandbox, endpoint_url, platform_name)
    r = run(cfg, target=target, platform=plat, export_csv=export_csv, progress=not no_progress, batches=batches)
    click.echo(r.batches)
    words = plat.vocabulary
    click.echo(f"{r.hits} {words.tasks}: {r.new} new {words.submissions}, {r.updated} seen before; {r.invalid} invalid,"
               f" {r.attention_failed} failed attention checks, {r.simulated} simulated")
    if r.deleted:
        click.echo(f"{r.deleted} submission(s) skipped: deleted at the participant's request")
    if r.exported:
        click.echo(f"wrote {r.exported} (rater and {words.submission} ids as pseudonyms)")
        if r.free_text_columns:
            click.echo(f"warning: {', '.join(r.free_text_columns)} hold free text, possibly identifying: "
                       "read them before sharing the file", err=True)
