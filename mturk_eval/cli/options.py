"""Options shared by the workflow verbs (preview, publish, status, collect, review, expire).

Every verb that talks to a crowd platform takes the same target options: ``--platform NAME`` (default the
config's ``[platform] name``, else mturk), ``--sandbox`` (the default: for MTurk the bundled local
MTurk-compatible server, started in the background by ``publish`` and found by the other verbs),
``--live`` (real money; MTurk closed on 2026-09-30), or ``--endpoint-url URL`` (any compatible server;
its ledger target is ``local``).
"""
from __future__ import annotations

from pathlib import Path

import click


def target_options(f):
    f = click.option("--endpoint-url", default=None, metavar="URL",
                     help="An MTurk-compatible server (e.g. one started by `mturk-eval sandbox serve`);"
                          " uses dummy credentials and the 'local' ledger.")(f)
    f = click.option("--sandbox/--live", "sandbox", default=True, show_default=True,
                     help="The sandbox (free, the default: for MTurk the bundled local server, started in the"
                          " background) or the live platform (real money; MTurk closed on 2026-09-30).")(f)
    f = click.option("--platform", "platform_name", default=None, metavar="NAME",
                     help="Crowd platform by name (mturk, links, prolific); default the config's [platform] name.")(f)
    return f


def _check_batches(ctx, param, value):
    from mturk_eval.tasks.builder import check_batch

    for b in value:
        check_batch(b)
    return tuple(dict.fromkeys(value))


def batch_filter_option(what: str):
    return click.option(
        "--batch", "batches", multiple=True, metavar="LABEL", callback=_check_batches,
        help=f"Only the tasks of this batch (as given to publish --batch; repeatable); default every batch."
             f" {what}".rstrip())


def setup(config_path: str, sandbox: bool, endpoint_url: str | None, platform_name: str | None = None, *,
          start_sandbox: bool = False, concurrency: int = 4, **platform_options):
    """The config, the ledger target and the platform a workflow verb works with.

    For MTurk's ``--sandbox`` without ``--endpoint-url`` this is the experiment's bundled local server,
    found where ``publish`` recorded it (restarted on its state when its process is gone), or, with
    ``start_sandbox`` (publish), started, when the platform is first contacted: a run refused before
    that starts nothing. Constructing the platform contacts nothing. ``platform_options`` (None: not
    given) go to the platform's settings; a platform without such a setting refuses them in one line."""
    from mturk_eval.config import load_config
    from mturk_eval.platforms import registry
    from mturk_eval.platforms.crowd_platform import resolve_target

    cfg = load_config(config_path)
    name = platform_name or cfg.platform.name
    registry.check_name(name, "--platform" if platform_name else f"{config_path}: platform.name")
    target = resolve_target(live=not sandbox, endpoint_url=endpoint_url)
    overrides: dict = {"target": target, "endpoint_url": endpoint_url,
                       **{k: v for k, v in platform_options.items() if v is not None}}
    if target == "sandbox" and endpoint_url is None:
        # The bundled sandbox (platforms that have one): found, or started by publish, when first contacted.
        overrides.update(sandbox_dir=str(cfg.run_dir), start_sandbox=start_sandbox)
    plat = registry.make_platform(cfg, name, concurrency=concurrency, **overrides)
    for note in plat.notices():  # e.g. MTurk's closure, before anything else is said or done on --live
        click.echo(note)
    return cfg, plat.ledger_target() or target, plat


def responses_path(cfg, responses: str | None, config_path: str) -> Path:
    """The responses file to read; a missing one says how to get it (other problems: the loader's)."""
    path = Path(responses) if responses else cfg.run_dir / "responses.jsonl"
    if not path.exists():
        from mturk_eval.errors import UserError

        raise UserError(f"{path}: file not found (run `mturk-eval generate --config {config_path}` first,"
                        " or give --responses)")
    return path


responses_option = click.option(
    "--responses", type=click.Path(dir_okay=False), default=None,
    help="responses.jsonl to rate (default runs/<experiment>/responses.jsonl); any file of that schema works.")
