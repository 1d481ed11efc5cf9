"""``mturk-eval expire``: expire or delete the batch's tasks."""
from __future__ import annotations

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.prolific_options import is_prolific, prolific_options
from mturk_eval.cli.options import target_options, batch_filter_option, setup


@click.command()
@config_option
@target_options
@prolific_options
@click.option("--stop", is_flag=True, help="Prolific: STOP the studies (final: they can never restart); default PAUSE.")
@click.option("--yes", is_flag=True, help="Prolific: do not ask before --stop.")
@click.option("--delete", is_flag=True, help="MTurk: delete the HITs MTurk allows to (reviewed, nothing in progress).")
@click.option("--dry-run", is_flag=True, help="List what would be expired or deleted.")
@batch_filter_option("")
def expire(config_path, platform_name, sandbox, endpoint_url, api_url, stop, yes, delete, dry_run, batches):
    """Expire (stop) or delete the tasks (MTurk: HITs) of every batch, or of the --batch given.

    The first line names the batches acted on (all of them unless --batch is given).
    """
    if is_prolific(config_path, platform_name, api_url=api_url, stop=stop, yes=yes):
        from mturk_eval.cli import prolific_options as pro

        pro.refuse(endpoint_url=endpoint_url, delete=delete, dry_run=dry_run, batches=batches)
        pro.expire(config_path, sandbox, api_url, stop, yes)
        return
    from mturk_eval.actions.common import batch_scope
    from mturk_eval.actions.expire import expire as run

    cfg, target, plat = setup(config_path, sandbox, endpoint_url, platform_name)
    scope = batch_scope(cfg, target, batches)  # checked first; said once the run has gone well
    out = run(cfg, target=target, platform=plat, delete=delete, dry_run=dry_run, batches=batches)
    click.echo(scope)
    for o in out:
        click.echo(f"{o.action:8s} {o.task_id} {o.detail}".rstrip())
    click.echo(f"{len([o for o in out if o.action != 'skipped'])} {plat.vocabulary.tasks}"
               f" {'deleted' if delete else 'expired'}"
               f"{' (dry run)' if dry_run else ''}")
