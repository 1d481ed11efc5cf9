"""``mturk-eval preview``: render rating tasks to HTML files (or serve them) before paying."""
from __future__ import annotations

from pathlib import Path

import click

from mturk_eval.cli import config_option
from mturk_eval.cli.options import responses_option, responses_path


@click.command()
@config_option
@responses_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the HTML files (default runs/<experiment>/preview).")
@click.option("--item", "item_ids", multiple=True, help="An item_id to render (repeatable); default a spread: one item of each eval_set/method/model"
                   " (and persona) in turn.")
@click.option("--count", default=3, show_default=True, help="How many tasks to render when no --item is given.")
@click.option("--attention", is_flag=True, help="Also render one attention-check item.")
@click.option("--serve", is_flag=True, help="Serve the files on http://127.0.0.1:PORT until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port for --serve (0 picks a free one).")
def preview(config_path, responses, out_dir, item_ids, count, attention, serve, port):
    """Render rating tasks (MTurk: HITs) to HTML files (or serve them) to look at before paying.

    Without --item the --count tasks take items round-robin over the (eval_set, method, model) groups,
    and over each group's personas, so every system is seen (a note says when --count is too small).
    """
    from mturk_eval.actions.preview import preview as run, serve as serve_dir
    from mturk_eval.config import load_config

    cfg = load_config(config_path)
    out = Path(out_dir) if out_dir else cfg.run_dir / "preview"
    written = run(cfg, responses_path(cfg, responses, config_path), out, item_ids=tuple(item_ids), count=count,
                  attention=attention, echo=click.echo)
    click.echo(f"wrote {len(written)} files; open {out / 'index.html'}")
    if serve:
        serve_dir(out, port, echo=click.echo)
