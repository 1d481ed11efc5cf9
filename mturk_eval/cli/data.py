"""``mturk-eval data``: build an experiment's datasets (thin over mturk_eval.data.build)."""
from __future__ import annotations

import click

from mturk_eval.cli import config_option


@click.group()
def data() -> None:
    """Datasets: persona pairs (train / persona eval) and general pairs (train mix / general eval)."""


@data.command("build")
@config_option
@click.option("--force", is_flag=True, help="Rebuild even when the manifest says the data is up to date.")
def build(config_path: str, force: bool) -> None:
    """Build runs/<experiment>/data/ from the config's sources and print a summary table."""
    from mturk_eval.config import load_config
    from mturk_eval.data.build import build_datasets, format_summary

    cfg = load_config(config_path)
    manifest = build_datasets(cfg, force=force)
    click.echo(format_summary(manifest))
