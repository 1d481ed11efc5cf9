"""``mturk-eval status``: tasks and submissions by state, cost so far, time left."""
from __future__ import annotations

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.options import target_options, batch_filter_option, setup


@click.command()
@config_option
@target_options
@click.option("--offline", is_flag=True, help="Read the ledger only; do not ask MTurk for fresh HIT states.")
@batch_filter_option("Counts, costs and the estimate are then those of the batches given.")
def status(config_path, sandbox, endpoint_url, offline, batches):
    """HITs and assignments by state, cost so far, estimated time left.

    The first line names the target and the batches counted (all of them unless --batch is given).
    """
    from mturk_eval.actions.status import status as run

    cfg, target = setup(config_path, sandbox, endpoint_url)
    click.echo(run(cfg, target=target, endpoint_url=endpoint_url, offline=offline, batches=batches).format())
