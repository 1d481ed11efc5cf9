"""``mturk-eval publish``: publish the rating tasks, each exactly once, recorded in the ledger."""
from __future__ import annotations

import sys

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.prolific_options import is_prolific, prolific_options
from mturk_eval.cli.options import responses_option, target_options, setup, responses_path


@click.command()
@config_option
@responses_option
@target_options
@prolific_options
@click.option("--public-url", default=None, metavar="URL",
              help="The rating site's address that raters are sent to (Prolific, invite links, MTurk with"
                   " [platform.mturk] question = \"external\"); default [site] public_url; https:// for a real study."
                   " With --sandbox and no address the site is started in the background on 127.0.0.1.")
@click.option("--batch", default="main", show_default=True,
              help="Batch label: the same items in a new batch get new tasks (e.g. more raters).")
@click.option("--max-cost", type=float, default=None,
              help="Refuse to publish when this run would cost more dollars (default hit.max_cost).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before publishing on --live.")
@click.option("--dry-run", is_flag=True, help="Show the plan and cost; write and publish nothing.")
@click.option("--allow-empty", is_flag=True,
              help="Publish responses that are empty or only whitespace (refused otherwise: raters would"
                   " rate a blank reply).")
@click.option("--raters", type=click.IntRange(0), default=None, metavar="N",
              help="Invite links (--platform links): make sure N links exist, one rater each; printed and written"
                   " to runs/<experiment>/invites.csv.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def publish(config_path, responses, platform_name, sandbox, endpoint_url, api_url, public_url, batch, max_cost, yes,
            dry_run, allow_empty, raters, no_progress):
    """Publish rating tasks (sandbox by default), each exactly once, recorded in the ledger.

    With MTurk, --sandbox (the default, no --endpoint-url) starts the bundled local MTurk-compatible
    server in the background (Amazon's sandbox closed with MTurk on 2026-09-30) and prints the worker
    site's address, where a person can rate by hand. Platforms whose raters rate on the rating site
    (links, prolific, MTurk ExternalQuestions) also get that site started in the background with
    --sandbox unless --public-url names one; a real study needs the site's public URL. Prints the plan and the cost (rewards plus the
    platform's fee) first; --live needs --yes or a confirmation. Empty responses are refused unless
    --allow-empty. A rerun after any interruption resumes without duplicating a task.
    """
    from mturk_eval.actions.publish import publish as run
    from mturk_eval.tasks.builder import check_batch

    check_batch(batch)
    if is_prolific(config_path, platform_name, api_url=api_url):
        from mturk_eval.cli import prolific_options as pro

        pro.refuse(endpoint_url=endpoint_url, allow_empty=allow_empty, raters=raters)
        pro.publish(config_path, responses, sandbox, api_url, public_url, batch, max_cost, yes, dry_run)
        return
    cfg, target, plat = setup(config_path, sandbox, endpoint_url, platform_name, start_sandbox=True, raters=raters,
                              public_url=public_url)
    interactive = sys.stdin.isatty()
    confirm = (lambda msg: click.confirm(msg, default=False)) if interactive else None  # noqa: E731
    res = run(cfg, responses_path(cfg, responses, config_path), target=target, endpoint_url=endpoint_url, batch=batch,
              yes=yes, max_cost=max_cost, dry_run=dry_run, confirm=confirm, echo=click.echo,
              progress=not no_progress, allow_empty=allow_empty, interactive=interactive, platform=plat)
    if not dry_run:
        click.echo(f"created {res.created}, recovered {res.recovered}, earlier {res.already};"
                   f" ledger {res.ledger}")
