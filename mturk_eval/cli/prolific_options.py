"""``--platform prolific`` on the workflow verbs: the options it adds and the calls it makes.

Each verb module (publish, status, collect, review, expire) adds :func:`prolific_options` and hands
over to the function of the same name here when the platform is Prolific (``--platform prolific`` or
``[platform] name = "prolific"``): one study per batch does not fit the per-task workflow of
:mod:`mturk_eval.actions`, so these are thin over :mod:`mturk_eval.platforms.prolific.workflow`.
``--sandbox`` (the default) is the local Prolific emulator (the bundled server, or ``--api-url``),
``--live`` the real API with ``PROLIFIC_TOKEN``.
"""
from __future__ import annotations

import sys

import click


def prolific_options(f):
    """``--api-url``: Prolific's API base, or a local emulator's URL with --sandbox."""
    return click.option("--api-url", default=None, metavar="URL",
                        help="Prolific: the API base (default https://api.prolific.com/api/v1/ with --live; with"
                             " --sandbox a local emulator's URL instead of the bundled one).")(f)


def is_prolific(config_path: str, platform_name: str | None, **prolific_only) -> bool:
    """Whether the verb runs on Prolific (``--platform`` or the config's ``[platform] name``). Options only
    Prolific has are refused on another platform."""
    from mturk_eval.config import load_config

    name = platform_name or load_config(config_path).platform.name
    if name != "prolific":
        refuse(**prolific_only)
    return name == "prolific"


def _cfg(config_path: str):
    """The config, with its [platform.prolific] table checked before anything else happens."""
    from mturk_eval.config import load_config
    from mturk_eval.platforms.prolific.workflow import settings_of

    cfg = load_config(config_path)
    settings_of(cfg)
    return cfg


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


def refuse(**options) -> None:
    """Options that mean nothing on the chosen platform are an error, not silently ignored."""
    from mturk_eval.errors import UserError

    for name, value in options.items():
        if value not in (None, False, (), ""):
            raise UserError(f"--{name.replace('_', '-')}: not an option of this platform (see --help)")
