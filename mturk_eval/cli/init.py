"""``mturk-eval init``: write a commented mturk-eval.toml for a directory (thin over mturk_eval.actions.init)."""
from __future__ import annotations

import click


@click.command()
@click.option("--from", "template", type=click.Choice(["demo", "paper_en", "paper_ja"]), default="demo",
              show_default=True, help="The shipped experiment to start from.")
@click.argument("directory", type=click.Path(file_okay=False), default=".")
def init(template: str, directory: str) -> None:
    """Write DIRECTORY/mturk-eval.toml (default: here) from a shipped experiment, data paths resolved for
    that directory; never overwrites one. Verbs run there find it without --config."""
    from mturk_eval.actions.init import init as run

    res = run(directory, template)
    for note in res.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {res.path} (from {template}); next: `mturk-eval generate` in {res.path.parent}")
