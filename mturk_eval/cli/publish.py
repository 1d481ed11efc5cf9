"""``mturk-eval publish``: publish the rating tasks, each exactly once, recorded in the ledger."""
from __future__ import annotations

import sys

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.options import responses_option, target_options, setup, responses_path
from mturk_eval.cli.prolific_options import platform_options


@click.command()
@config_option
@responses_option
@target_options
@platform_options
@click.option("--public-url", default=None, metavar="URL",
              help="Prolific only: the rating site's address participants are sent to (default [site] public_url;"
                   " https:// for a real study).")
@click.option("--batch", default="main", show_default=True,
              help="Batch label: the same items in a new batch get new HITs (e.g. more workers).")
@click.option("--max-cost", type=float, default=None,
              help="Refuse to publish when this run would cost more dollars (default hit.max_cost).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before publishing on --live.")
@click.option("--dry-run", is_flag=True, help="Show the plan and cost; write and publish nothing.")
@click.option("--allow-empty", is_flag=True,
              help="Publish responses that are empty or only whitespace (refused otherwise: workers would"
                   " rate a blank reply).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def publish(config_path, responses, sandbox, endpoint_url, platform, api_url, public_url, batch, max_cost, yes, dry_run,
            allow_empty, no_progress):
    """Publish rating HITs (sandbox by default), each exactly once, recorded in the ledger.

    Prints the plan and the cost (rewards plus MTurk's fee) first; --live needs --yes or a
    confirmation. Empty responses are refused unless --allow-empty. A rerun after any interruption
    resumes without duplicating a HIT.
    """
    if platform == "prolific":
        from mturk_eval.cli import prolific_options as pro

        pro.refuse("--endpoint-url", endpoint_url)
        pro.refuse("--allow-empty", allow_empty)
        pro.publish(config_path, responses, sandbox, api_url, public_url, batch, max_cost, yes, dry_run)
        return
    from mturk_eval.cli.prolific_options import refuse

    refuse("--api-url", api_url)
    refuse("--public-url", public_url)
    from mturk_eval.actions.publish import publish as run
    from mturk_eval.tasks.builder import check_batch

    check_batch(batch)
    cfg, target = setup(config_path, sandbox, endpoint_url)
    interactive = sys.stdin.isatty()
    confirm = (lambda msg: click.confirm(msg, default=False)) if interactive else None  # noqa: E731
    res = run(cfg, responses_path(cfg, responses, config_path), target=target, endpoint_url=endpoint_url, batch=batch,
              yes=yes, max_cost=max_cost, dry_run=dry_run, confirm=confirm, echo=click.echo,
              progress=not no_progress, allow_empty=allow_empty, interactive=interactive)
    if not dry_run:
        click.echo(f"created {res.created}, recovered {res.recovered}, earlier {res.already};"
                   f" ledger {res.ledger}")
