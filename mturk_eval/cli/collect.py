"""``mturk-eval collect``: fetch submissions, validate and store their answers."""
from __future__ import annotations

from pathlib import Path

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.prolific_options import platform_options
from mturk_eval.cli.options import target_options, batch_filter_option, setup


@click.command()
@config_option
@target_options
@platform_options
@click.option("--export-csv", type=click.Path(dir_okay=False), default=None,
              help="Also write the ledger as an MTurk batch-results CSV to this file.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@batch_filter_option("--export-csv then holds only their assignments.")
def collect(config_path, sandbox, endpoint_url, platform, api_url, export_csv, no_progress, batches):
    """Fetch submitted assignments, validate and store their answers (safe to rerun).

    Says which batches were collected (all of them unless --batch is given).
    """
    if platform == "prolific":
        from mturk_eval.cli import prolific_options as pro

        pro.refuse("--endpoint-url", endpoint_url)
        pro.refuse("--batch", batches)
        pro.refuse("--export-csv", export_csv)
        pro.collect(config_path, sandbox, api_url)
        return
    from mturk_eval.actions.collect import collect as run

    cfg, target = setup(config_path, sandbox, endpoint_url)
    r = run(cfg, target=target, endpoint_url=endpoint_url, export_csv=export_csv, progress=not no_progress,
            batches=batches)
    click.echo(r.batches)
    click.echo(f"{r.hits} HITs: {r.new} new assignments, {r.updated} seen before; {r.invalid} invalid,"
               f" {r.attention_failed} failed attention checks, {r.simulated} simulated")
    if r.exported:
        click.echo(f"wrote {r.exported}")
