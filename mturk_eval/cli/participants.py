"""``mturk-eval participants``: data-subject requests (``export``, ``delete``) and the pseudonym key
(``new-key``); thin over :mod:`mturk_eval.actions.participants`. See docs/participants.md."""
from __future__ import annotations

import json
from pathlib import Path

import click

from mturk_eval.cli import config_option


@click.group()
def participants() -> None:
    """What the experiment holds about one participant: export it, delete it.

    ID is the participant's real rater id (MTurk worker id, Prolific id, invite identity) or the
    pseudonym (r-...) that the report and exports show.
    """


@participants.command("export")
@config_option
@click.argument("participant_id", metavar="ID")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the JSON here (mode 0600) instead of printing it.")
def export(config_path, participant_id, out_path) -> None:
    """Write everything held about one participant as JSON (a data-subject access request)."""
    from mturk_eval.actions.participants import export_participant, write_export
    from mturk_eval.config import load_config

    data = export_participant(load_config(config_path), participant_id)
    if out_path is None:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    write_export(data, Path(out_path))
    n = sum(len(x["submissions"]) for x in data["ledgers"])
    click.echo(f"wrote {out_path}: {n} submission(s) of {data['participant']['pseudonym'] or 'the participant'}")


@participants.command("delete")
@config_option
@click.argument("participant_id", metavar="ID")
@click.option("--force", is_flag=True,
              help="Delete even submissions not yet reviewed and pending bonuses (the participant may go unpaid).")
def delete(config_path, participant_id, force) -> None:
    """Remove one participant's answers and identity from the experiment's ledgers, and say what remains
    in reports already written."""
    from mturk_eval.actions.participants import delete_participant, describe_deletion
    from mturk_eval.config import load_config

    res = delete_participant(load_config(config_path), participant_id, force=force)
    for line in describe_deletion(res):
        click.echo(line)


@participants.command("new-key")
@config_option
def new_key(config_path) -> None:
    """Make a new pseudonym key when runs/<exp>/pseudonym.key is lost for good (pseudonyms change)."""
    from mturk_eval.actions.participants import new_key as make
    from mturk_eval.config import load_config

    cfg = load_config(config_path)
    kid = make(cfg)
    click.echo(f"new pseudonym key (key id {kid}) in {cfg.run_dir / 'pseudonym.key'}; back it up; pseudonyms in "
               "exports made with the old key no longer match")
