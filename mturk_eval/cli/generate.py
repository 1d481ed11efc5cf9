"""``mturk-eval generate`` and ``mturk-eval distinct`` (thin over mturk_eval.generators.run and
mturk_eval.analysis.distinct)."""
from __future__ import annotations

from pathlib import Path

import click

from mturk_eval.cli import config_option
from mturk_eval.config import METHODS


@click.command()
@config_option
@click.option("--force", is_flag=True, help="Retrain every system even when a matching checkpoint exists.")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model to use instead of the config's `models` (repeatable): smollm2-135m, tiny-random, a local "
    "model directory or a Hugging Face name.",
)
@click.option(
    "--method", "methods", multiple=True, type=click.Choice(METHODS), help="Only these methods (repeatable)."
)
@click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")
@click.option("--quiet", "--no-progress", "quiet", is_flag=True, help="No progress bars (they are also off when stderr is not a terminal).")
@click.option("--max-epochs", type=click.IntRange(min=1), default=None,
              help="Cap training at N epochs (instead of the config's training.max_epochs).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default=None,
              help="Precision of training and generation (instead of the config's training.dtype and "
              "generation.dtype; auto: bfloat16 where the CPU or GPU computes it natively, else float32).")
@click.option("--estimate", is_flag=True,
              help="Only time a few training steps and responses per method and print how long the whole "
              "run would take (early stop to max_epochs); trains and writes nothing but the built data.")
def generate(config_path: str, force: bool, models: tuple[str, ...], methods: tuple[str, ...], device: str | None,
             quiet: bool, max_epochs: int | None, dtype: str | None, estimate: bool) -> None:
    """Train prompt-tuned and fine-tuned systems for every persona and write runs/<exp>/responses.jsonl.

    Builds the data first when needed. Checkpoints and each system's loss curve (loss.png) go to
    runs/<exp>/models/<model>/<persona>/<method>/; a rerun reuses what is already trained. All
    systems' epoch losses are plotted in runs/<exp>/loss_curves.png.

    Each system prints an estimate of its training time after its first steps; --estimate prints
    one for the whole run before anything is trained.

    On several GPUs, run the same command under `accelerate launch --multi_gpu -m mturk_eval`.
    """
    import dataclasses

    from mturk_eval.config import load_config
    from mturk_eval.generators.run import estimate_run, run_generate

    cfg = load_config(config_path)
    if max_epochs is not None:
        cfg.training = dataclasses.replace(cfg.training, max_epochs=max_epochs)
    if dtype is not None:
        cfg.training = dataclasses.replace(cfg.training, dtype=dtype)
        cfg.generation = dataclasses.replace(cfg.generation, dtype=dtype)
    if estimate:
        estimate_run(cfg, models=list(models) or None, methods=list(methods) or None, device=device, echo=click.echo)
        return
    run_generate(cfg, force=force, models=list(models) or None, methods=list(methods) or None, device=device,
                 progress=not quiet, echo=click.echo)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Experiment TOML: reads runs/<exp>/responses.jsonl.")
@click.option("--responses", "responses_path", type=click.Path(dir_okay=False), help="A responses.jsonl file (instead of --config).")
@click.option(
    "--tokenizer",
    type=click.Choice(["space", "char", "mecab"]),
    default=None,
    help="How to split responses into tokens: space (default for English), char (default for Japanese), "
    "or mecab (Japanese words; needs the ja extra: fugashi + unidic-lite).",
)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for distinct.md and distinct.csv (default: beside the responses file).")
def distinct(config_path: str | None, responses_path: str | None, tokenizer: str | None, out_dir: str | None) -> None:
    """distinct-1/2 per system over both eval sets, as the paper's Table 1/6 (Markdown and CSV).

    N-grams are counted over all of a system's responses together, not averaged per response.
    """
    from mturk_eval.analysis.distinct import distinct_rows, to_csv, to_markdown
    from mturk_eval.errors import UserError
    from mturk_eval.io import atomic_write_text

    if config_path and responses_path:
        raise UserError("give exactly one of --config or --responses")
    if not responses_path:
        from mturk_eval.config import CONFIG_ENV, CONFIG_FILE, find_config

        found = find_config(config_path, required=False)  # else $MTURK_EVAL_CONFIG, mturk-eval.toml here or above
        if found is None:
            raise UserError(f"give exactly one of --config or --responses (no experiment config found either:"
                            f" ${CONFIG_ENV} is not set and there is no {CONFIG_FILE} here or in a parent;"
                            " `mturk-eval init` writes one)")
        config_path = str(found)
    language = "en"
    if config_path:
        from mturk_eval.config import load_config

        cfg = load_config(config_path)
        path = cfg.run_dir / "responses.jsonl"
        language = cfg.language
        if not path.is_file():
            raise UserError(f"{path}: file not found; run 'mturk-eval generate --config {config_path}' first")
    else:
        path = Path(responses_path)
    tok = tokenizer or ("char" if language == "ja" else "space")
    rows = distinct_rows(path, tokenizer=tok)
    md, csv_text = to_markdown(rows, tok), to_csv(rows)
    out = Path(out_dir) if out_dir else path.parent
    atomic_write_text(out / "distinct.md", md)
    atomic_write_text(out / "distinct.csv", csv_text)
    click.echo(md)
    click.echo(f"wrote {out / 'distinct.md'} and {out / 'distinct.csv'}")
