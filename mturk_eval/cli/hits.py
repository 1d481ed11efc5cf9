"""The MTurk workflow verbs: ``preview``, ``publish``, ``status``, ``collect``, ``review``, ``expire``.

Thin over :mod:`mturk_eval.actions`. Every verb that talks to MTurk takes the same target options:
``--sandbox`` (the default), ``--live``, or ``--endpoint-url URL`` (any MTurk-compatible server; its
ledger target is ``local``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from mturk_eval.cli import config_option


def target_options(f):
    f = click.option("--endpoint-url", default=None, metavar="URL",
                     help="An MTurk-compatible server (e.g. the local emulator at http://127.0.0.1:PORT);"
                          " uses dummy credentials and the 'local' ledger.")(f)
    f = click.option("--sandbox/--live", "sandbox", default=True, show_default=True,
                     help="MTurk's sandbox (free, the default) or the live marketplace (real money).")(f)
    return f


def _check_batches(ctx, param, value):
    from mturk_eval.hits import check_batch

    for b in value:
        check_batch(b)
    return tuple(dict.fromkeys(value))


def batch_filter_option(what: str):
    return click.option(
        "--batch", "batches", multiple=True, metavar="LABEL", callback=_check_batches,
        help=f"Only the HITs of this batch (as given to publish --batch; repeatable); default every batch."
             f" {what}".rstrip())


def _setup(config_path: str, sandbox: bool, endpoint_url: str | None):
    from mturk_eval.config import load_config
    from mturk_eval.mturk.client import resolve_target

    cfg = load_config(config_path)
    return cfg, resolve_target(live=not sandbox, endpoint_url=endpoint_url)


def _responses(cfg, responses: str | None, config_path: str) -> Path:
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


@click.command()
@config_option
@responses_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the HTML files (default runs/<experiment>/preview).")
@click.option("--item", "item_ids", multiple=True, help="An item_id to render (repeatable); default a spread: one item of each eval_set/method/model"
                   " (and persona) in turn.")
@click.option("--count", default=3, show_default=True, help="How many HITs to render when no --item is given.")
@click.option("--attention", is_flag=True, help="Also render one attention-check item.")
@click.option("--serve", is_flag=True, help="Serve the files on http://127.0.0.1:PORT until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port for --serve (0 picks a free one).")
def preview(config_path, responses, out_dir, item_ids, count, attention, serve, port):
    """Render rating HITs to HTML files (or serve them) to look at before paying.

    Without --item the --count HITs take items round-robin over the (eval_set, method, model) groups,
    and over each group's personas, so every system is seen (a note says when --count is too small).
    """
    from mturk_eval.actions.preview import preview as run, serve as serve_dir
    from mturk_eval.config import load_config

    cfg = load_config(config_path)
    out = Path(out_dir) if out_dir else cfg.run_dir / "preview"
    written = run(cfg, _responses(cfg, responses, config_path), out, item_ids=tuple(item_ids), count=count,
                  attention=attention, echo=click.echo)
    click.echo(f"wrote {len(written)} files; open {out / 'index.html'}")
    if serve:
        serve_dir(out, port, echo=click.echo)


@click.command()
@config_option
@responses_option
@target_options
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
def publish(config_path, responses, sandbox, endpoint_url, batch, max_cost, yes, dry_run, allow_empty,
            no_progress):
    """Publish rating HITs (sandbox by default), each exactly once, recorded in the ledger.

    Prints the plan and the cost (rewards plus MTurk's fee) first; --live needs --yes or a
    confirmation. Empty responses are refused unless --allow-empty. A rerun after any interruption
    resumes without duplicating a HIT.
    """
    from mturk_eval.actions.publish import publish as run
    from mturk_eval.hits import check_batch

    check_batch(batch)
    cfg, target = _setup(config_path, sandbox, endpoint_url)
    interactive = sys.stdin.isatty()
    confirm = (lambda msg: click.confirm(msg, default=False)) if interactive else None  # noqa: E731
    res = run(cfg, _responses(cfg, responses, config_path), target=target, endpoint_url=endpoint_url, batch=batch,
              yes=yes, max_cost=max_cost, dry_run=dry_run, confirm=confirm, echo=click.echo,
              progress=not no_progress, allow_empty=allow_empty, interactive=interactive)
    if not dry_run:
        click.echo(f"created {res.created}, recovered {res.recovered}, earlier {res.already};"
                   f" ledger {res.ledger}")


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

    cfg, target = _setup(config_path, sandbox, endpoint_url)
    click.echo(run(cfg, target=target, endpoint_url=endpoint_url, offline=offline, batches=batches).format())


@click.command()
@config_option
@target_options
@click.option("--export-csv", type=click.Path(dir_okay=False), default=None,
              help="Also write the ledger as an MTurk batch-results CSV to this file.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@batch_filter_option("--export-csv then holds only their assignments.")
def collect(config_path, sandbox, endpoint_url, export_csv, no_progress, batches):
    """Fetch submitted assignments, validate and store their answers (safe to rerun).

    Says which batches were collected (all of them unless --batch is given).
    """
    from mturk_eval.actions.collect import collect as run

    cfg, target = _setup(config_path, sandbox, endpoint_url)
    r = run(cfg, target=target, endpoint_url=endpoint_url, export_csv=export_csv, progress=not no_progress,
            batches=batches)
    click.echo(r.batches)
    click.echo(f"{r.hits} HITs: {r.new} new assignments, {r.updated} seen before; {r.invalid} invalid,"
               f" {r.attention_failed} failed attention checks, {r.simulated} simulated")
    if r.deleted:
        click.echo(f"{r.deleted} submission(s) skipped: deleted at the participant's request")
    if r.exported:
        click.echo(f"wrote {r.exported} (rater and assignment ids as pseudonyms)")
        if r.free_text_columns:
            click.echo(f"warning: {', '.join(r.free_text_columns)} hold free text, possibly identifying: "
                       "read them before sharing the file", err=True)


@click.command()
@config_option
@target_options
@click.option("--apply", is_flag=True, help="Carry the actions out (without it: a dry run that lists them).")
@click.option("--reject-failed-attention", is_flag=True,
              help="Reject assignments that failed an attention check (otherwise they are approved).")
@click.option("--feedback", default=None, help="The reason rejected workers read (a clear default is used).")
@click.option("--block", "block_workers", multiple=True, metavar="WORKER_ID", help="Block this worker (repeatable).")
@click.option("--block-failed-attention", is_flag=True, help="Block every worker who failed an attention check.")
@click.option("--block-reason", default=None, help="Reason recorded with blocks.")
@click.option("--bonus", default=None, metavar="DOLLARS", help="Pay this bonus once per approved assignment.")
@click.option("--bonus-reason", default="", help="The message workers get with the bonus (required with --bonus).")
@click.option("--bonus-label", default="bonus", show_default=True,
              help="Bonuses with the same label are paid at most once per assignment, whatever the amount.")
@click.option("--yes", is_flag=True, help="Do not ask before paying bonuses on --live.")
@batch_filter_option("Approvals, rejections, bonuses and --block-failed-attention then concern only their"
                     " assignments (--block WORKER_ID blocks whatever the batch).")
def review(config_path, sandbox, endpoint_url, apply, reject_failed_attention, feedback, block_workers,
           block_failed_attention, block_reason, bonus, bonus_reason, bonus_label, yes, batches):
    """Approve stored assignments, optionally reject attention-check failures, block, bonus.

    A dry run by default: it prints what it would do; --apply does it. Paying bonuses on --live shows
    their total cost first and needs --yes or a confirmation. The first line names the batches
    reviewed (all of them unless --batch is given).
    """
    from mturk_eval.actions import review as rv
    from mturk_eval.actions.common import batch_scope
    from mturk_eval.errors import UserError

    cfg, target = _setup(config_path, sandbox, endpoint_url)
    rv.check_options(reject_failed_attention=reject_failed_attention,
                     feedback=feedback or rv.DEFAULT_REJECT_FEEDBACK, block_workers=tuple(block_workers),
                     bonus=bonus, bonus_reason=bonus_reason)
    scope = batch_scope(cfg, target, batches)  # checked first; said once the run has gone well
    options = dict(batches=batches, reject_failed_attention=reject_failed_attention,
                   feedback=feedback or rv.DEFAULT_REJECT_FEEDBACK, block_workers=tuple(block_workers),
                   block_failed_attention=block_failed_attention,
                   block_reason=block_reason or rv.DEFAULT_BLOCK_REASON, bonus=bonus,
                   bonus_reason=bonus_reason, bonus_label=bonus_label)
    if apply and target == "live" and bonus is not None and not yes:
        planned = rv.review(cfg, target=target, endpoint_url=endpoint_url, apply=False, **options)
        n, total = rv.bonus_total(planned, bonus)
        if n:
            amounts = {a.amount for a in planned if a.kind == "bonus"}
            each = f"of ${bonus}" if amounts <= {bonus} else "(resumed ones at their stored amount)"
            click.echo(f"{n} bonuses {each} cost ${total} with MTurk's fee")
            if not sys.stdin.isatty():
                raise UserError("--live: not running interactively, so give --yes to confirm paying bonuses")
            if not click.confirm(f"Pay {n} bonuses on LIVE MTurk for ${total}?", default=False):
                raise UserError("bonuses not confirmed: nothing was done")
    actions = rv.review(cfg, target=target, endpoint_url=endpoint_url, apply=apply, **options)
    click.echo(scope)
    for a in actions:
        click.echo(("done   " if a.done else ("would  " if not apply else "       ")) + a.format())
    kinds = {}
    for a in actions:
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in kinds.items()) or "nothing to do"
    if bonus is not None and kinds.get("bonus"):
        summary += f" (bonuses ${rv.bonus_total(actions, bonus)[1]} with fees)"
    click.echo(f"{'applied' if apply else 'dry run (use --apply)'}: {summary}")


@click.command()
@config_option
@target_options
@click.option("--delete", is_flag=True, help="Delete the HITs MTurk allows to (reviewed, nothing in progress).")
@click.option("--dry-run", is_flag=True, help="List what would be expired or deleted.")
@batch_filter_option("")
def expire(config_path, sandbox, endpoint_url, delete, dry_run, batches):
    """Expire (stop) or delete the HITs of every batch, or of the --batch given.

    The first line names the batches acted on (all of them unless --batch is given).
    """
    from mturk_eval.actions.common import batch_scope
    from mturk_eval.actions.expire import expire as run

    cfg, target = _setup(config_path, sandbox, endpoint_url)
    scope = batch_scope(cfg, target, batches)  # checked first; said once the run has gone well
    out = run(cfg, target=target, endpoint_url=endpoint_url, delete=delete, dry_run=dry_run, batches=batches)
    click.echo(scope)
    for o in out:
        click.echo(f"{o.action:8s} {o.hit_id} {o.detail}".rstrip())
    click.echo(f"{len([o for o in out if o.action != 'skipped'])} HITs {'deleted' if delete else 'expired'}"
               f"{' (dry run)' if dry_run else ''}")
