"""``mturk-eval review``: approve, reject, block and bonus (dry run by default)."""
from __future__ import annotations

import sys

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.prolific_options import is_prolific, prolific_options
from mturk_eval.cli.options import target_options, batch_filter_option, setup


@click.command()
@config_option
@target_options
@prolific_options
@click.option("--apply", is_flag=True, help="Carry the actions out (without it: a dry run that lists them).")
@click.option("--reject-failed-attention", is_flag=True,
              help="Reject submissions (MTurk: assignments) that failed an attention check (otherwise they are approved).")
@click.option("--feedback", default=None, help="The reason rejected raters read (a clear default is used).")
@click.option("--block", "block_workers", multiple=True, metavar="WORKER_ID", help="Block this rater (repeatable).")
@click.option("--block-failed-attention", is_flag=True, help="Block every rater who failed an attention check.")
@click.option("--block-reason", default=None, help="Reason recorded with blocks.")
@click.option("--bonus", default=None, metavar="DOLLARS", help="Pay this bonus once per approved submission.")
@click.option("--bonus-reason", default="", help="The message raters get with the bonus (required with --bonus).")
@click.option("--bonus-label", default="bonus", show_default=True,
              help="Bonuses with the same label are paid at most once per submission, whatever the amount.")
@click.option("--yes", is_flag=True, help="Do not ask before paying bonuses on --live.")
@click.option("--rejection", default=None,
              help="Prolific: the [platform.prolific.rejections] template (category + message of >= 100 characters);"
                   " default failed_attention.")
@click.option("--rejection-category", default=None, help="Prolific: a rejection category instead of the template's.")
@click.option("--rejection-message", default=None,
              help="Prolific: the message rejected participants read (at least 100 characters).")
@click.option("--bonus-paid", multiple=True, metavar="BULK_ID",
              help="Prolific: record this bulk bonus as paid (you checked it in Prolific after a crash).")
@click.option("--bonus-unpaid", multiple=True, metavar="BULK_ID",
              help="Prolific: pay this bulk bonus again (you checked Prolific did not pay it after a crash).")
@click.option("--max-cost", type=float, default=None, help="Prolific: refuse bonuses costing more than this.")
@batch_filter_option("Approvals, rejections, bonuses and --block-failed-attention then concern only their"
                     " submissions (--block WORKER_ID blocks whatever the batch).")
def review(config_path, platform_name, sandbox, endpoint_url, api_url, apply, reject_failed_attention, feedback,
           block_workers, block_failed_attention, block_reason, bonus, bonus_reason, bonus_label, yes, rejection,
           rejection_category, rejection_message, bonus_paid, bonus_unpaid, max_cost, batches):
    """Approve stored submissions (MTurk: assignments), optionally reject attention-check failures, block, bonus.

    A dry run by default: it prints what it would do; --apply does it. Paying bonuses on --live shows
    their total cost first and needs --yes or a confirmation. The first line names the batches
    reviewed (all of them unless --batch is given).
    """
    if is_prolific(config_path, platform_name, api_url=api_url, rejection=rejection,
                   rejection_category=rejection_category, rejection_message=rejection_message,
                   bonus_paid=bonus_paid, bonus_unpaid=bonus_unpaid, max_cost=max_cost):
        from mturk_eval.cli import prolific_options as pro

        pro.refuse(endpoint_url=endpoint_url, feedback=feedback, batches=batches, block_reason=block_reason)
        pro.review(config_path, sandbox, api_url, apply, reject_failed_attention, rejection or "failed_attention",
                   rejection_category, rejection_message, block_workers, block_failed_attention, bonus, bonus_label,
                   bonus_paid, bonus_unpaid, yes, max_cost)
        return
    from mturk_eval.actions import review as rv
    from mturk_eval.actions.common import batch_scope
    from mturk_eval.errors import UserError

    cfg, target, plat = setup(config_path, sandbox, endpoint_url, platform_name)
    rv.check_options(reject_failed_attention=reject_failed_attention,
                     feedback=feedback or rv.DEFAULT_REJECT_FEEDBACK, block_workers=tuple(block_workers),
                     bonus=bonus, bonus_reason=bonus_reason, plat=plat)
    scope = batch_scope(cfg, target, batches)  # checked first; said once the run has gone well
    options = dict(batches=batches, reject_failed_attention=reject_failed_attention,
                   feedback=feedback or rv.DEFAULT_REJECT_FEEDBACK, block_workers=tuple(block_workers),
                   block_failed_attention=block_failed_attention,
                   block_reason=block_reason or rv.DEFAULT_BLOCK_REASON, bonus=bonus,
                   bonus_reason=bonus_reason, bonus_label=bonus_label)
    if apply and target == "live" and bonus is not None and not yes:
        planned = rv.review(cfg, target=target, platform=plat, apply=False, **options)
        n, total = rv.bonus_total(planned, bonus, plat)
        if n:
            amounts = {a.amount for a in planned if a.kind == "bonus"}
            each = f"of ${bonus}" if amounts <= {bonus} else "(resumed ones at their stored amount)"
            click.echo(f"{n} bonuses {each} cost ${total} with {plat.title}'s fee")
            if not sys.stdin.isatty():
                raise UserError("--live: not running interactively, so give --yes to confirm paying bonuses")
            if not click.confirm(f"Pay {n} bonuses on LIVE {plat.title} for ${total}?", default=False):
                raise UserError("bonuses not confirmed: nothing was done")
    actions = rv.review(cfg, target=target, platform=plat, apply=apply, **options)
    click.echo(scope)
    for a in actions:
        click.echo(("done   " if a.done else ("would  " if not apply else "       ")) + a.format(plat.vocabulary))
    kinds = {}
    for a in actions:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in kinds.items()) or "nothing to do"
    if bonus is not None and kinds.get("bonus"):
        summary += f" (bonuses ${rv.bonus_total(actions, bonus, plat)[1]} with fees)"
    click.echo(f"{'applied' if apply else 'dry run (use --apply)'}: {summary}")
