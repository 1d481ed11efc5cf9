"""``mturk-eval status``: tasks and submissions by state, cost so far, time left."""
from __future__ import annotations

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.prolific_options import is_prolific, prolific_options
from mturk_eval.cli.options import target_options, batch_filter_option, setup


@click.command()
@config_option
@target_options
@prolific_options
@click.option("--offline", is_flag=True, help="Read the ledger only; do not ask the platform for fresh task states.")
@batch_filter_option("Counts, costs and the estimate are then those of the batches given.")
def status(config_path, platform_name, sandbox, endpoint_url, api_url, offline, batches):
    """Tasks and submissions (MTurk: HITs and assignments) by state, cost so far, estimated time left.

    The first line names the target and the batches counted (all of them unless --batch is given).
    """
    if is_prolific(config_path, platform_name, api_url=api_url):
        from mturk_eval.cli import prolific_options as pro

        pro.refuse(endpoint_url=endpoint_url, offline=offline, batches=batches)
        pro.status(config_path, sandbox, api_url)
        return
    from mturk_eval.actions.status import status as run

    cfg, target, plat = setup(config_path, sandbox, endpoint_url, platform_name)
    click.echo(run(cfg, target=target, platform=plat, offline=offline, batches=batches).format())
