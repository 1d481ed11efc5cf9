"""``--platform prolific`` on the workflow verbs: the options it adds and the calls it makes.

Each verb module (publish, status, collect, review, expire) adds :func:`platform_options` and hands
over to the function of the same name here when the platform is Prolific; these are thin over
:mod:`mturk_eval.platforms.prolific.workflow`. ``--sandbox`` (the default) is the local Prolific
emulator, ``--live`` the real API with ``PROLIFIC_TOKEN``.
"""
from __future__ import annotations

import sys

import click


def platform_options(f):
    f = click.option("--api-url", default=None, metavar="URL",
                     help="Prolific only: the API base (default https://api.prolific.com/api/v1/ with --live; with"
                          " --sandbox a local emulator's URL, e.g. http://127.0.0.1:8765).")(f)
    f = click.option("--platform", "platform", type=click.Choice(["mturk", "prolific"]), default="mturk",
                     show_default=True,
                     help="The crowd platform. prolific: --sandbox is the local Prolific emulator, --live the"
                          " real Prolific API (token from PROLIFIC_TOKEN).")(f)
    return f


def _cfg(config_path: str):
    from mturk_eval.config import load_config

    return load_config(config_path)


def _confirm():
    interactive = sys.stdin.isatty()
    return interactive, ((lambda msg: click.confirm(msg, default=False)) if interactive else None)


def publish(config_path, responses, sandbox, api_url, public_url, batch, max_cost, yes, dry_run) -> None:
    from mturk_eval.cli.options import responses_path
    from mturk_eval.platforms.prolific import workflow

    cfg = _cfg(config_path)
    interactive, confirm = _confirm()
    out = workflow.publish(cfg, responses_path(cfg, responses, config_path), sandbox=sandbox, api_url=api_url,
                           public_url=public_url, batch=batch, yes=yes, max_cost=max_cost, dry_run=dry_run,
                           confirm=confirm, interactive=interactive, echo=click.echo)
    if not dry_run:
        click.echo(f"ledger {workflow.ledger_file(cfg, sandbox)}")
    return out


def status(config_path, sandbox, api_url) -> None:
    from mturk_eval.platforms.prolific import workflow

    workflow.status(_cfg(config_path), sandbox=sandbox, api_url=api_url, echo=click.echo)


def collect(config_path, sandbox, api_url) -> None:
    from mturk_eval.platforms.prolific import workflow

    workflow.collect(_cfg(config_path), sandbox=sandbox, api_url=api_url, echo=click.echo)


def review(config_path, sandbox, api_url, apply, reject_failed_attention, rejection, rejection_category,
           rejection_message, block, block_failed_attention, bonus, bonus_label, bonus_paid, bonus_unpaid, yes,
           max_cost) -> None:
    from mturk_eval.platforms.prolific import workflow

    interactive, confirm = _confirm()
    workflow.review(_cfg(config_path), sandbox=sandbox, api_url=api_url, apply=apply,
                    reject_failed_attention=reject_failed_attention, rejection=rejection,
                    rejection_category=rejection_category, rejection_message=rejection_message,
                    block_failed_attention=block_failed_attention, block=tuple(block), bonus=bonus,
                    bonus_label=bonus_label, bonus_paid=tuple(bonus_paid), bonus_unpaid=tuple(bonus_unpaid), yes=yes,
                    interactive=interactive, confirm=confirm, max_cost=max_cost, echo=click.echo)


def expire(config_path, sandbox, api_url, stop, yes) -> None:
    from mturk_eval.platforms.prolific import workflow

    interactive, confirm = _confirm()
    workflow.expire(_cfg(config_path), sandbox=sandbox, api_url=api_url, stop=stop, yes=yes, interactive=interactive,
                    confirm=confirm, echo=click.echo)


def refuse(option: str, value) -> None:
    """An option that means nothing on the chosen platform is an error, not silently ignored."""
    from mturk_eval.errors import UserError

    if value not in (None, False, (), ""):
        raise UserError(f"{option}: not an option of this platform (see --help)")
