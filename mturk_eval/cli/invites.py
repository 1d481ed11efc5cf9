"""``mturk-eval invites``: list the experiment's invite links, revoke one; thin over
:mod:`mturk_eval.actions.invites`."""
from __future__ import annotations

import click

from mturk_eval.cli import config_option


@click.group()
def invites() -> None:
    """The invite links of an experiment (platform links): list them, revoke one."""


@invites.command("list")
@config_option
@click.option("--urls/--no-urls", default=True, show_default=True,
              help="Show each active link's URL (it lets one person rate: keep the output private).")
def list_(config_path, urls) -> None:
    """Every invite link: rater id, active or revoked, tasks submitted, the URL of an active one."""
    from mturk_eval.actions.invites import iso, list_invites
    from mturk_eval.config import load_config

    rows = list_invites(load_config(config_path))
    if not rows:
        click.echo("no invite links yet: `mturk-eval publish --platform links --raters N` makes them")
        return
    active = sum(r.state == "active" for r in rows)
    click.echo(f"{len(rows)} invite links: {active} active, {len(rows) - active} revoked")
    for r in rows:
        shown = r.url if urls and r.state == "active" else f"revoked {iso(r.revoked_at)}" if r.state == "revoked" else ""
        click.echo(f"  {r.rater_id}  {r.state:7}  {r.submitted:3} submitted  {shown}".rstrip())


@invites.command("revoke")
@config_option
@click.argument("token", metavar="TOKEN")
def revoke(config_path, token) -> None:
    """Revoke one invite link: TOKEN is the link's token, the whole link, or its rater id (r0001).

    The link stops working at once; the rater's open task goes back to the others; their submitted
    work stays for review. A new link: publish --platform links --raters N.
    """
    from mturk_eval.actions.invites import iso, revoke as run
    from mturk_eval.config import load_config

    res = run(load_config(config_path), token)
    inv = res.invite
    if res.already:
        click.echo(f"{inv.rater_id}: the invite link was already revoked ({iso(inv.revoked_at)}); nothing changed")
        return
    click.echo(f"{inv.rater_id}: invite link revoked; it now shows \"This invite link has been withdrawn by the"
               " researchers.\" and stores nothing; an open task of theirs went back to the others")
    if res.invites_csv:
        click.echo(f"{res.invites_csv}: rewritten with the active links only")
