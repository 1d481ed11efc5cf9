"""Options shared by the workflow verbs (preview, publish, status, collect, review, expire).

Every verb that talks to a crowd platform takes the same target options: ``--sandbox`` (the default),
``--live``, or ``--endpoint-url URL`` (any MTurk-compatible server; its ledger target is ``local``).
"""
from __future__ import annotations

from pathlib import Path

import click


def target_options(f):
    f = click.option("--endpoint-url", default=None, metavar="URL",
                     help="An MTurk-compatible server (e.g. the local emulator at http://127.0.0.1:PORT);"
                          " uses dummy credentials and the 'local' ledger.")(f)
    f = click.option("--sandbox/--live", "sandbox", default=True, show_default=True,
                     help="MTurk's sandbox (free, the default) or the live marketplace (real money).")(f)
    return f


def _check_batches(ctx, param, value):
    from mturk_eval.tasks.builder import check_batch

    for b in value:
        check_batch(b)
    return tuple(dict.fromkeys(value))


def batch_filter_option(what: str):
    return click.option(
        "--batch", "batches", multiple=True, metavar="LABEL", callback=_check_batches,
        help=f"Only the HITs of this batch (as given to publish --batch; repeatable); default every batch."
             f" {what}".rstrip())


def setup(config_path: str, sandbox: bool, endpoint_url: str | None):
    from mturk_eval.config import load_config
    from mturk_eval.platforms.mturk.client import resolve_target

    cfg = load_config(config_path)
    return cfg, resolve_target(live=not sandbox, endpoint_url=endpoint_url)


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
