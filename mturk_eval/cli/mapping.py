"""``mturk-eval mapping suggest FILE``: a starting ``--mapping`` TOML for a batch results file from another
rating template (thin over mturk_eval.analysis.mapping.suggest_mapping)."""
from __future__ import annotations

import click


@click.group()
def mapping() -> None:
    """Mappings that let `report --batch-csv` read other teams' MTurk batch files."""


@mapping.command()
@click.argument("batch_csv", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the mapping to this file (refused if it exists) instead of printing it.")
def suggest(batch_csv, out_path) -> None:
    """Print a mapping suggested from an MTurk batch results file's columns: items per HIT and slot
    numbers, an item id template, the system, and one [[aspects]] table per rating question found (radio groups, plain
    integer answers, crowd-form taskAnswers keys) with the scale seen. Check it, then pass it to
    `mturk-eval report --batch-csv BATCH_CSV --mapping FILE`."""
    from pathlib import Path

    from mturk_eval.analysis.batch_csv import read_batch_csv
    from mturk_eval.analysis.mapping import suggest_mapping
    from mturk_eval.errors import UserError
    from mturk_eval.io import atomic_write_text

    text = suggest_mapping(read_batch_csv(batch_csv))
    if out_path is None:
        click.echo(text, nl=False)
        return
    if Path(out_path).exists():
        raise UserError(f"--out: {out_path} exists; expected a new file (remove it or choose another name)")
    atomic_write_text(out_path, text)
    click.echo(f"mapping written to {out_path}; check it, then: mturk-eval report --batch-csv {batch_csv} "
               f"--mapping {out_path}")
