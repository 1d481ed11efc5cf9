"""``mturk-eval expire``: expire or delete the batch's tasks."""
from __future__ import annotations

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.options import target_options, batch_filter_option, setup


@click.command()
@config_option
@target_options
@click.option("--delete", is_flag=True, help="Delete the HITs MTurk allows to (reviewed, nothing in progress).")
@click.option("--dry-run", is_flag=True, help="List what would be expired or deleted.")
@batch_filter_option("")
def expire(config_path, sandbox, endpoint_url, delete, dry_run, batches):
    """Expire (stop) or delete the HITs of every batch, or of the --batch given.

    The first line names the batches acted on (all of them unless --batch is given).
    """
    from mturk_eval.actions.common import batch_scope
    from mturk_eval.actions.expire import expire as run

    cfg, target = setup(config_path, sandbox, endpoint_url)
    scope = batch_scope(cfg, target, batches)  # checked first; said once the run has gone well
    out = run(cfg, target=target, endpoint_url=endpoint_url, delete=delete, dry_run=dry_run, batches=batches)
    click.echo(scope)
    for o in out:
        click.echo(f"{o.action:8s} {o.hit_id} {o.detail}".rstrip())
    click.echo(f"{len([o for o in out if o.action != 'skipped'])} HITs {'deleted' if delete else 'expired'}"
               f"{' (dry run)' if dry_run else ''}")
